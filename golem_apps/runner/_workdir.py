"""The runner's work dir, laid out as a node lays out its own (spec section 4 and 5).

::

    <work dir>/requestor/<task_id>/{task_inputs,subtask_inputs,task_outputs,subtask_outputs}
    <work dir>/providers/<node_id>/<task_id>/subtask_inputs
    <work dir>/logs/<requestor|subtask_id>.log

Every function here does blocking file work: call them through ``anyio.to_thread``.
"""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Sequence
from contextlib import suppress
from pathlib import Path

from .._exceptions import ComputeFailed, InvalidArgument
from .._validate import safe_name
from ..constants import SUBTASK_INPUTS_DIR, SUBTASK_OUTPUTS_DIR, TASK_INPUTS_DIR, TASK_OUTPUTS_DIR

REQUESTOR_DIR = "requestor"
PROVIDERS_DIR = "providers"
LOGS_DIR = "logs"

_TASK_FOLDERS = (TASK_INPUTS_DIR, SUBTASK_INPUTS_DIR, TASK_OUTPUTS_DIR, SUBTASK_OUTPUTS_DIR)


def check_inputs(inputs: Sequence[str | Path]) -> list[Path]:
    """The task creator's files: each must be a file, and their names distinct.

    Raises ValueError with a one-line message otherwise.
    """
    files = [Path(item) for item in inputs]
    seen: dict[str, Path] = {}
    for path in files:
        if not path.is_file():
            raise ValueError(f"input {path} does not exist or is not a file")
        other = seen.get(path.name)
        if other is not None:
            # Inputs land side by side in task_inputs: two with one name would collide.
            raise ValueError(f"inputs {other} and {path} have the same file name {path.name!r}")
        seen[path.name] = path
    return files


def prepare_requestor(work_dir: Path, task_id: str, inputs: Sequence[Path]) -> Path:
    """Create the requestor work dir and the task's four folders; copy inputs. The task dir."""
    (work_dir / LOGS_DIR).mkdir(parents=True, exist_ok=True)
    task_dir = work_dir / REQUESTOR_DIR / task_id
    for folder in _TASK_FOLDERS:
        (task_dir / folder).mkdir(parents=True, exist_ok=True)
    for path in inputs:
        shutil.copyfile(path, task_dir / TASK_INPUTS_DIR / path.name)
    return task_dir


def prepare_provider(work_dir: Path, node_id: str, task_id: str) -> Path:
    """The provider node's task work dir, with only ``subtask_inputs`` created (as a node does)."""
    task_dir = work_dir / PROVIDERS_DIR / node_id / task_id
    (task_dir / SUBTASK_INPUTS_DIR).mkdir(parents=True, exist_ok=True)
    return task_dir


def resource_file(requestor_task_dir: Path, name: str) -> Path:
    """The requestor's resource file ``name`` (from NextSubtask), in its subtask_inputs.

    Raises ComputeFailed when the name is not a plain file name or the file is
    missing: the subtask cannot be computed.
    """
    try:
        safe_name(name, "resource name")
    except InvalidArgument as exc:
        raise ComputeFailed(str(exc)) from None
    path = requestor_task_dir / SUBTASK_INPUTS_DIR / name
    if not path.is_file():
        raise ComputeFailed(f"resource {name!r} is not in the requestor's {SUBTASK_INPUTS_DIR}")
    return path


def ship_resources(requestor_task_dir: Path, provider_task_dir: Path, names: Sequence[str]) -> None:
    """Copy the named resources from the requestor's subtask_inputs into the provider's.

    Raises ComputeFailed as :func:`resource_file` does.
    """
    target = provider_task_dir / SUBTASK_INPUTS_DIR
    for name in names:
        shutil.copyfile(resource_file(requestor_task_dir, name), target / name)


def result_file(provider_task_dir: Path, output_filepath: str) -> Path:
    """The provider's result file; ComputeFailed unless it is a file inside its task dir.

    ``output_filepath`` comes from the provider (Compute's reply): untrusted.
    """
    root = provider_task_dir.resolve()
    source = (root / output_filepath).resolve()
    if not source.is_relative_to(root) or not source.is_file():
        raise ComputeFailed(
            f"the provider's result {output_filepath!r} is not a file inside its task dir"
        )
    return source


def result_folder(requestor_task_dir: Path, subtask_id: str) -> Path:
    """``subtask_outputs/<subtask_id>/`` of the requestor's task, created."""
    folder = requestor_task_dir / SUBTASK_OUTPUTS_DIR / subtask_id
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def ship_result(
    provider_task_dir: Path, output_filepath: str, requestor_task_dir: Path, subtask_id: str
) -> Path:
    """Move the provider's result into ``subtask_outputs/<subtask_id>/`` under its own name.

    The provider has exited: the file is the requestor's now, as if sent over
    the network. A rename within the work dir's file system costs nothing,
    whatever the result's size; elsewhere (another mount) it is copied, and
    so is a file with other (hard) links, which may lead out of the provider's
    dir: the requestor gets its bytes, never a share of another file.
    """
    source = result_file(provider_task_dir, output_filepath)
    target = result_folder(requestor_task_dir, subtask_id) / source.name
    try:
        if source.stat().st_nlink != 1:
            raise OSError("linked elsewhere")
        source.replace(target)
    except OSError:  # another file system (EXDEV), a file the runner may not move, or links
        shutil.copyfile(source, target)
    return target


def list_outputs(task_dir: Path) -> list[Path]:
    """The files in the task's task_outputs, sorted."""
    outputs = task_dir / TASK_OUTPUTS_DIR
    return sorted(path for path in outputs.rglob("*") if path.is_file())


def copy_outputs(task_dir: Path, out: Path, files: Sequence[Path]) -> list[Path]:
    """Put ``files`` (what :func:`list_outputs` found in task_outputs) into ``out``.

    ``out`` is created; same-named files are replaced. Each file is a hard link
    of the output where both are on one file system (no byte copied, no new
    file: the run waits for this step), else a copy. Returns the files in ``out``.
    """
    root = task_dir / TASK_OUTPUTS_DIR
    placed = []
    out.mkdir(parents=True, exist_ok=True)
    for path in files:
        target = out / path.relative_to(root)
        if target.parent != out:
            target.parent.mkdir(parents=True, exist_ok=True)
        _link_or_copy(path, target)
        placed.append(target)
    return placed


def _link_or_copy(source: Path, target: Path) -> None:
    try:
        os.link(source, target)
        return
    except FileExistsError:
        with suppress(OSError):  # (a dangling symbolic link is no same file)
            if target.samefile(source):
                return  # there already (an earlier run's link)
        # Replaced at once: linked under a scratch name, renamed over it.
        scratch = target.with_name(f".{target.name}.{uuid.uuid4().hex[:8]}")
        try:
            os.link(source, scratch)
            scratch.replace(target)
            return
        except OSError:
            scratch.unlink(missing_ok=True)
    except OSError:  # another file system (EXDEV), one without links...: a copy
        pass
    shutil.copy2(source, target)


def tail(path: Path, lines: int = 1) -> str:
    """The last non-empty lines of a log file ("" when there is none)."""
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return ""
    kept = [line.strip() for line in text.splitlines() if line.strip()]
    return " | ".join(kept[-lines:])
