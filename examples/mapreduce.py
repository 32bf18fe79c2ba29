"""Word frequencies over text files: map parts per file, one reduce part that depends on them.

Run it::

    python -m golem_apps.run examples.mapreduce --input a.txt --input b.txt --out out

Each input file (in task_inputs) is one ``map-<i>`` part (with a smaller
``max_subtasks``, each map takes several files): its provider counts the
words into ``counts.json``. The ``reduce`` part depends on every map:
it starts only once they are all verified, and receives their results as
resources named ``map-<i>-counts.json`` (``<dependency name>-<result file name>``).
It adds them up into ``word_counts.json``, which merge puts in task_outputs.

Verify recounts from the inputs (fine for an example; a real app would spot-check).
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Iterable, Iterator
from pathlib import Path

from golem_apps import (
    ComputeContext,
    MergeContext,
    Part,
    Provider,
    Requestor,
    TaskContext,
    VerifyContext,
)

requestor = Requestor("mapreduce", image="golem/examples-mapreduce", tag="0.1")
provider = Provider()

MAP_RESULT = "counts.json"
REDUCE_RESULT = "word_counts.json"
_WORD = re.compile(r"[^\W\d_]+(?:'[^\W\d_]+)*")


def count_words(text: str) -> Counter[str]:
    """Case-folded word counts of a text (letters and inner apostrophes)."""
    return Counter(match.group().casefold() for match in _WORD.finditer(text))


def _dump(counts: Counter[str], path: Path) -> None:
    ordered = dict(sorted(counts.items(), key=lambda item: (-item[1], item[0])))
    path.write_text(json.dumps(ordered, indent=1, ensure_ascii=False) + "\n")


def _load(path: Path) -> Counter[str]:
    data = json.loads(path.read_text())
    if not isinstance(data, dict) or not all(
        isinstance(k, str) and isinstance(v, int) for k, v in data.items()
    ):
        raise ValueError(f"{path.name} is not an object of word counts")
    return Counter(data)


def _recount(inputs_dir: Path, files: Iterable[str]) -> Counter[str]:
    total: Counter[str] = Counter()
    for name in files:
        total += count_words((inputs_dir / name).read_text(errors="replace"))
    return total


@requestor.task
def split(task: TaskContext) -> Iterator[Part]:
    """A map part per input file, then the reduce part depending on all of them."""
    files = sorted(p.name for p in task.inputs_dir.iterdir() if p.is_file())
    if not files:
        raise ValueError("mapreduce needs at least one input text file (--input FILE)")
    # A map per file; when the node user asks for fewer subtasks, fewer maps
    # (each over several files) and the reduce.
    groups = len(files)
    if task.max_subtasks:
        if task.max_subtasks < 2:
            raise ValueError("mapreduce needs max_subtasks of 2 or more (a map and the reduce)")
        groups = min(groups, task.max_subtasks - 1)
    maps = [f"map-{i}" for i in range(groups)]
    for i, name in enumerate(maps):
        group = files[i::groups]
        yield Part(params={"kind": "map", "files": group}, resources=group, name=name)
    yield Part(
        params={"kind": "reduce", "maps": maps, "files": files}, name="reduce", depends_on=maps
    )


@provider.compute
def compute(ctx: ComputeContext) -> Path:
    """Map: count its files' words. Reduce: add the maps' counts."""
    if ctx.params["kind"] == "map":
        counts = _recount(ctx.inputs_dir, ctx.params["files"])
        out = ctx.subtask_dir / MAP_RESULT
    else:
        counts = Counter()
        for name in ctx.params["maps"]:
            counts += _load(ctx.inputs_dir / f"{name}-{MAP_RESULT}")
        out = ctx.subtask_dir / REDUCE_RESULT
    _dump(counts, out)
    return out


@requestor.verify
def check(result: VerifyContext) -> bool:
    """The counts match a recount of the part's input files."""
    p = result.params
    files = p["files"]
    try:
        return _load(result.result_path) == _recount(result.inputs_dir, files)
    except ValueError:
        return False


@requestor.merge
def merge(task: MergeContext) -> None:
    """The reduce part's result is the task's result."""
    [reduce] = [part for part in task.results if part.name == "reduce"]
    (task.outputs_dir / REDUCE_RESULT).write_bytes(reduce.path.read_bytes())
