"""Minimal PNG reading and writing (8-bit RGB, no interlace) with the standard library.

Enough for the examples to exchange pictures without an imaging library.
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Iterable
from pathlib import Path

SIGNATURE = b"\x89PNG\r\n\x1a\n"
#: Bytes per pixel of 8-bit RGB.
CHANNELS = 3


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def encode_png(width: int, height: int, rows: Iterable[bytes]) -> bytes:
    """A PNG file's bytes from ``height`` rows of ``width * 3`` RGB bytes."""
    raw = bytearray()
    count = 0
    for row in rows:
        if len(row) != width * CHANNELS:
            raise ValueError(f"row {count} has {len(row)} bytes, expected {width * CHANNELS}")
        raw += b"\x00" + row  # filter type 0 (None) on every row
        count += 1
    if count != height:
        raise ValueError(f"got {count} rows, expected {height}")
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        SIGNATURE
        + _chunk(b"IHDR", header)
        + _chunk(b"IDAT", zlib.compress(bytes(raw), 6))
        + _chunk(b"IEND", b"")
    )


def write_png(path: Path, width: int, height: int, rows: Iterable[bytes]) -> None:
    """Write an 8-bit RGB PNG."""
    path.write_bytes(encode_png(width, height, rows))


def decode_png(data: bytes) -> tuple[int, int, list[bytes]]:
    """Width, height and RGB rows of a PNG written by :func:`encode_png`.

    Raises ValueError for anything else: a bad signature or checksum, another
    pixel format, interlacing, filters other than None, or truncated data.
    """
    if not data.startswith(SIGNATURE):
        raise ValueError("not a PNG file (bad signature)")
    pos = len(SIGNATURE)
    header: bytes | None = None
    idat = bytearray()
    while True:
        if pos + 8 > len(data):
            raise ValueError("truncated PNG (no IEND chunk)")
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        kind = data[pos + 4 : pos + 8]
        body = data[pos + 8 : pos + 8 + length]
        crc = data[pos + 8 + length : pos + 12 + length]
        if len(body) != length or len(crc) != 4:
            raise ValueError(f"truncated PNG chunk {kind!r}")
        if struct.unpack(">I", crc)[0] != zlib.crc32(kind + body):
            raise ValueError(f"bad checksum in PNG chunk {kind!r}")
        pos += 12 + length
        if kind == b"IHDR":
            header = body
        elif kind == b"IDAT":
            idat += body
        elif kind == b"IEND":
            break
    if header is None or len(header) != 13:
        raise ValueError("PNG without a valid IHDR chunk")
    width, height, depth, color, compression, filtering, interlace = struct.unpack(
        ">IIBBBBB", header
    )
    if (depth, color, compression, filtering, interlace) != (8, 2, 0, 0, 0):
        raise ValueError("PNG is not 8-bit RGB without interlace")
    try:
        raw = zlib.decompress(bytes(idat))
    except zlib.error as exc:
        raise ValueError(f"PNG pixel data does not decompress: {exc}") from None
    stride = 1 + width * CHANNELS
    if len(raw) != stride * height:
        raise ValueError(f"PNG pixel data has {len(raw)} bytes, expected {stride * height}")
    rows = []
    for y in range(height):
        line = raw[y * stride : (y + 1) * stride]
        if line[0] != 0:
            raise ValueError(f"PNG row {y} uses filter {line[0]}; only None (0) is supported")
        rows.append(line[1:])
    return width, height, rows


def read_png(path: Path) -> tuple[int, int, list[bytes]]:
    """Read a PNG written by :func:`write_png`; see :func:`decode_png`."""
    return decode_png(path.read_bytes())
