"""TLS per the task-api: mutual TLS when the work dir holds the three files.

Imported only when a TLS file exists or a client asks for TLS, so that plain
providers never pay for the ssl module.
"""

from __future__ import annotations

import logging
import ssl
from pathlib import Path

from ._exceptions import ConfigError
from .constants import TLS_CLIENT_CERT as CLIENT_CERT
from .constants import TLS_CLIENT_KEY as CLIENT_KEY
from .constants import TLS_SERVER_CERT as SERVER_CERT
from .constants import TLS_SERVER_KEY as SERVER_KEY

SERVER_FILES = (SERVER_KEY, SERVER_CERT, CLIENT_CERT)
CLIENT_FILES = (CLIENT_KEY, CLIENT_CERT, SERVER_CERT)

log = logging.getLogger("golem_apps.tls")


def _check_files(folder: Path, names: tuple[str, ...], side: str) -> None:
    missing = [name for name in names if not (folder / name).is_file()]
    if missing:
        raise ConfigError(
            f"{side} TLS needs {', '.join(names)} in {folder}; missing: {', '.join(missing)}"
        )


def server_context(work_dir: Path) -> ssl.SSLContext | None:
    """The server's SSL context, or None (plaintext) when none of the three files exist.

    Some but not all of them: ConfigError naming the missing ones. The client
    certificate is required and verified against ``task_api_client_cert.pem``.
    """
    if not any((work_dir / name).exists() for name in SERVER_FILES):
        return None
    _check_files(work_dir, SERVER_FILES, "server")
    key = work_dir / SERVER_KEY
    if key.stat().st_mode & 0o077:
        log.warning("TLS private key %s is readable by other users: chmod 600 it", key)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH, cafile=work_dir / CLIENT_CERT)
    context.verify_mode = ssl.CERT_REQUIRED
    try:
        context.load_cert_chain(work_dir / SERVER_CERT, key)
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(f"cannot load the server TLS key pair from {work_dir}: {exc}") from None
    context.set_alpn_protocols(["h2"])
    return context


def client_context(tls_dir: Path) -> ssl.SSLContext:
    """A client's SSL context: its key pair, and the server verified against its certificate."""
    _check_files(tls_dir, CLIENT_FILES, "client")
    context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=tls_dir / SERVER_CERT)
    context.check_hostname = False  # the node connects to container IPs, not names
    try:
        context.load_cert_chain(tls_dir / CLIENT_CERT, tls_dir / CLIENT_KEY)
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(f"cannot load the client TLS key pair from {tls_dir}: {exc}") from None
    context.set_alpn_protocols(["h2"])
    return context
