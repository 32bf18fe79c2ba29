"""The runner's file shipping between the requestor's and the providers' task dirs."""

from __future__ import annotations

import errno
from pathlib import Path

import pytest

from golem_apps import ComputeFailed
from golem_apps.runner._workdir import (
    prepare_provider,
    prepare_requestor,
    ship_resources,
    ship_result,
)


@pytest.fixture
def dirs(tmp_path: Path) -> tuple[Path, Path]:
    return prepare_requestor(tmp_path, "task", []), prepare_provider(tmp_path, "node", "task")


def test_missing_or_unsafe_resources_fail_the_subtask(dirs: tuple[Path, Path]) -> None:
    requestor, provider = dirs
    with pytest.raises(ComputeFailed, match=r"resource 'gone\.txt' is not in"):
        ship_resources(requestor, provider, ["gone.txt"])
    (requestor / "task_inputs" / "secret").write_text("no")
    with pytest.raises(ComputeFailed, match="must not contain a path separator"):
        ship_resources(requestor, provider, ["../task_inputs/secret"])


def test_result_outside_the_provider_task_dir_is_refused(dirs: tuple[Path, Path]) -> None:
    requestor, provider = dirs
    (provider.parent / "outside.txt").write_text("x")
    with pytest.raises(ComputeFailed, match="not a file inside its task dir"):
        ship_result(provider, "../outside.txt", requestor, "sub")
    with pytest.raises(ComputeFailed, match="not a file inside its task dir"):
        ship_result(provider, "subtask_inputs", requestor, "sub")


def test_result_lands_under_its_own_name(dirs: tuple[Path, Path]) -> None:
    requestor, provider = dirs
    (provider / "sub").mkdir()
    (provider / "sub" / "out.bin").write_bytes(b"data")
    target = ship_result(provider, "sub/out.bin", requestor, "sub")
    assert target == requestor / "subtask_outputs" / "sub" / "out.bin"
    assert target.read_bytes() == b"data"
    # Moved, not copied: the provider has exited, and a big result costs no copy.
    assert not (provider / "sub" / "out.bin").exists()


def test_result_is_copied_when_it_cannot_be_moved(
    dirs: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    requestor, provider = dirs
    (provider / "out.bin").write_bytes(b"data")

    def cross_device(self: Path, target: Path) -> Path:
        raise OSError(errno.EXDEV, "Invalid cross-device link")

    monkeypatch.setattr(Path, "replace", cross_device)
    target = ship_result(provider, "out.bin", requestor, "sub")
    assert target.read_bytes() == b"data"
    assert (provider / "out.bin").read_bytes() == b"data"  # a copy: the source stays


def test_a_result_with_other_links_is_copied_not_moved(
    dirs: tuple[Path, Path], tmp_path: Path
) -> None:
    requestor, provider = dirs
    elsewhere = tmp_path / "elsewhere.bin"  # outside the provider's dir, say a secret
    elsewhere.write_bytes(b"data")
    (provider / "out.bin").hardlink_to(elsewhere)
    target = ship_result(provider, "out.bin", requestor, "sub")
    assert target.read_bytes() == b"data"
    assert not target.samefile(elsewhere)  # the requestor's file is its own
