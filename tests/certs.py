"""Self-signed key pairs for the TLS tests, as a Golem node generates them."""

from __future__ import annotations

import datetime
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from golem_apps.constants import TLS_CLIENT_CERT, TLS_CLIENT_KEY, TLS_SERVER_CERT, TLS_SERVER_KEY


def self_signed(name: str, *, expired: bool = False) -> tuple[bytes, bytes]:
    """A (key PEM, certificate PEM) pair for ``name``; ``expired`` makes it outdated."""
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.datetime.now(datetime.UTC)
    start, end = (
        (now - datetime.timedelta(days=30), now - datetime.timedelta(days=1))
        if expired
        else (now - datetime.timedelta(days=1), now + datetime.timedelta(days=30))
    )
    certificate = (
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
    return key_pem, certificate.public_bytes(serialization.Encoding.PEM)


def write_tls_files(server_dir: Path, client_dir: Path) -> None:
    """The node's layout: the server's work dir and the client's folder, each with its files."""
    server_key, server_cert = self_signed("server")
    client_key, client_cert = self_signed("client")
    for folder in (server_dir, client_dir):
        folder.mkdir(parents=True, exist_ok=True)
        (folder / TLS_SERVER_CERT).write_bytes(server_cert)
        (folder / TLS_CLIENT_CERT).write_bytes(client_cert)
    (server_dir / TLS_SERVER_KEY).write_bytes(server_key)
    (server_dir / TLS_SERVER_KEY).chmod(0o600)
    (client_dir / TLS_CLIENT_KEY).write_bytes(client_key)
