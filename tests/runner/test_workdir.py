"""The runner's file shipping between the requestor's and the providers' task dirs."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest

from golem_apps import ComputeFailed
from golem_apps.runner._workdir import (
    copy_outputs,
    list_outputs,
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


def _outputs(requestor: Path, names: dict[str, bytes]) -> list[Path]:
    for name, data in names.items():
        path = requestor / "task_outputs" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    return list_outputs(requestor)


def test_outputs_are_linked_into_out(dirs: tuple[Path, Path], tmp_path: Path) -> None:
    requestor, _ = dirs
    files = _outputs(requestor, {"a.png": b"A", "sub/b.png": b"B"})
    out = tmp_path / "out"
    (out / "sub").mkdir(parents=True)
    (out / "sub" / "b.png").write_bytes(b"an older b")  # replaced
    placed = copy_outputs(requestor, out, files)
    assert placed == [out / "a.png", out / "sub" / "b.png"]
    for source, target in zip(files, placed, strict=True):
        assert target.samefile(source)  # a hard link: no byte copied
    assert (out / "sub" / "b.png").read_bytes() == b"B"
    assert copy_outputs(requestor, out, files) == placed  # again: nothing changes
    assert sorted(p.name for p in out.iterdir()) == ["a.png", "sub"]  # no scratch file left


def test_outputs_are_copied_where_no_link_can_be_made(
    dirs: tuple[Path, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    requestor, _ = dirs
    files = _outputs(requestor, {"a.png": b"A", "b.png": b"B"})
    out = tmp_path / "out"
    out.mkdir()
    (out / "b.png").write_bytes(b"an older b")

    def cross_device(source: Path, target: Path) -> None:
        raise OSError(errno.EXDEV, "Invalid cross-device link")

    monkeypatch.setattr(os, "link", cross_device)
    placed = copy_outputs(requestor, out, files)
    assert [p.read_bytes() for p in placed] == [b"A", b"B"]
    assert not any(target.samefile(source) for source, target in zip(files, placed, strict=True))
