"""Benchmark 2: requestor RPC dispatch, unary calls per second on one connection.

golem_apps' RequestorApp server (decorator registry, one adapter, a trivial
async ``@requestor.benchmark``) against the hand-written grpclib service of
``benchmarks/baselines/requestor.py``. Client and servers share one process
and event loop (as in the anchors), so the figure includes the client's
cost, equal on both sides. Each trial makes ``calls`` RunBenchmark calls,
one after the other or over 16 concurrent streams of one connection.
Trials are short (48 calls) and many (200 per side): on a shared machine,
long trials drift with the others' load (a baseline-against-itself run of 40
trials of 240 calls gave ratios of 0.87-1.17; 200 trials of 48 give 0.99-1.00).
"""

from __future__ import annotations

import asyncio
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from grpclib.client import Channel
from grpclib.server import Server

from golem_apps import serve_requestor
from golem_apps.proto import golem_task_api as api

from ._harness import Comparison, Sample, compare
from .apps.trivial import requestor
from .baselines.requestor import RequestorApp

STREAMS = 16


async def _calls(stub: api.RequestorAppStub, count: int) -> None:
    request = api.RunBenchmarkRequest()
    for _ in range(count):
        reply = await stub.run_benchmark(request)
        if reply.score != 1.0:
            raise RuntimeError(f"unexpected score {reply.score}")


async def trial(channel: Channel, calls: int) -> Sample:
    """Calls per second, sequential then over 16 concurrent streams.

    Per second of wall time, and per second of this process's CPU time: the
    machine is shared, and CPU time is far less disturbed by the others' load.
    """
    stub = api.RequestorAppStub(channel)
    wall, cpu = time.perf_counter(), time.process_time()
    await _calls(stub, calls)
    sequential = calls / (time.perf_counter() - wall)
    sequential_cpu = calls / (time.process_time() - cpu)
    concurrent_calls = calls // STREAMS * STREAMS
    wall, cpu = time.perf_counter(), time.process_time()
    await asyncio.gather(*(_calls(stub, calls // STREAMS) for _ in range(STREAMS)))
    concurrent = concurrent_calls / (time.perf_counter() - wall)
    concurrent_cpu = concurrent_calls / (time.process_time() - cpu)
    return {
        "1 stream": sequential,
        f"{STREAMS} streams": concurrent,
        "1 stream, per CPU s": sequential_cpu,
        f"{STREAMS} streams, per CPU s": concurrent_cpu,
    }


def run(rounds: int = 200, calls: int = 48) -> dict[str, Comparison]:
    """golem_apps (A) against the hand-written service (B); values are calls/s."""

    async def main() -> dict[str, Comparison]:
        with tempfile.TemporaryDirectory() as tmp:
            async with serve_requestor(requestor, work_dir=Path(tmp)) as ours:
                baseline = Server([RequestorApp()])
                await baseline.start("127.0.0.1", 0)
                try:
                    base_port = baseline._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
                    channels = Channel("127.0.0.1", ours.port), Channel("127.0.0.1", base_port)
                    try:
                        return await _compare(channels, rounds, calls)
                    finally:
                        for channel in channels:
                            channel.close()
                finally:
                    baseline.close()
                    await baseline.wait_closed()

    return asyncio.run(main())


async def _compare(
    channels: tuple[Channel, Channel], rounds: int, calls: int
) -> dict[str, Comparison]:
    # compare() is synchronous: run it in a thread that submits each trial to
    # this loop, so that the servers keep running between trials.
    loop = asyncio.get_running_loop()

    def side(channel: Channel) -> Callable[[], Sample]:
        return lambda: asyncio.run_coroutine_threadsafe(trial(channel, calls), loop).result()

    return await asyncio.to_thread(
        compare, side(channels[0]), side(channels[1]), rounds=rounds, warmup=1
    )


if __name__ == "__main__":
    from ._harness import format_comparison

    print(format_comparison("dispatch", "golem_apps", "baseline", run(), "calls/s", 1.0))
