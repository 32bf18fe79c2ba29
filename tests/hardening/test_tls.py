"""Mutual TLS with the task-api's three files: client certificate required and verified."""

from __future__ import annotations

import datetime
import logging
import os
import ssl
import subprocess
from pathlib import Path

import anyio
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from grpclib.client import Channel

from golem_apps import ConfigError, RequestorClient, serve_requestor
from golem_apps.constants import TLS_CLIENT_CERT, TLS_CLIENT_KEY, TLS_SERVER_CERT, TLS_SERVER_KEY
from golem_apps.proto.grpc.health.v1 import (
    HealthCheckRequest,
    HealthCheckResponseServingStatus,
    HealthStub,
)

from ..conftest import ROOT
from . import apps

pytestmark = pytest.mark.anyio

SERVER_FILES = (TLS_SERVER_KEY, TLS_SERVER_CERT, TLS_CLIENT_CERT)


def self_signed(name: str, *, expired: bool = False) -> tuple[bytes, bytes]:
    """A self-signed certificate (as Golem nodes make them) and its key, both PEM."""
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.datetime.now(datetime.UTC)
    start, end = (now - datetime.timedelta(days=30), now - datetime.timedelta(days=1))
    if not expired:
        start, end = now - datetime.timedelta(days=1), now + datetime.timedelta(days=30)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(end)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    return cert.public_bytes(serialization.Encoding.PEM), key_pem


def write_private(path: Path, data: bytes, mode: int = 0o600) -> None:
    path.write_bytes(data)
    path.chmod(mode)


def setup_tls(work: Path, client: Path, *, expired_client: bool = False) -> None:
    """The node's layout: three server files in the work dir, the client's three in ``client``."""
    server_cert, server_key = self_signed("server")
    client_cert, client_key = self_signed("client", expired=expired_client)
    write_private(work / TLS_SERVER_KEY, server_key)
    (work / TLS_SERVER_CERT).write_bytes(server_cert)
    (work / TLS_CLIENT_CERT).write_bytes(client_cert)
    client.mkdir(exist_ok=True)
    write_private(client / TLS_CLIENT_KEY, client_key)
    (client / TLS_CLIENT_CERT).write_bytes(client_cert)
    (client / TLS_SERVER_CERT).write_bytes(server_cert)


def client_ssl(client: Path, *, cert: tuple[Path, Path] | None) -> ssl.SSLContext:
    """A client context verifying the server; presenting ``cert`` (cert, key) if given."""
    context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=client / TLS_SERVER_CERT)
    context.check_hostname = False
    if cert is not None:
        context.load_cert_chain(*cert)
    context.set_alpn_protocols(["h2"])
    return context


async def health(port: int, context: ssl.SSLContext | None) -> bool | BaseException:
    """True when Health answers SERVING over ``context``; the error otherwise."""
    channel = Channel("127.0.0.1", port, ssl=context)
    try:
        with anyio.fail_after(10):
            reply = await HealthStub(channel).check(HealthCheckRequest(service=""), timeout=5)
        return reply.status == HealthCheckResponseServingStatus.SERVING
    except Exception as exc:
        return exc
    finally:
        channel.close()


async def test_mutual_tls_accepts_the_node_and_refuses_the_rest(tmp_path: Path) -> None:
    work, client = tmp_path / "work", tmp_path / "client"
    work.mkdir()
    setup_tls(work, client)
    other_cert, other_key = self_signed("client")  # same name, another key
    (tmp_path / "other_cert.pem").write_bytes(other_cert)
    write_private(tmp_path / "other_key.pem", other_key)
    good = (client / TLS_CLIENT_CERT, client / TLS_CLIENT_KEY)
    other = (tmp_path / "other_cert.pem", tmp_path / "other_key.pem")
    async with serve_requestor(apps.requestor, work_dir=work, port=0) as server:
        # The node's client: its own files, through the typed client too.
        assert await health(server.port, client_ssl(client, cert=good)) is True
        async with await RequestorClient.connect(
            "127.0.0.1", server.port, tls_dir=client, timeout=10
        ) as typed:
            created = await typed.create_task("t", {"n": 1})
            assert created.env_id
        refused = {
            "no client certificate": await health(server.port, client_ssl(client, cert=None)),
            "another self-signed one": await health(server.port, client_ssl(client, cert=other)),
            "plaintext": await health(server.port, None),
        }
        for what, outcome in refused.items():
            assert outcome is not True, f"{what}: accepted"
            assert isinstance(outcome, BaseException), (what, outcome)
        # And the server still serves the node afterwards.
        assert await health(server.port, client_ssl(client, cert=good)) is True


async def test_expired_client_certificate_is_refused(tmp_path: Path) -> None:
    work, client = tmp_path / "work", tmp_path / "client"
    work.mkdir()
    setup_tls(work, client, expired_client=True)
    good_but_expired = (client / TLS_CLIENT_CERT, client / TLS_CLIENT_KEY)
    async with serve_requestor(apps.requestor, work_dir=work, port=0) as server:
        outcome = await health(server.port, client_ssl(client, cert=good_but_expired))
        assert isinstance(outcome, BaseException), outcome


async def test_plaintext_without_tls_files(work_dir: Path) -> None:
    async with serve_requestor(apps.requestor, work_dir=work_dir, port=0) as server:
        assert await health(server.port, None) is True


@pytest.mark.parametrize("present", [(0,), (1,), (2,), (0, 1), (0, 2), (1, 2)])
async def test_some_but_not_all_files_refuse_to_start(
    tmp_path: Path, present: tuple[int, ...]
) -> None:
    work, client = tmp_path / "work", tmp_path / "client"
    work.mkdir()
    setup_tls(work, client)
    missing = [name for i, name in enumerate(SERVER_FILES) if i not in present]
    for name in missing:
        (work / name).unlink()
    with pytest.raises(ConfigError) as info:
        async with serve_requestor(apps.requestor, work_dir=work, port=0):
            pass
    for name in missing:
        assert name in str(info.value)


@pytest.mark.slow
@pytest.mark.parametrize("role", ["requestor", "provider"])
def test_serve_cli_refuses_incomplete_tls_files(python: str, tmp_path: Path, role: str) -> None:
    work, client = tmp_path / "work", tmp_path / "client"
    work.mkdir()
    setup_tls(work, client)
    (work / TLS_CLIENT_CERT).unlink()
    done = subprocess.run(
        [python, "-m", "golem_apps.serve", "tests.hardening.apps", role, "0",
         "--work-dir", str(work)],
        cwd=ROOT, capture_output=True, text=True, timeout=60,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )  # fmt: skip
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert "error" in lines[0] and TLS_CLIENT_CERT in lines[0]
    assert "Traceback" not in done.stderr


async def test_private_key_readable_by_others_warns(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    work, client = tmp_path / "work", tmp_path / "client"
    work.mkdir()
    setup_tls(work, client)
    with caplog.at_level(logging.WARNING, logger="golem_apps"):
        async with serve_requestor(apps.requestor, work_dir=work, port=0):
            pass
    assert not [r for r in caplog.records if TLS_SERVER_KEY in r.getMessage()]
    (work / TLS_SERVER_KEY).chmod(0o644)
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="golem_apps"):
        async with serve_requestor(apps.requestor, work_dir=work, port=0):
            pass
    warnings = [r for r in caplog.records if TLS_SERVER_KEY in r.getMessage()]
    assert warnings and warnings[0].levelno == logging.WARNING
    assert "readable" in warnings[0].getMessage()


@pytest.mark.slow
def test_serve_cli_warns_about_a_readable_key(python: str, tmp_path: Path) -> None:
    work, client = tmp_path / "work", tmp_path / "client"
    work.mkdir()
    setup_tls(work, client)
    (work / TLS_SERVER_KEY).chmod(0o644)
    proc = subprocess.Popen(
        [python, "-m", "golem_apps.serve", "tests.hardening.apps", "requestor", "0",
         "--work-dir", str(work)],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        assert "serving on" in proc.stdout.readline()
    finally:
        proc.terminate()
        _, stderr = proc.communicate(timeout=20)
    warnings = [line for line in stderr.splitlines() if TLS_SERVER_KEY in line]
    assert warnings and "WARNING" in warnings[0] and "readable" in warnings[0], stderr


def test_tls_file_names_are_the_specs() -> None:
    assert (TLS_SERVER_KEY, TLS_SERVER_CERT, TLS_CLIENT_CERT, TLS_CLIENT_KEY) == (
        "task_api_server_key.pem",
        "task_api_server_cert.pem",
        "task_api_client_cert.pem",
        "task_api_client_key.pem",
    )
