"""Any task-api app, by command: one written without golem_apps (grpcio, protobuf), end to end."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from golem_apps.runner import run_task

ROOT = Path(__file__).resolve().parents[2]
APP = Path(__file__).with_name("foreign_app.py")


@pytest.fixture(scope="module")
def stubs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """grpcio stubs generated now from the repository's protos (no golem_apps code in them)."""
    out = tmp_path_factory.mktemp("stubs")
    source = out / "src"
    source.mkdir()
    # Flat names: a generated "grpc" package would shadow grpcio's own.
    shutil.copy(ROOT / "protos/golem_task_api/golem_task_api.proto", source)
    shutil.copy(ROOT / "protos/grpc/health/v1/health.proto", source)
    subprocess.run(
        [sys.executable, "-m", "grpc_tools.protoc", f"-I{source}", f"--python_out={out}",
         f"--grpc_python_out={out}", "golem_task_api.proto", "health.proto"],
        check=True,
    )  # fmt: skip
    return out


def command(stubs: Path) -> str:
    return f"{sys.executable} {APP} --stubs {stubs}"


@pytest.mark.anyio
@pytest.mark.slow
async def test_a_foreign_app_runs_through_the_command_options(stubs: Path, tmp_path: Path) -> None:
    numbers = list(range(1, 9))
    result = await run_task(
        requestor_cmd=command(stubs),
        provider_cmd=command(stubs),
        params={"numbers": numbers},
        providers=3,
        work_dir=tmp_path / "work",
        out=tmp_path / "out",
    )
    assert {p.name for p in result.output_files} == {"squares.txt", "total.txt"}
    assert (tmp_path / "out" / "squares.txt").read_text() == "".join(
        f"{n} {n * n}\n" for n in numbers
    )
    assert (tmp_path / "out" / "total.txt").read_text() == f"{sum(n * n for n in numbers)}\n"
    # Not one Compute lost: one per part, each answered, shipped (moved out of the
    # provider's dir) and verified; a lost reply would leave its result behind.
    work = tmp_path / "work"
    shipped = list((work / "requestor").glob("*/subtask_outputs/*/square.txt"))
    assert len(shipped) == len(numbers)
    assert list((work / "providers").rglob("square.txt")) == []
    assert (result.parts, result.subtasks, result.failures) == (8, 8, ())
    # Health tells the runner that ProviderProgress is not there (NOT_FOUND): no Watch
    # beside Compute, nor any other call of a method these servers do not have.
    assert list((tmp_path / "work").rglob("unknown_calls.log")) == []
    # The app ran in its work dir, as in a container: the requestor's state is there.
    assert (tmp_path / "work" / "requestor" / result.task_id / "state.json").is_file()
    assert result.status is None  # a foreign requestor offers no status service


def test_the_command_line_runs_a_foreign_app_without_a_module(stubs: Path, tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "golem_apps.run", "--requestor-cmd", command(stubs),
         "--provider-cmd", command(stubs), "--params", '{"numbers": [2, 5]}',
         "--work-dir", str(tmp_path / "work"), "--out", str(tmp_path / "out")],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "out" / "total.txt").read_text() == "29\n"
    assert "parts verified: 2" in proc.stdout
