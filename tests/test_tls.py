"""Mutual TLS with the task-api file names: the client certificate is required and verified."""

from __future__ import annotations

import ssl
from pathlib import Path

import pytest
from grpclib.client import Channel

from golem_apps import ConfigError, RequestorClient, serve_requestor
from golem_apps._client import wait_serving
from golem_apps.constants import TLS_CLIENT_CERT, TLS_CLIENT_KEY, TLS_SERVER_CERT, TLS_SERVER_KEY
from tests.apps import sample

from .certs import self_signed, write_tls_files

pytestmark = pytest.mark.anyio


def test_tls_file_names_are_the_specs() -> None:
    assert (TLS_SERVER_KEY, TLS_SERVER_CERT, TLS_CLIENT_CERT, TLS_CLIENT_KEY) == (
        "task_api_server_key.pem",
        "task_api_server_cert.pem",
        "task_api_client_cert.pem",
        "task_api_client_key.pem",
    )


async def refused(port: int, context: ssl.SSLContext | None) -> bool:
    """True if a Health check over ``context`` fails (handshake refused)."""
    channel = Channel("127.0.0.1", port, ssl=context)
    try:
        await wait_serving(channel, f"127.0.0.1:{port}", timeout=1.0)
    except (TimeoutError, ssl.SSLError, ConnectionError, OSError):
        return True
    except Exception:  # any gRPC-level failure also means "not served"
        return True
    finally:
        channel.close()
    return False


def client_context(server_cert: Path, key: bytes, cert: bytes, tmp: Path) -> ssl.SSLContext:
    (tmp / "k.pem").write_bytes(key)
    (tmp / "c.pem").write_bytes(cert)
    context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=server_cert)
    context.check_hostname = False
    context.load_cert_chain(tmp / "c.pem", tmp / "k.pem")
    context.set_alpn_protocols(["h2"])
    return context


async def test_mutual_tls_serves_the_right_client_only(tmp_path: Path) -> None:
    work, client_dir = tmp_path / "work", tmp_path / "client"
    write_tls_files(work, client_dir)
    async with serve_requestor(sample.requestor, work_dir=work) as server:
        async with await RequestorClient.connect(
            port=server.port, tls_dir=client_dir, timeout=5
        ) as client:
            assert await client.run_benchmark() == 42.0

        server_cert = client_dir / TLS_SERVER_CERT
        no_cert = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=server_cert)
        no_cert.check_hostname = False
        no_cert.set_alpn_protocols(["h2"])
        assert await refused(server.port, no_cert)
        other = client_context(server_cert, *self_signed("client"), tmp_path)
        assert await refused(server.port, other)
        expired = client_context(server_cert, *self_signed("client", expired=True), tmp_path)
        assert await refused(server.port, expired)
        assert await refused(server.port, None)  # plaintext


async def test_some_but_not_all_tls_files_refuse_to_start(tmp_path: Path) -> None:
    work = tmp_path / "work"
    write_tls_files(work, tmp_path / "client")
    (work / TLS_CLIENT_CERT).unlink()
    with pytest.raises(ConfigError, match=f"missing: {TLS_CLIENT_CERT}"):
        async with serve_requestor(sample.requestor, work_dir=work):
            pass
