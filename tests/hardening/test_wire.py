"""Oversized messages and garbage HTTP/2 from a raw socket: that call or connection is
dropped, and the server keeps serving others (Health SERVING, a real call works)."""

from __future__ import annotations

import logging
import struct
from pathlib import Path

import anyio
import h2.config
import h2.connection
import h2.events
import pytest
from grpclib.client import Channel
from grpclib.const import Status
from grpclib.exceptions import GRPCError

from golem_apps import ProviderClient, serve_provider
from golem_apps.proto import golem_task_api as api
from golem_apps.server._progress import WATCH_PATH

from . import apps
from .helpers import Live, live_requestor

pytestmark = pytest.mark.anyio

MiB = 1024 * 1024


async def still_serving(live: Live, task_id: str) -> None:
    """Health on a fresh connection and on the test's own one, and a real call."""
    channel = Channel("127.0.0.1", live.server.port)
    try:
        fresh = Live(live.server, channel, api.RequestorAppStub(channel))
        assert await fresh.healthy()
        await fresh.stub.create_task(api.CreateTaskRequest(task_id=task_id, task_params_json="{}"))
    finally:
        channel.close()
    assert await live.healthy()
    reply = await live.stub.has_pending_subtasks(api.HasPendingSubtasksRequest(task_id=task_id))
    assert reply.has_pending_subtasks


def grpc_headers(port: int, rpc: str = "HasPendingSubtasks") -> list[tuple[str, str]]:
    return [
        (":method", "POST"),
        (":scheme", "http"),
        (":path", f"/golem_task_api.RequestorApp/{rpc}"),
        (":authority", f"127.0.0.1:{port}"),
        ("content-type", "application/grpc+proto"),
        ("te", "trailers"),
    ]


class RawH2:
    """A hand-driven HTTP/2 client connection over a plain socket stream."""

    def __init__(self, stream: anyio.abc.SocketStream) -> None:
        self.stream = stream
        self.conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))

    @classmethod
    async def open(cls, port: int) -> RawH2:
        raw = cls(await anyio.connect_tcp("127.0.0.1", port))
        raw.conn.initiate_connection()
        await raw.flush()
        return raw

    async def flush(self) -> None:
        data = self.conn.data_to_send()
        if data:
            await self.stream.send(data)

    async def grpc_status(self, stream_id: int) -> str | None:
        """Read until the stream ends or the connection closes; the grpc-status, if any."""
        with anyio.fail_after(20):
            while True:
                try:
                    data = await self.stream.receive()
                except (anyio.EndOfStream, anyio.BrokenResourceError, ConnectionError):
                    return None
                for event in self.conn.receive_data(data):
                    if isinstance(event, h2.events.ResponseReceived | h2.events.TrailersReceived):
                        headers = {
                            (k.decode() if isinstance(k, bytes) else k): (
                                v.decode() if isinstance(v, bytes) else v
                            )
                            for k, v in event.headers
                        }
                        if "grpc-status" in headers and event.stream_id == stream_id:
                            return headers["grpc-status"]
                    if isinstance(event, h2.events.StreamReset) and event.stream_id == stream_id:
                        return None
                    if isinstance(event, h2.events.ConnectionTerminated):
                        return None
                await self.flush()

    async def aclose(self) -> None:
        await self.stream.aclose()


async def test_oversized_message_is_refused_and_others_served(work_dir: Path) -> None:
    async with live_requestor(apps.requestor, work_dir) as live:
        big = api.CreateTaskRequest(
            task_id="big", task_params_json='{"x": "' + "a" * 5 * MiB + '"}'
        )
        with pytest.raises(GRPCError) as info:
            await live.stub.create_task(big, timeout=30)
        assert info.value.status is Status.RESOURCE_EXHAUSTED
        assert "limit" in (info.value.message or "")
        await still_serving(live, "after-big")
        assert not (work_dir / "big").exists()


async def test_huge_announced_length_is_refused_without_waiting_for_it(work_dir: Path) -> None:
    """A 5-byte prefix announcing ~4 GiB, then silence: answered at once, not buffered."""
    async with live_requestor(apps.requestor, work_dir) as live:
        raw = await RawH2.open(live.server.port)
        try:
            raw.conn.send_headers(1, grpc_headers(live.server.port))
            raw.conn.send_data(1, struct.pack(">?I", False, 0xFFFFFFF0) + b"\x0a\x01")
            await raw.flush()
            assert await raw.grpc_status(1) == str(Status.RESOURCE_EXHAUSTED.value)
        finally:
            await raw.aclose()
        await still_serving(live, "after-huge")


async def test_truncated_message_is_answered(work_dir: Path) -> None:
    """The prefix announces 100 bytes, the stream ends after 3."""
    async with live_requestor(apps.requestor, work_dir) as live:
        raw = await RawH2.open(live.server.port)
        try:
            raw.conn.send_headers(1, grpc_headers(live.server.port))
            raw.conn.send_data(1, struct.pack(">?I", False, 100) + b"\x0a\x01a", end_stream=True)
            await raw.flush()
            assert await raw.grpc_status(1) == str(Status.INVALID_ARGUMENT.value)
        finally:
            await raw.aclose()
        await still_serving(live, "after-truncated")


async def test_undecodable_message_is_invalid_argument(work_dir: Path) -> None:
    async with live_requestor(apps.requestor, work_dir) as live:
        raw = await RawH2.open(live.server.port)
        try:
            raw.conn.send_headers(1, grpc_headers(live.server.port))
            body = b"\x0a\x05\xff\xfe\xfd\xfc\xfb"  # field 1 (task_id): not UTF-8
            raw.conn.send_data(1, struct.pack(">?I", False, len(body)) + body, end_stream=True)
            await raw.flush()
            assert await raw.grpc_status(1) == str(Status.INVALID_ARGUMENT.value)
        finally:
            await raw.aclose()
        await still_serving(live, "after-undecodable")


@pytest.mark.parametrize(
    "payload",
    [
        b"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
        b"\x00" * 64,
        bytes(range(256)) * 8,
        b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",  # the preface only, then nothing
        # The preface, then a frame header announcing 16 KiB of which only 3 bytes come.
        b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + b"\x00\x40\x00\x04\x00\x00\x00\x00\x00" + b"abc",
        # The preface, then a DATA frame on stream 0 (a connection error).
        b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
        + b"\x00\x00\x00\x04\x00\x00\x00\x00\x00"
        + b"\x00\x00\x04\x00\x00\x00\x00\x00\x00abcd",
    ],
    ids=["http1", "zeros", "bytes", "preface-only", "truncated-frame", "data-on-stream-0"],
)
async def test_garbage_connections_do_not_hurt_others(work_dir: Path, payload: bytes) -> None:
    async with live_requestor(apps.requestor, work_dir) as live:
        # Several garbage connections at once, some left open (half a frame pending).
        streams = []
        for _ in range(5):
            stream = await anyio.connect_tcp("127.0.0.1", live.server.port)
            await stream.send(payload)
            streams.append(stream)
        try:
            await still_serving(live, "after-garbage")
            # Connections that sent a protocol error are closed by the server.
            if payload.startswith(b"GET") or payload.startswith(b"\x00"):
                with anyio.fail_after(10):
                    while True:
                        try:
                            await streams[0].receive()
                        except (anyio.EndOfStream, anyio.BrokenResourceError, ConnectionError):
                            break
        finally:
            for stream in streams:
                await stream.aclose()
        await still_serving(live, "after-garbage-closed")


async def test_garbage_mid_call_drops_only_that_connection(work_dir: Path) -> None:
    """A valid call's connection turns to garbage; a call on another connection is unaffected."""
    async with live_requestor(apps.requestor, work_dir) as live:
        await live.stub.create_task(api.CreateTaskRequest(task_id="t", task_params_json="{}"))
        raw = await RawH2.open(live.server.port)
        try:
            raw.conn.send_headers(1, grpc_headers(live.server.port))
            raw.conn.send_data(1, struct.pack(">?I", False, 10) + b"\x0a")
            await raw.flush()
            # A SETTINGS frame whose length is not a multiple of 6: a connection error.
            await raw.stream.send(b"\x00\x00\x05\x04\x00\x00\x00\x00\x00" + b"\xff" * 5)
            assert await raw.grpc_status(1) is None  # connection dropped
        finally:
            await raw.aclose()
        await still_serving(live, "after-mid-call")


async def raw_call(port: int, path: str, body: bytes) -> str | None:
    """One call sending ``body`` as the whole request stream; its grpc-status."""
    raw = await RawH2.open(port)
    try:
        headers = grpc_headers(port)
        headers[2] = (":path", path)
        raw.conn.send_headers(1, headers)
        raw.conn.send_data(1, body, end_stream=True)
        await raw.flush()
        return await raw.grpc_status(1)
    finally:
        await raw.aclose()


def no_traceback(records: list[logging.LogRecord]) -> None:
    bad = [r for r in records if r.exc_info or r.levelno >= logging.ERROR]
    assert not bad, [r.getMessage() for r in bad]


SHORT_BODIES = [b"\x00", b"\x00\x00", b"\x00\x00\x00", b"\x00\x00\x00\x00", b"\x01\xff"]


@pytest.mark.parametrize("body", SHORT_BODIES, ids=lambda b: f"{len(b)}-bytes")
async def test_body_shorter_than_the_prefix_is_invalid_argument(
    work_dir: Path, body: bytes, caplog: pytest.LogCaptureFixture
) -> None:
    """1 to 4 bytes, less than gRPC's 5-byte message prefix, on the requestor's RPCs and Health."""
    async with live_requestor(apps.requestor, work_dir) as live:
        port = live.server.port
        for path in (
            "/golem_task_api.RequestorApp/CreateTask",
            "/golem_task_api.RequestorApp/Shutdown",
            "/grpc.health.v1.Health/Check",
        ):
            assert await raw_call(port, path, body) == str(Status.INVALID_ARGUMENT.value), path
        assert not live.server.shutdown_requested  # an unreadable Shutdown is no Shutdown
        await still_serving(live, "after-short")
    no_traceback(caplog.records)


@pytest.mark.parametrize(
    "body",
    [
        *SHORT_BODIES,
        b"",  # no message at all
        struct.pack(">?I", False, 3) + b"\x0a\x03\xff\xfe\xfd",  # task_id not UTF-8
        struct.pack(">?I", False, 100) + b"\x0a\x01a",  # truncated message
    ],
    ids=lambda b: f"{len(b)}-bytes",
)
async def test_provider_ends_after_an_unreadable_compute(
    tmp_path: Path, body: bytes, caplog: pytest.LogCaptureFixture
) -> None:
    """An unreadable Compute is the provider's one request, failed: INVALID_ARGUMENT, exit 1."""
    work = tmp_path / "task"
    work.mkdir()
    async with serve_provider(apps.provider, work_dir=work, port=0) as server:
        status = await raw_call(server.port, "/golem_task_api.ProviderApp/Compute", body)
        assert status == str(Status.INVALID_ARGUMENT.value)
        with anyio.fail_after(10):
            assert await server.wait() == 1
    assert list(work.iterdir()) == []
    no_traceback(caplog.records)


@pytest.mark.parametrize("path", ["/grpc.health.v1.Health/Check", WATCH_PATH])
async def test_provider_keeps_waiting_after_an_unreadable_side_call(
    tmp_path: Path, path: str, caplog: pytest.LogCaptureFixture
) -> None:
    """Health and progress calls are not the provider's request: refused, it still serves."""
    work = tmp_path / "task"
    work.mkdir()
    async with serve_provider(apps.provider, work_dir=work, port=0) as server:
        for body in SHORT_BODIES:
            assert await raw_call(server.port, path, body) == str(Status.INVALID_ARGUMENT.value)
        client = await ProviderClient.connect("127.0.0.1", server.port, timeout=10)
        async with client:
            assert await client.compute("t", "s", {}) == "s/result.txt"
        assert await server.wait() == 0
    no_traceback(caplog.records)


async def test_oversized_compute_ends_the_provider_as_failed(tmp_path: Path) -> None:
    """RESOURCE_EXHAUSTED before the body is read; the provider's request has failed."""
    work = tmp_path / "task"
    work.mkdir()
    async with serve_provider(apps.provider, work_dir=work, port=0) as server:
        channel = Channel("127.0.0.1", server.port)
        try:
            stub = api.ProviderAppStub(channel)
            big = api.ComputeRequest(task_id="t", subtask_id="s", subtask_params_json="x" * 5 * MiB)
            with pytest.raises(GRPCError) as info:
                await stub.compute(big, timeout=30)
            assert info.value.status is Status.RESOURCE_EXHAUSTED
        finally:
            channel.close()
        with anyio.fail_after(10):
            assert await server.wait() == 1
