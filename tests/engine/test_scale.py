"""No per-call scans: a cycle late in a big task costs the same SQLite work as an early one.

Wall time is not measured (benchmarks/engine_scale.py does that); SQLite's
progress handler counts the virtual-machine instructions each call runs.
"""

from __future__ import annotations

import statistics
from pathlib import Path
from typing import cast

import pytest

from golem_apps import Part
from golem_apps.engine._sqlite import SqliteEngine

from .helpers import TASK, create, engine_on, write_result

pytestmark = pytest.mark.anyio

PARTS = 5000
AGED = 4900  # parts made done (each by a subtask of the same node) before the late cycles


async def test_a_cycle_late_in_a_big_task_runs_as_many_instructions(work_dir: Path) -> None:
    ticks = [0]

    def tick() -> int:
        ticks[0] += 1
        return 0  # 0: go on

    async with engine_on(work_dir) as opened:
        engine = cast(SqliteEngine, opened)
        parts = [Part(params={"n": n}, depends_on=[str(n - 1)] if n else []) for n in range(PARTS)]
        await create(engine, work_dir, parts)

        async def cycle(k: int) -> int:
            before = ticks[0]
            handed = await engine.next_subtask(TASK, f"s{k}", "node")
            assert handed is not None
            write_result(work_dir, f"s{k}", "x")
            await engine.verify(TASK, f"s{k}")
            return ticks[0] - before

        engine._db.run(lambda conn: conn.set_progress_handler(tick, 20))
        early = [await cycle(k) for k in range(20)]

        def age(conn: object) -> None:
            # What thousands of cycles of this node leave behind, written in bulk.
            run = conn.execute  # type: ignore[attr-defined]
            run(
                "INSERT INTO subtasks SELECT task, 'old' || idx, idx, 'node', 'success', 'r'"
                " FROM parts WHERE idx >= 20 AND idx < ?",
                (AGED,),
            )
            run(
                "UPDATE parts SET status = 'done', waiting = 0, subtask = 'old' || idx"
                " WHERE idx >= 20 AND idx < ?",
                (AGED,),
            )
            run("UPDATE parts SET status = 'ready', waiting = 0 WHERE idx = ?", (AGED,))
            run("UPDATE tasks SET done = ?", (AGED,))

        engine._db.run(age)
        write_result(work_dir, f"old{AGED - 1}", "x", name="r")
        late = [await cycle(k) for k in range(AGED, AGED + 20)]
        assert statistics.median(late) <= 1.5 * statistics.median(early), (early, late)
