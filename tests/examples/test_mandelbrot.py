"""The Mandelbrot example: through the runner CLI in child processes, and its verify hook."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from examples import mandelbrot
from examples._png import CHANNELS, read_png, write_png
from golem_apps import VerifyContext, VerifyResult
from tests.conftest import ROOT

SIZE, TILES, MAX_ITER = 48, 3, 40


def reference_rows(size: int, max_iter: int) -> list[bytes]:
    return [mandelbrot.render_row(y, 0, size, size, max_iter) for y in range(size)]


@pytest.mark.slow
def test_cli_renders_the_picture_with_provider_processes(tmp_path: Path) -> None:
    params = json.dumps({"size": SIZE, "tiles": TILES, "max_iter": MAX_ITER})
    out = tmp_path / "out"
    proc = subprocess.run(
        [sys.executable, "-m", "golem_apps.run", "examples.mandelbrot", "--params", params,
         "--providers", "3", "--out", str(out), "--work-dir", str(tmp_path / "work")],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    picture = out / mandelbrot.OUTPUT
    assert f"    {picture}" in proc.stdout.splitlines()  # the summary says where it is
    assert f"parts verified: {TILES * TILES}" in proc.stdout
    width, height, rows = read_png(picture)
    assert (width, height) == (SIZE, SIZE)
    assert rows == reference_rows(SIZE, MAX_ITER)
    # Separate processes: one log per provider subtask, plus the requestor's.
    logs = sorted(p.name for p in (tmp_path / "work" / "logs").iterdir())
    assert len(logs) == TILES * TILES + 1
    assert "requestor.log" in logs


def test_the_picture_is_the_fractal_not_noise() -> None:
    rows = reference_rows(64, 64)

    def at(x: int, y: int) -> tuple[int, ...]:
        return tuple(rows[y][x * CHANNELS : (x + 1) * CHANNELS])

    # The view spans [-2.25, 0.75] x [-1.5, 1.5]: c = 0 is inside, c = 0.7 + 1.4i is not.
    assert at(48, 32) == (0, 0, 0)
    assert at(63, 2) != (0, 0, 0)
    # Symmetric about the real axis.
    assert all(rows[y] == rows[63 - y] for y in range(32))


def _verify_context(tmp_path: Path, path: Path, **overrides: int) -> VerifyContext:
    params = {"x0": 16, "y0": 8, "width": 16, "height": 8, "size": 32, "max_iter": 30}
    params.update(overrides)
    return VerifyContext(
        task_id="t", subtask_id="s", part_name="tile-1-1", params=params,
        task_dir=tmp_path, result_path=path,
    )  # fmt: skip


def _tile(params_x0: int = 16) -> list[bytes]:
    return [mandelbrot.render_row(y, params_x0, 16, 32, 30) for y in range(8, 16)]


def test_verify_accepts_a_right_tile(tmp_path: Path) -> None:
    path = tmp_path / "tile.png"
    write_png(path, 16, 8, _tile())
    assert mandelbrot.check_tile(_verify_context(tmp_path, path)).result is VerifyResult.SUCCESS


def test_verify_rejects_wrong_size_format_and_pixels(tmp_path: Path) -> None:
    path = tmp_path / "tile.png"
    write_png(path, 16, 8, _tile())
    wrong_size = mandelbrot.check_tile(_verify_context(tmp_path, path, width=17))
    assert wrong_size.result is VerifyResult.FAILURE
    assert "is 16x8, expected 17x8" in wrong_size.reason

    path.write_bytes(b"GIF89a not a png")
    not_png = mandelbrot.check_tile(_verify_context(tmp_path, path))
    assert not_png.result is VerifyResult.FAILURE
    assert "not a PNG" in not_png.reason

    # A tile of the right size but from elsewhere in the picture: pixels differ.
    write_png(path, 16, 8, _tile(params_x0=0))
    wrong_pixels = mandelbrot.check_tile(_verify_context(tmp_path, path))
    assert wrong_pixels.result is VerifyResult.FAILURE
    assert "pixel" in wrong_pixels.reason


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("params", "needle"),
    [
        ({"size": 8, "tiles": 9}, "tiles (9) must not exceed size (8)"),
        ({"max_iter": "many"}, "max_iter"),
        ({"size": 4}, "size"),
    ],
    ids=["tiles-exceed-size", "max-iter-not-int", "size-too-small"],
)
async def test_bad_params_are_refused_naming_the_field(
    tmp_path: Path, params: dict[str, object], needle: str
) -> None:
    from grpclib.const import Status
    from grpclib.exceptions import GRPCError

    from golem_apps import RequestorClient, serve_requestor

    async with (
        serve_requestor(mandelbrot.requestor, work_dir=tmp_path) as server,
        await RequestorClient.connect(port=server.port) as client,
    ):
        with pytest.raises(GRPCError) as error:
            await client.create_task("t", params)
    assert error.value.status is Status.INVALID_ARGUMENT
    assert "task_params_json" in (error.value.message or "")
    assert needle in (error.value.message or "")
