"""docs/testing.md's examples and the README's pass, in a scratch project with its app."""

from __future__ import annotations

import re

import pytest

from tests.conftest import ROOT


def python_blocks(page: str) -> list[str]:
    return re.findall(r"```python\n(.*?)```", (ROOT / page).read_text(), re.DOTALL)


def test_the_testing_pages_examples_pass(pytester: pytest.Pytester) -> None:
    (app,) = [b for b in python_blocks("README.md") if b.startswith("# upper.py\n")]
    run_local_test, raises_test, conftest, fixtures_test = python_blocks("docs/testing.md")
    assert run_local_test.startswith("# test_upper.py\n") and conftest.startswith("# conftest.py")
    pytester.makepyfile(
        upper=app,
        test_upper=run_local_test + "\n\n" + raises_test,
        conftest=conftest,
        test_fixtures=fixtures_test,
    )
    (readme_test,) = [b for b in python_blocks("README.md") if "run_local" in b]
    pytester.makepyfile(test_readme="import upper\n\n\ndef test_it():\n" + indent(readme_test))
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    result.assert_outcomes(passed=5)


def indent(code: str) -> str:
    return "".join(f"    {line}\n" for line in code.splitlines())
