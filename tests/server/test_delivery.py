"""A stopping server makes sure its client has read its last reply before the process exits.

A one-shot provider exits right after replying. Had it exited with unread
bytes in its socket (anything the client sent after the request), the
kernel would reset the connection and the client could lose the reply of a
call that succeeded ("Connection lost"). So the provider PINGs its client
and exits at the ACK, which the client sends once it has read everything
before it. Here the client does not read for a while: the provider waits.
"""

from __future__ import annotations

import socket
import struct
import subprocess
import sys
import time
from pathlib import Path

import h2.config
import h2.connection
import h2.events

from golem_apps import _wire as wire
from tests.conftest import ROOT


def start_provider(work_dir: Path) -> tuple[subprocess.Popen[str], int]:
    command = [sys.executable, "-m", "golem_apps.serve", "tests.apps.sample", "provider", "0"]
    process = subprocess.Popen(
        [*command, "--work-dir", str(work_dir)], cwd=ROOT, stdout=subprocess.PIPE, text=True
    )
    assert process.stdout is not None
    line = process.stdout.readline()
    assert line.startswith("provider serving on "), line
    return process, int(line.rsplit(":", 1)[1])


def test_the_one_reply_is_read_before_the_provider_exits(tmp_path: Path) -> None:
    process, port = start_provider(tmp_path)
    try:
        sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
        conn.initiate_connection()
        headers = [
            (":method", "POST"), (":scheme", "http"), (":authority", f"127.0.0.1:{port}"),
            (":path", "/golem_task_api.ProviderApp/RunBenchmark"),
            ("content-type", "application/grpc"), ("te", "trailers"),
        ]  # fmt: skip
        conn.send_headers(1, headers)
        conn.send_data(1, struct.pack(">?I", False, 0), end_stream=True)
        sock.sendall(conn.data_to_send())
        # Not reading for a while: a provider that does not wait for its client exits now.
        time.sleep(0.2)  # under DELIVERY_TIMEOUT
        assert process.poll() is None, "the provider exited before its reply was read"
        conn.ping(b"clientpi")  # more bytes for the provider to read
        body, trailers = b"", {}
        try:
            sock.sendall(conn.data_to_send())
            while data := sock.recv(65536):
                for event in conn.receive_data(data):
                    if isinstance(event, h2.events.DataReceived):
                        body += event.data
                    elif isinstance(event, h2.events.TrailersReceived):
                        trailers = dict(event.headers)
                sock.sendall(conn.data_to_send())  # acknowledges the provider's PING
        except OSError:
            pass  # a reset connection: what was read so far is all the client gets
        finally:
            sock.close()
        assert trailers.get(b"grpc-status") == b"0"
        reply = wire.RunBenchmarkReply.FromString(body[5:])
        assert reply.score == 7.5
        assert process.wait(timeout=10) == 0
    finally:
        process.kill()
        process.wait()
        assert process.stdout is not None
        process.stdout.close()
