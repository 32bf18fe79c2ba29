"""Binding the listening socket ourselves, so that port 0 reports the port it got."""

from __future__ import annotations

import socket
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from grpclib.server import Server

from .._exceptions import ConfigError


def bind(host: str, port: int) -> socket.socket:
    """A listening TCP socket on ``host:port``; ConfigError when that is impossible."""
    if not 0 <= port <= 65535:
        raise ConfigError(f"port must be between 0 and 65535, got {port}")
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        raise ConfigError(f"cannot listen on host {host!r}: {exc.strerror}") from None
    family, kind, proto, _, address = infos[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.listen(128)
    except OSError as exc:
        sock.close()
        raise ConfigError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    sock.setblocking(False)
    return sock


def check_work_dir(work_dir: Path) -> Path:
    """The work dir, which must exist (the node mounts it); ConfigError otherwise."""
    if not work_dir.is_dir():
        raise ConfigError(f"work dir {work_dir} does not exist or is not a folder")
    return work_dir


async def start(
    handlers: Iterable[Any], host: str, port: int, work_dir: Path
) -> tuple[Server, int]:
    """Start a grpclib server with ``handlers``; returns it and the port it listens on."""
    from .._tls import server_context  # TLS when the work dir holds its files, else None

    context = server_context(work_dir)
    sock = bind(host, port)
    server = Server(list(handlers))
    await server.start(sock=sock, ssl=context)
    return server, sock.getsockname()[1]
