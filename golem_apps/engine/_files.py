"""The engine's file work, all blocking: called through anyio.to_thread only."""

from __future__ import annotations

import errno
import hashlib
import os
import shutil
import stat
import uuid
from collections.abc import Iterable, Sequence
from pathlib import Path

from .._contexts import PartResult
from ..constants import SUBTASK_INPUTS_DIR, SUBTASK_OUTPUTS_DIR, TASK_INPUTS_DIR, TASK_OUTPUTS_DIR

#: Scratch folder of a task dir where merged files are written before being moved in.
MERGE_TMP_DIR = ".golem_apps_merge"


def inside(path: Path, work_dir: Path) -> bool:
    """True if ``path``, every symbolic link on the way followed, stays in ``work_dir``.

    A result or input linked to a file elsewhere (``/etc/passwd``) must never
    be read, copied or shipped: only files the work dir really holds are.
    """
    if _plainly_inside(os.fspath(path), os.fspath(work_dir)):
        return True
    return path.resolve().is_relative_to(work_dir.resolve())


def _plainly_inside(path: str, work_dir: str) -> bool:
    # The common case, cheaply (a Verify checks each result): ``path`` names a place
    # under ``work_dir`` and none of the steps after ``work_dir`` is a symbolic link
    # (or a "..") — then it is inside, whatever ``work_dir`` itself resolves to.
    # Anything else (a link, a missing step) is left to the full resolve.
    prefix = work_dir.rstrip(os.sep) + os.sep
    if not path.startswith(prefix):
        return False
    current = prefix[:-1]
    for step in path[len(prefix) :].split(os.sep):  # noqa: PTH206 (strings: cheaper)
        if step in ("", ".", ".."):
            return False
        current = f"{current}{os.sep}{step}"
        try:
            if stat.S_ISLNK(os.lstat(current).st_mode):
                return False
        except OSError:
            return False
    return True


def list_inputs(task_dir: Path, work_dir: Path) -> frozenset[str]:
    """Names of the files in the task's task_inputs; links leading out of ``work_dir`` left out."""
    folder = task_dir / TASK_INPUTS_DIR
    if not folder.is_dir():
        return frozenset()
    return frozenset(
        entry.name
        for entry in os.scandir(folder)
        if entry.is_file() and (not entry.is_symlink() or inside(Path(entry.path), work_dir))
    )


def result_file(task_dir: Path, subtask_id: str) -> Path | None:
    """The subtask's result: the (first, by name) file in subtask_outputs/<subtask_id>/."""
    # Strings, not Paths, until the answer (a Verify pays this for every result).
    folder = f"{task_dir}{os.sep}{SUBTASK_OUTPUTS_DIR}{os.sep}{subtask_id}"
    try:
        with os.scandir(folder) as entries:
            files = [entry.name for entry in entries if entry.is_file()]
    except (FileNotFoundError, NotADirectoryError):
        return None
    return Path(folder, min(files)) if files else None


def default_verdict(path: Path) -> bool:
    """The default verification: the result file is not empty."""
    return path.stat().st_size > 0


def digests(paths: Sequence[Path]) -> list[str]:
    """The SHA-256 of each file: the vote's default comparison (identical bytes)."""
    result = []
    for path in paths:
        digest = hashlib.sha256()
        with path.open("rb") as stream:
            while chunk := stream.read(1 << 20):
                digest.update(chunk)
        result.append(digest.hexdigest())
    return result


def _place(source: Path, target: Path) -> None:
    # Link (or copy) under a temporary name, then rename: a reader never sees
    # a half-written file, and concurrent placements of one name do not clash.
    temp = target.with_name(f".{uuid.uuid4().hex}.tmp")
    try:
        os.link(source, temp)
    except OSError:
        if not source.is_file():
            raise
        shutil.copyfile(source, temp)
    temp.replace(target)
    # rename() between two links of one file does nothing and leaves the temp name.
    temp.unlink(missing_ok=True)


def place_resources(
    task_dir: Path, inputs: Sequence[str], results: Sequence[tuple[str, str, str]]
) -> None:
    """Make every resource present in subtask_inputs.

    ``inputs`` are file names in task_inputs (placed once; they never change).
    ``results`` are (resource name, subtask id, result file name) of verified
    dependency results; they are always refreshed, since a discarded and
    recomputed dependency gives a new file under the same name.
    Raises FileNotFoundError naming the missing source.
    """
    target_dir = task_dir / SUBTASK_INPUTS_DIR
    target_dir.mkdir(parents=True, exist_ok=True)
    for name in inputs:
        target = target_dir / name
        if not target.exists():
            source = task_dir / TASK_INPUTS_DIR / name
            if not inside(source, task_dir.parent):  # made a link out since CreateTask
                raise FileNotFoundError(errno.ENOENT, "a link leading out of the work dir", source)
            _place(source, target)
    for name, subtask_id, file_name in results:
        source = task_dir / SUBTASK_OUTPUTS_DIR / subtask_id / file_name
        target = target_dir / name
        if target.exists() and source.exists() and source.samefile(target):
            continue
        _place(source, target)


def clear_outputs(task_dir: Path) -> None:
    """Empty task_outputs (a merge interrupted by a crash may have left files)."""
    folder = task_dir / TASK_OUTPUTS_DIR
    folder.mkdir(parents=True, exist_ok=True)
    for entry in os.scandir(folder):
        if entry.is_dir(follow_symlinks=False):
            shutil.rmtree(entry.path)
        else:
            Path(entry.path).unlink()
    shutil.rmtree(task_dir / MERGE_TMP_DIR, ignore_errors=True)


def output_name(part: str, file_name: str, shared: frozenset[str]) -> str:
    """The name in task_outputs of a part's result: its file name, or
    ``<part name>-<file name>`` when several parts' results share that file name."""
    return f"{part}-{file_name}" if file_name in shared else file_name


def merge_results(task_dir: Path, results: Iterable[PartResult], shared: frozenset[str]) -> None:
    """The default merge: each part's result into task_outputs (``results`` is iterated
    once, in part order; ``shared``: the file names several parts use).

    A result becomes a hard link of its file where the file system allows: no
    byte is copied and no file is made (a new file costs up to a millisecond
    on a busy disk, and the merge holds up the task's last Verify). A link
    appears whole, at once. Where no link can be made (another file system
    under ``subtask_outputs``, one without links, a file linked too often)
    the result is copied under a scratch name outside task_outputs and renamed
    in, so that task_outputs never holds a half-written file either way.
    """
    clear_outputs(task_dir)
    scratch = task_dir / MERGE_TMP_DIR
    outputs = task_dir / TASK_OUTPUTS_DIR
    try:
        for result in results:
            target = outputs / output_name(result.name, result.path.name, shared)
            try:
                os.link(result.path, target)
            except OSError:  # whatever stops a link: a copy, whose error (if any) is the merge's
                scratch.mkdir(exist_ok=True)
                temp = scratch / target.name
                shutil.copyfile(result.path, temp)
                temp.replace(target)
    finally:  # a failed copy (a full disk) leaves no scratch file taking space
        shutil.rmtree(scratch, ignore_errors=True)
