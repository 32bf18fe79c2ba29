"""Count the primes below a limit, one range of numbers per provider.

The app built step by step in docs/tutorial.md.
"""

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

requestor = Requestor("primes", image="me/primes", tag="0.1")
provider = Provider()


def count_primes(start: int, stop: int) -> int:
    """Primes p with start <= p < stop (trial division: slow on purpose)."""
    count = 0
    for n in range(max(start, 2), stop):
        if all(n % d for d in range(2, int(n**0.5) + 1)):
            count += 1
    return count


@requestor.task
def split(task: TaskContext) -> list[Part]:
    limit = int(task.params.get("limit", 100_000))
    # The node user asks for a number of subtasks (0: any), and the node
    # refuses a task split into more: 8 parts by default, fewer if asked.
    parts = int(task.params.get("parts", min(8, task.max_subtasks or 8)))
    edges = [limit * i // parts for i in range(parts + 1)]
    return [
        Part(params={"start": edges[i], "stop": edges[i + 1]}, name=f"range-{i}")
        for i in range(parts)
    ]


@provider.compute
def compute(ctx: ComputeContext) -> Path:
    out = ctx.subtask_dir / "count.txt"
    out.write_text(str(count_primes(ctx.params["start"], ctx.params["stop"])))
    return out


@requestor.verify
def verify(result: VerifyContext) -> bool:
    text = result.result_path.read_text()
    return text.isdigit() and int(text) <= result.params["stop"] - result.params["start"]


@requestor.merge
def merge(task: MergeContext) -> None:
    total = sum(int(part.path.read_text()) for part in task.results)
    (task.outputs_dir / "primes.txt").write_text(f"{total}\n")
