"""A Mandelbrot renderer: providers render tiles, the requestor checks and stitches them.

Run it: ``python -m golem_apps.run examples.mandelbrot --providers 4 --out out``.

Task params (all optional):

- ``size``: the picture's width and height in pixels (default 384);
- ``tiles``: tiles per side, so ``tiles * tiles`` parts (default 4);
- ``max_iter``: iterations before a point counts as inside the set (default 64).

Verify checks each tile's size and format and recomputes a few random pixels;
merge stitches the tiles into ``mandelbrot.png`` in task_outputs. The params
are typed (see docs/typed-params.md): bad ones are refused with
INVALID_ARGUMENT naming the field before any handler runs.
"""

from __future__ import annotations

import math
import random
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from golem_apps import (
    ComputeContext,
    MergeContext,
    Part,
    Provider,
    Requestor,
    TaskContext,
    Verdict,
    VerifyContext,
    VerifyResult,
)

from ._png import CHANNELS, read_png, write_png

requestor = Requestor("mandelbrot", image="golem/examples-mandelbrot", tag="0.1")
provider = Provider()

#: The view: real part from X_MIN, imaginary part from Y_MIN, SPAN wide and high.
X_MIN, Y_MIN, SPAN = -2.25, -1.5, 3.0
#: Pixels of each tile that verify recomputes.
CHECKED_PIXELS = 16
OUTPUT = "mandelbrot.png"


@dataclass(frozen=True)
class Picture:
    """The task params: the picture's size in pixels, tiles per side, iterations.

    Typed params: golem_apps validates the JSON into this before ``split``
    runs, and answers INVALID_ARGUMENT with these messages otherwise.
    """

    size: int = 384
    tiles: int = 4
    max_iter: int = 64

    def __post_init__(self) -> None:
        for name, low, high in (("size", 8, 8192), ("tiles", 1, 64), ("max_iter", 1, 100_000)):
            if not low <= getattr(self, name) <= high:
                raise ValueError(f"{name} must be from {low} to {high}, got {getattr(self, name)}")
        if self.tiles > self.size:
            raise ValueError(f"tiles ({self.tiles}) must not exceed size ({self.size})")


@dataclass(frozen=True)
class Tile:
    """The params of one part: where the tile lies in the picture."""

    x0: int
    y0: int
    width: int
    height: int
    size: int
    max_iter: int


def pixel(px: int, py: int, size: int, max_iter: int) -> tuple[int, int, int]:
    """The colour of pixel (px, py) of a size x size picture: black inside the set."""
    scale = SPAN / size
    cr = X_MIN + (px + 0.5) * scale
    ci = Y_MIN + (py + 0.5) * scale
    # Inside the main cardioid or the period-2 bulb: skip the iterations.
    q = (cr - 0.25) ** 2 + ci * ci
    if q * (q + (cr - 0.25)) <= 0.25 * ci * ci or (cr + 1.0) ** 2 + ci * ci <= 0.0625:
        return (0, 0, 0)
    zr = zi = 0.0
    n = 0
    while n < max_iter:
        zr2, zi2 = zr * zr, zi * zi
        if zr2 + zi2 > 4.0:
            break
        zi = 2.0 * zr * zi + ci
        zr = zr2 - zi2 + cr
        n += 1
    else:
        return (0, 0, 0)
    t = math.sqrt(n / max_iter)  # brighten the fast-escaping outside
    return (
        int(9.0 * (1 - t) * t * t * t * 255),
        int(15.0 * (1 - t) ** 2 * t * t * 255),
        int(8.5 * (1 - t) ** 3 * t * 255),
    )


def render_row(py: int, x0: int, width: int, size: int, max_iter: int) -> bytes:
    """One row of a tile as RGB bytes."""
    row = bytearray()
    for px in range(x0, x0 + width):
        row += bytes(pixel(px, py, size, max_iter))
    return bytes(row)


@requestor.task
def split(task: TaskContext, picture: Picture) -> Iterator[Part]:
    """One part per tile: tiles x tiles, fewer when the node user asks for fewer subtasks."""
    size, tiles = picture.size, picture.tiles
    if task.max_subtasks and "tiles" not in task.params:
        tiles = min(tiles, math.isqrt(task.max_subtasks))
    edges = [size * i // tiles for i in range(tiles + 1)]
    for ty in range(tiles):
        for tx in range(tiles):
            tile = Tile(
                x0=edges[tx],
                y0=edges[ty],
                width=edges[tx + 1] - edges[tx],
                height=edges[ty + 1] - edges[ty],
                size=size,
                max_iter=picture.max_iter,
            )
            yield Part(params=tile, name=f"tile-{ty}-{tx}")


@provider.compute
def render(ctx: ComputeContext) -> Path:
    """Render one tile as a PNG."""
    # The provider reads its params without validation on purpose: a typed
    # compute would import pydantic in every provider process (one per subtask),
    # and these params come from our own split, already validated.
    tile = Tile(**ctx.params)
    rows = []
    for py in range(tile.y0, tile.y0 + tile.height):
        if ctx.cancelled:
            raise RuntimeError("cancelled")
        rows.append(render_row(py, tile.x0, tile.width, tile.size, tile.max_iter))
    out = ctx.subtask_dir / "tile.png"
    write_png(out, tile.width, tile.height, rows)
    return out


@requestor.verify
def check_tile(result: VerifyContext) -> Verdict:
    """The tile has the right size and format, and a few random pixels are right."""
    tile = Tile(**result.params)
    try:
        width, height, rows = read_png(result.result_path)
    except ValueError as exc:
        return Verdict(VerifyResult.FAILURE, f"{result.part_name}: {exc}")
    if (width, height) != (tile.width, tile.height):
        return Verdict(
            VerifyResult.FAILURE,
            f"{result.part_name} is {width}x{height}, expected {tile.width}x{tile.height}",
        )
    rng = random.Random()
    for _ in range(CHECKED_PIXELS):
        x, y = rng.randrange(width), rng.randrange(height)
        got = tuple(rows[y][x * CHANNELS : (x + 1) * CHANNELS])
        want = pixel(tile.x0 + x, tile.y0 + y, tile.size, tile.max_iter)
        if got != want:
            return Verdict(
                VerifyResult.FAILURE,
                f"{result.part_name}: pixel ({x}, {y}) is {got}, expected {want}",
            )
    return Verdict(VerifyResult.SUCCESS)


@requestor.merge
def stitch(task: MergeContext) -> None:
    """Stitch the verified tiles into one picture."""
    size = Picture(**task.params).size
    canvas = [bytearray(size * CHANNELS) for _ in range(size)]
    for part in task.results:
        tile = Tile(**part.params)
        _, _, rows = read_png(part.path)
        start = tile.x0 * CHANNELS
        for dy, row in enumerate(rows):
            canvas[tile.y0 + dy][start : start + len(row)] = row
    write_png(task.outputs_dir / OUTPUT, size, size, (bytes(row) for row in canvas))
