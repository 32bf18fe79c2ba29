"""The engine at a million parts: CreateTask, cycle latency, task status, merge memory.

Run ``python -m benchmarks.engine_million`` (``make bench-million``; a few
minutes). One real requestor (``python -m golem_apps.serve
benchmarks.engine_million requestor``) gets a 1,000,000-part task, a second
one 100-part tasks (the latency baseline, its cycles interleaved with the big
task's so that load from elsewhere hits both alike). Then:

- ``cycles`` subtask cycles on the big task over loopback (HasPendingSubtasks,
  NextSubtask, the result file, Verify), the first ``latency_cycles`` of them
  timed against the small task's;
- the task status at 1,000,000 parts, read with the engine's own transaction
  (``_tasks.task_status``) on a second connection: the median of 50 reads;
- the requestor is stopped (SIGKILL) and the parts between are marked done
  directly in the database (a benchmark shortcut: 990,000 more cycles would
  take about 20 minutes); restarted on the same work dir, the last part's
  cycle runs the merge: this app's merge handler streams every part's
  result (it reads no file);
- the big requestor's peak RSS through all of it: the larger of the two
  processes' peaks (CreateTask and the cycles; the merge).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sqlite3
import statistics
import tempfile
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from golem_apps import MergeContext, Part, Requestor, TaskContext
from golem_apps.engine import _tasks
from golem_apps.engine._db import DB_NAME

from .engine_scale import ROOT, _EngineBench, _peak_rss_mib, _start

PARTS = 1_000_000
CYCLES = 10_000
LATENCY_CYCLES = 1000
TASK = "scale-0"

#: The benchmark's app: ``parts`` parts, and a merge that streams every result.
requestor = Requestor("engine-million", image="golem/engine-million")


@requestor.task
def split(task: TaskContext) -> Iterator[Part]:
    """``parts`` parts with small params (as ``benchmarks.engine_scale``)."""
    for i in range(int(task.params["parts"])):
        yield Part(params={"i": i, "frame": f"frame-{i:06d}"})


@requestor.merge
def merge(task: MergeContext) -> None:
    """Count the results, in part order, without reading their files."""
    count = sum(1 for _ in task.results)
    (task.outputs_dir / "count.txt").write_text(f"{count}\n")


class _MillionBench(_EngineBench):
    app = "benchmarks.engine_million"


def _status_ms(db_path: Path, reads: int = 50) -> float:
    conn = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True)
    try:
        times = []
        for _ in range(reads):
            started = time.perf_counter()
            _tasks.task_status(conn, TASK, 3)
            times.append(time.perf_counter() - started)
        return statistics.median(times) * 1000
    finally:
        conn.close()


def _fast_forward(db_path: Path) -> int:
    # Every ready part but the last becomes done, with a synthetic verified subtask.
    conn = sqlite3.connect(db_path, isolation_level=None, timeout=60)
    try:
        conn.execute("BEGIN IMMEDIATE")
        (last,) = conn.execute("SELECT max(idx) FROM parts WHERE task = ?", (TASK,)).fetchone()
        conn.execute(
            "INSERT INTO subtasks (task, id, part, node, state, result, verdict)"
            " SELECT task, 'ff-' || idx, idx, 'fast-forward', 'success', 'result.txt', 0"
            " FROM parts WHERE task = ? AND status = 'ready' AND idx < ?",
            (TASK, last),
        )
        changed = conn.execute(
            "UPDATE parts SET status = 'done', subtask = 'ff-' || idx"
            " WHERE task = ? AND status = 'ready' AND idx < ?",
            (TASK, last),
        ).rowcount
        conn.execute("UPDATE tasks SET done = total - 1 WHERE id = ?", (TASK,))
        conn.execute("COMMIT")
        return int(changed)
    finally:
        conn.close()


async def _measure(parts: int, cycles: int, latency_cycles: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as big_dir, tempfile.TemporaryDirectory() as small_dir:
        big = _MillionBench(parts, cycles + 1, Path(big_dir))
        small = _MillionBench(100, latency_cycles, Path(small_dir))
        big_process, big_client = await _start(big.work_dir, big.app)
        small_process, small_client = await _start(small.work_dir, small.app)
        try:
            await big.create(big_client)
            await small.create(small_client)
            for _ in range(latency_cycles):
                await small.one_at_a_time(small_client)
                await big.one_at_a_time(big_client)
            latency_big = statistics.median(big.latencies) * 1000
            latency_small = statistics.median(small.latencies) * 1000
            started = time.perf_counter()
            for _ in range(cycles - latency_cycles):
                await big.cycle(big_client)
            cycles_seconds = time.perf_counter() - started
            status_ms = _status_ms(big.work_dir / DB_NAME)
            # The database is written from outside while the requestor is stopped (a
            # SIGKILL: its state is durable), then it restarts on the same work dir.
            first_rss = _peak_rss_mib(big_process.pid)
            big_client.close()
            big_process.kill()
            big_process.wait()
            forwarded = await asyncio.to_thread(_fast_forward, big.work_dir / DB_NAME)
            big_process, big_client = await _start(big.work_dir, big.app)
            started = time.perf_counter()
            await big.cycle(big_client)  # the last part: its Verify runs the merge
            merge_seconds = time.perf_counter() - started
            count = (big.work_dir / TASK / "task_outputs" / "count.txt").read_text()
            assert int(count) == parts, count
            return {
                "parts": parts,
                "create_task_s": big.create_seconds,
                "cycles": cycles,
                "later_cycles_per_s": (cycles - latency_cycles) / cycles_seconds,
                "latency_ms": latency_big,
                "latency_100_ms": latency_small,
                "latency_ratio": latency_big / latency_small,
                "task_status_ms": status_ms,
                "fast_forwarded": forwarded,
                "last_cycle_with_merge_s": merge_seconds,
                "peak_rss_mib": max(first_rss, _peak_rss_mib(big_process.pid)),
                "peak_rss_merge_mib": _peak_rss_mib(big_process.pid),
            }
        finally:
            for process, client in ((big_process, big_client), (small_process, small_client)):
                client.close()
                process.kill()
                process.wait()


def measure(
    parts: int = PARTS, cycles: int = CYCLES, latency_cycles: int = LATENCY_CYCLES
) -> dict[str, Any]:
    """The figures of one run."""
    return asyncio.run(_measure(parts, cycles, latency_cycles))


#: Where ``make bench-million`` keeps its last figures; ``make bench`` renders them.
FIGURES = Path(__file__).resolve().parent / "million.json"
#: The section of docs/performance.md these figures fill.
HEADING = "## A million parts (make bench-million)"


def section(figures: dict[str, Any]) -> str:
    """The performance page's section for these figures (goals from issue 12)."""
    f = figures

    def met(ok: bool) -> str:
        return "yes" if ok else "no"

    rows = [
        ("CreateTask, 1,000,000 parts", f"{f['create_task_s']:.1f} s", "< 15 s",
         met(f["create_task_s"] < 15)),
        ("NextSubtask+Verify median, 1,000,000 parts (baseline: 100 parts, same run)",
         f"{f['latency_ms']:.2f} ms vs {f['latency_100_ms']:.2f} ms: {f['latency_ratio']:.2f}x",
         "<= 1.5x", met(f["latency_ratio"] <= 1.5)),
        ("task status, 1,000,000 parts (median of 50)", f"{f['task_status_ms']:.3f} ms",
         "< 5 ms", met(f["task_status_ms"] < 5)),
        (f"requestor peak RSS: CreateTask, {f['cycles']:,} cycles, merge",
         f"{f['peak_rss_mib']:.1f} MiB", "< 200 MB", met(f["peak_rss_mib"] * 1.048576 < 200)),
        ("the last cycle, its Verify streaming 1,000,000 results to the merge",
         f"{f['last_cycle_with_merge_s']:.1f} s", "", ""),
    ]  # fmt: skip
    table = ["| metric | figure | goal | met |", "|---|---|---|---|"]
    table += [f"| {a} | {b} | {c} | {d} |" for a, b, c, d in rows]
    return "\n".join(
        [
            HEADING,
            "",
            f"Measured on {f.get('date', '?')} by `python -m benchmarks.engine_million`: one",
            "requestor with a 1,000,000-part task, another with 100-part tasks for the",
            f"latency baseline (cycles interleaved); {f['cycles']:,} real cycles, then the",
            f"{f['fast_forwarded']:,} parts between marked done in the database (a benchmark",
            "shortcut, the requestor stopped meanwhile), then the last cycle runs the merge,",
            "whose handler streams every result. See the module's docstring.",
            "",
            *table,
            "",
        ]
    )


def splice(page: str, figures: dict[str, Any]) -> str:
    """``page`` with its million-parts section replaced by (or added as) these figures'."""
    start = page.find(HEADING)
    if start < 0:
        return page.rstrip("\n") + "\n\n" + section(figures)
    end = page.find("\n## ", start + len(HEADING))
    rest = page[end + 1 :] if end >= 0 else ""
    return page[:start] + section(figures) + ("\n" + rest if rest else "")


def main(argv: Sequence[str] | None = None) -> None:
    """Measure, print the figures, keep them and put them in docs/performance.md."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--parts", type=int, default=PARTS)
    parser.add_argument("--cycles", type=int, default=CYCLES)
    parser.add_argument("--latency-cycles", type=int, default=LATENCY_CYCLES)
    parser.add_argument("--out", default=str(ROOT / "docs" / "performance.md"))
    args = parser.parse_args(argv)
    figures = measure(args.parts, args.cycles, args.latency_cycles)
    figures["date"] = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    print(json.dumps(figures, indent=2))
    if args.out != "-":
        FIGURES.write_text(json.dumps(figures, indent=2) + "\n")
        out = Path(args.out)
        out.write_text(splice(out.read_text(), figures))


if __name__ == "__main__":
    main()
