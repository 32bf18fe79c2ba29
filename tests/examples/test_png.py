"""The examples' stdlib PNG writer and reader."""

from __future__ import annotations

import struct
import zlib
from collections.abc import Callable
from pathlib import Path

import pytest

from examples._png import decode_png, encode_png, read_png, write_png


def test_round_trip(tmp_path: Path) -> None:
    rows = [bytes(v for x in range(5) for v in (x * 40 + y, y * 50, 255 - x)) for y in range(3)]
    write_png(tmp_path / "a.png", 5, 3, rows)
    assert read_png(tmp_path / "a.png") == (5, 3, rows)


def test_standard_header_and_chunks() -> None:
    data = encode_png(2, 1, [b"\x01\x02\x03\x04\x05\x06"])
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    assert data[12:16] == b"IHDR"
    assert struct.unpack(">II", data[16:24]) == (2, 1)
    assert data.endswith(b"IEND" + struct.pack(">I", zlib.crc32(b"IEND")))


@pytest.mark.parametrize(
    ("corrupt", "message"),
    [
        (lambda d: b"x" + d[1:], "bad signature"),
        (lambda d: d[:30], "truncated"),
        (lambda d: d[:20] + bytes([d[20] ^ 1]) + d[21:], "bad checksum"),
    ],
)
def test_corruption_is_detected(corrupt: Callable[[bytes], bytes], message: str) -> None:
    data = encode_png(2, 2, [b"\x00" * 6, b"\xff" * 6])
    with pytest.raises(ValueError, match=message):
        decode_png(corrupt(data))


def test_wrong_row_length_refused() -> None:
    with pytest.raises(ValueError, match="row 0 has 5 bytes, expected 6"):
        encode_png(2, 1, [b"\x00" * 5])
