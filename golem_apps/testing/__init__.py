"""Testing an app: run a whole task in this process, and pytest fixtures for it.

::

    from golem_apps.testing import run_local
    import myapp

    def test_upper() -> None:
        result = run_local(myapp.requestor, myapp.provider, params={"texts": ["a"]})
        assert (result.outputs_dir / "a.txt").read_text() == "A"

A handler's exception fails the test with that exception itself. The pytest
plugin (registered on install) adds the ``golem_run``, ``golem_requestor_client``
and ``golem_provider_client`` fixtures for the app your ``golem_app`` fixture
returns; see the "Testing your app" page of the docs.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ._local import run_local, run_local_async

__all__ = ["run_local", "run_local_async"]


def __getattr__(name: str) -> Any:
    # Lazy: pytest imports this package (for its plugin) in every session of an
    # environment where golem_apps is installed; the runner loads on first use.
    if name not in __all__:
        raise AttributeError(f"module 'golem_apps.testing' has no attribute {name!r}")
    from . import _local

    value = getattr(_local, name)
    globals()[name] = value
    return value
