"""A typed-params app for the tests: a pydantic model for the task, a dataclass per subtask."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from pydantic import BaseModel, Field

from golem_apps import ComputeContext, Part, Provider, Requestor, TaskContext

requestor = Requestor("typed", image="golem/typed", tag="1.0")
provider = Provider()


class Render(BaseModel):
    """Task params: a scene rendered in ``tiles`` tiles."""

    scene: str
    tiles: int = Field(ge=1, le=64)
    scale: float = 1.0


@dataclass
class Tile:
    """Subtask params: one tile of a scene."""

    scene: str
    index: int
    scale: float


@requestor.task
def split(task: TaskContext, params: Render) -> Iterator[Part | Tile]:
    # Both forms: a Part holding a dataclass, and the dataclass yielded bare.
    for index in range(params.tiles):
        tile = Tile(params.scene, index, params.scale)
        yield Part(params=tile, name=f"tile{index}") if index % 2 == 0 else tile


@provider.compute
def compute(ctx: ComputeContext, params: Tile) -> Path:
    assert isinstance(params, Tile)
    out = ctx.subtask_dir / "tile.txt"
    out.write_text(f"{params.scene}:{params.index}:{params.scale * 2}")
    return out
