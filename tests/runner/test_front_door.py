"""``golem_apps.run``'s front door: a file path or MODULE:ATTR, logging levels, pipes."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.conftest import ROOT

APP_FILE = """\
from pathlib import Path
from types import SimpleNamespace

from golem_apps import ComputeContext, Part, Provider, Requestor, TaskContext
from helper import shout  # a sibling module: the file's folder is importable

requestor = Requestor("upper")
provider = Provider()


@requestor.task
def split(task: TaskContext) -> list[Part]:
    return [Part(params={"text": t}, name=t) for t in task.params["texts"]]


@provider.compute
def compute(ctx: ComputeContext) -> Path:
    out = ctx.subtask_dir / f"{ctx.params['text']}.txt"
    out.write_text(shout(ctx.params["text"]))
    return out


apps = SimpleNamespace(requestor=requestor, provider=provider)
"""


def write_app(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "helper.py").write_text("def shout(text):\n    return text.upper()\n")
    path = folder / "upper_app.py"
    path.write_text(APP_FILE)
    return path


def run_command(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "golem_apps.run", *args],
        cwd=cwd, capture_output=True, text=True, timeout=120,
    )  # fmt: skip


def test_a_file_path_runs_in_child_processes_from_another_folder(tmp_path: Path) -> None:
    app = write_app(tmp_path / "app")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    relative = Path("..") / "app" / app.name
    proc = run_command(
        str(relative), "--params", '{"texts": ["a", "b", "c"]}', "--providers", "2",
        "--out", "out", "--work-dir", "work", "--log-level", "DEBUG", cwd=elsewhere,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    outputs = sorted(p.name for p in (elsewhere / "out").iterdir())
    assert outputs == ["a.txt", "b.txt", "c.txt"]
    assert (elsewhere / "out" / "b.txt").read_text() == "B"
    # --log-level DEBUG is golem_apps' level (and the app's), not hpack's or grpclib's.
    requestor_log = (elsewhere / "work" / "logs" / "requestor.log").read_text()
    assert " INFO golem_apps.rpc: " in requestor_log
    for text in (proc.stderr, requestor_log):
        assert (
            " hpack" not in text and " DEBUG grpclib" not in text and " DEBUG asyncio" not in text
        )


def test_module_attr_names_an_object_holding_both_sides(tmp_path: Path) -> None:
    app = write_app(tmp_path)
    for extra in ([], ["--in-process"]):
        proc = run_command(
            f"{app}:apps", "--params", '{"texts": ["x"]}', "--out", str(tmp_path / "out"),
            *extra, cwd=ROOT,
        )  # fmt: skip
        assert proc.returncode == 0, proc.stderr[-3000:]
        assert (tmp_path / "out" / "x.txt").read_text() == "X"


def test_piped_into_head_ends_without_a_traceback(tmp_path: Path) -> None:
    write_app(tmp_path)
    texts = ",".join(f'"t{i}"' for i in range(30))
    command = (
        f"{sys.executable} -m golem_apps.run upper_app.py --in-process "
        f"--params '{{\"texts\": [{texts}]}}' | head -n 2"
    )
    proc = subprocess.run(
        ["bash", "-o", "pipefail", "-c", command],
        cwd=tmp_path, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert proc.stdout.count("\n") == 2
    assert "Traceback" not in proc.stderr and "BrokenPipe" not in proc.stderr, proc.stderr
    assert proc.returncode == 0, proc.stderr
