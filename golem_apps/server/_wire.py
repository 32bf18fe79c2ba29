"""The few protobuf messages a provider and the health service exchange, without betterproto.

Why this exists (see docs/performance.md): a provider process is started
once per subtask, and importing betterproto plus the generated module costs
more than everything else a provider does before it serves. The provider
needs only eight small messages built from three field kinds (string,
float, enum), so it encodes and decodes them here with the standard library.

The encoding is byte for byte what betterproto produces for the generated
classes in :mod:`golem_apps.proto` (tests/test_wire.py checks it, and that
anything decoded here decodes the same with betterproto). Decoding is
strict where betterproto is lax: a truncated field or a known field with
the wrong wire type is an error rather than a mistyped value. Unknown
fields are skipped, and a repeated scalar field keeps its last value.
"""

from __future__ import annotations

import struct
from typing import Any, ClassVar

__all__ = [
    "SERVING",
    "ComputeReply",
    "ComputeRequest",
    "DecodeError",
    "HealthCheckRequest",
    "HealthCheckResponse",
    "RunBenchmarkReply",
    "RunBenchmarkRequest",
    "ShutdownReply",
    "ShutdownRequest",
    "WireMessage",
]

#: HealthCheckResponse.ServingStatus.SERVING.
SERVING = 1

_VARINT = 0
_FIXED64 = 1
_LEN = 2
_FIXED32 = 5

_STRING = "string"
_FLOAT = "float"
_ENUM = "enum"

#: The wire type each field kind must arrive with.
_WIRE_TYPE = {_STRING: _LEN, _FLOAT: _FIXED32, _ENUM: _VARINT}
_DEFAULTS: dict[str, Any] = {_STRING: "", _FLOAT: 0.0, _ENUM: 0}
_FLOAT_STRUCT = struct.Struct("<f")
_MASK64 = (1 << 64) - 1


class DecodeError(ValueError):
    """Raised when bytes are not a valid encoding of the message."""


def _varint(value: int) -> bytes:
    value &= _MASK64  # negative enum values are sent as 64-bit two's complement
    out = bytearray()
    while value > 0x7F:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def _read_varint(data: bytes, pos: int) -> tuple[int, int]:
    result = 0
    shift = 0
    end = len(data)
    while True:
        if pos >= end:
            raise DecodeError("truncated varint")
        if shift >= 64:
            raise DecodeError("varint longer than 10 bytes")
        byte = data[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result, pos
        shift += 7


class WireMessage:
    """A proto3 message of string, float and enum fields; subclasses list ``FIELDS``.

    Offers what grpclib's codec calls (``SerializeToString``, ``FromString``)
    and equality for tests.
    """

    #: (field number, attribute name, kind), in field number order.
    FIELDS: ClassVar[tuple[tuple[int, str, str], ...]] = ()
    _BY_NUMBER: ClassVar[dict[int, tuple[str, str]]] = {}
    __slots__ = ()

    def __init_subclass__(cls) -> None:
        super().__init_subclass__()
        cls._BY_NUMBER = {number: (name, kind) for number, name, kind in cls.FIELDS}

    def __init__(self, **values: Any) -> None:
        for _, name, kind in self.FIELDS:
            object.__setattr__(self, name, values.pop(name, _DEFAULTS[kind]))
        if values:
            raise TypeError(f"{type(self).__name__} has no field {next(iter(values))!r}")

    def SerializeToString(self) -> bytes:
        """The message's bytes (grpclib's codec calls this name); default values are left out."""
        out = bytearray()
        for number, name, kind in self.FIELDS:
            value = getattr(self, name)
            if kind == _STRING:
                if value:
                    raw = value.encode("utf-8")
                    out += _varint(number << 3 | _LEN)
                    out += _varint(len(raw))
                    out += raw
            elif kind == _FLOAT:
                if value != 0.0:  # as betterproto: -0.0 is left out too
                    out += _varint(number << 3 | _FIXED32)
                    out += _FLOAT_STRUCT.pack(value)
            elif value != 0:
                out += _varint(number << 3 | _VARINT)
                out += _varint(int(value))
        return bytes(out)

    __bytes__ = SerializeToString

    @classmethod
    def FromString(cls, data: bytes) -> Any:
        """Decode ``data`` (grpclib's codec calls this name); DecodeError if it is invalid."""
        message = cls()
        data = bytes(data)
        pos = 0
        end = len(data)
        while pos < end:
            key, pos = _read_varint(data, pos)
            number, wire_type = key >> 3, key & 7
            if number == 0:
                raise DecodeError("field number 0")
            if wire_type == _VARINT:
                value: Any
                value, pos = _read_varint(data, pos)
            elif wire_type == _FIXED64:
                value, pos = data[pos : pos + 8], pos + 8
            elif wire_type == _LEN:
                length, pos = _read_varint(data, pos)
                value, pos = data[pos : pos + length], pos + length
            elif wire_type == _FIXED32:
                value, pos = data[pos : pos + 4], pos + 4
            else:
                raise DecodeError(f"unsupported wire type {wire_type}")
            if pos > end:
                raise DecodeError("truncated field")
            field = cls._BY_NUMBER.get(number)
            if field is None:
                continue  # an unknown field: skipped
            name, kind = field
            if wire_type != _WIRE_TYPE[kind]:
                raise DecodeError(f"field {name} has wire type {wire_type}")
            if kind == _STRING:
                try:
                    value = value.decode("utf-8")
                except UnicodeDecodeError as exc:
                    raise DecodeError(f"field {name} is not UTF-8: {exc}") from None
            elif kind == _FLOAT:
                value = _FLOAT_STRUCT.unpack(value)[0]
            object.__setattr__(message, name, value)
        return message

    def __eq__(self, other: object) -> bool:
        if type(other) is not type(self):
            return NotImplemented
        return all(getattr(self, name) == getattr(other, name) for _, name, _ in self.FIELDS)

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        fields = ", ".join(f"{name}={getattr(self, name)!r}" for _, name, _ in self.FIELDS)
        return f"{type(self).__name__}({fields})"


class ComputeRequest(WireMessage):
    """golem_task_api.ComputeRequest."""

    FIELDS = ((1, "task_id", _STRING), (2, "subtask_id", _STRING),
              (3, "subtask_params_json", _STRING))  # fmt: skip
    __slots__ = ("subtask_id", "subtask_params_json", "task_id")
    task_id: str
    subtask_id: str
    subtask_params_json: str


class ComputeReply(WireMessage):
    """golem_task_api.ComputeReply."""

    FIELDS = ((1, "output_filepath", _STRING),)
    __slots__ = ("output_filepath",)
    output_filepath: str


class RunBenchmarkRequest(WireMessage):
    """golem_task_api.RunBenchmarkRequest (empty)."""

    __slots__ = ()


class RunBenchmarkReply(WireMessage):
    """golem_task_api.RunBenchmarkReply."""

    FIELDS = ((1, "score", _FLOAT),)
    __slots__ = ("score",)
    score: float


class ShutdownRequest(WireMessage):
    """golem_task_api.ShutdownRequest (empty)."""

    __slots__ = ()


class ShutdownReply(WireMessage):
    """golem_task_api.ShutdownReply (empty)."""

    __slots__ = ()


class HealthCheckRequest(WireMessage):
    """grpc.health.v1.HealthCheckRequest."""

    FIELDS = ((1, "service", _STRING),)
    __slots__ = ("service",)
    service: str


class HealthCheckResponse(WireMessage):
    """grpc.health.v1.HealthCheckResponse; ``status`` is the ServingStatus number."""

    FIELDS = ((1, "status", _ENUM),)
    __slots__ = ("status",)
    status: int
