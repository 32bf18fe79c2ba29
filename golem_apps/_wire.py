"""The task-api's protobuf messages, encoded and decoded without betterproto.

Why this exists (see docs/performance.md): betterproto 2.0.0b7 takes 50 to
110 µs to decode or encode one of these small messages, more than grpclib
spends on the rest of a call; and a provider process, started once per
subtask, would pay for importing betterproto plus the generated module
before it serves. The task-api's messages use six field kinds (string,
float, enum, int32, bool, repeated string) and nested messages, so the
servers and clients encode them here with the standard library. The
generated classes in :mod:`golem_apps.proto` stay the public types of
``@requestor.rpc`` overrides and of the extra progress service.

The encoding is byte for byte what betterproto produces for the generated
classes (tests/test_wire.py checks it, and that anything decoded here
decodes the same with betterproto). Decoding is strict where betterproto is
lax: a truncated field or a known field with the wrong wire type is an
error rather than a mistyped value. Unknown fields are skipped; a repeated
singular field keeps its last value, a repeated one collects them all. A
message field is None when absent, and set (even to an empty message) is
sent, as betterproto does for a message given explicitly.
"""

from __future__ import annotations

import struct
from typing import Any, ClassVar

__all__ = [
    "SERVING",
    "AbortSubtaskReply",
    "AbortSubtaskRequest",
    "AbortTaskReply",
    "AbortTaskRequest",
    "ComputeReply",
    "ComputeRequest",
    "CreateTaskReply",
    "CreateTaskRequest",
    "DecodeError",
    "DiscardSubtasksReply",
    "DiscardSubtasksRequest",
    "HasPendingSubtasksReply",
    "HasPendingSubtasksRequest",
    "HealthCheckRequest",
    "HealthCheckResponse",
    "Infrastructure",
    "NextSubtaskReply",
    "NextSubtaskRequest",
    "RunBenchmarkReply",
    "RunBenchmarkRequest",
    "ShutdownReply",
    "ShutdownRequest",
    "SubtaskReply",
    "VerifyReply",
    "VerifyRequest",
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
_INT32 = "int32"
_BOOL = "bool"
_STRINGS = "repeated string"

#: A field's kind: one of the names above, or the class of a nested message.
Kind = str | type["WireMessage"]

#: The wire type each field kind must arrive with (a nested message: _LEN).
_WIRE_TYPE = {_STRING: _LEN, _FLOAT: _FIXED32, _ENUM: _VARINT, _INT32: _VARINT, _BOOL: _VARINT,
              _STRINGS: _LEN}  # fmt: skip
_DEFAULTS: dict[str, Any] = {_STRING: "", _FLOAT: 0.0, _ENUM: 0, _INT32: 0, _BOOL: False}
_FLOAT_STRUCT = struct.Struct("<f")
_MASK64 = (1 << 64) - 1
_MASK32 = (1 << 32) - 1
_SIGN32 = 1 << 31


class DecodeError(ValueError):
    """Raised when bytes are not a valid encoding of the message."""


def _varint(value: int) -> bytes:
    value &= _MASK64  # negative values are sent as 64-bit two's complement
    if value < 0x80:
        return bytes((value,))
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


def _utf8(raw: bytes, name: str) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise DecodeError(f"field {name} is not UTF-8: {exc}") from None


class WireMessage:
    """A proto3 message; subclasses list their ``FIELDS``.

    Offers what grpclib's codec calls (``SerializeToString``, ``FromString``)
    and equality for tests.
    """

    #: (field number, attribute name, kind), in field number order.
    FIELDS: ClassVar[tuple[tuple[int, str, Kind], ...]] = ()
    _BY_NUMBER: ClassVar[dict[int, tuple[str, Kind]]] = {}
    __slots__ = ()

    def __init_subclass__(cls) -> None:
        super().__init_subclass__()
        cls._BY_NUMBER = {number: (name, kind) for number, name, kind in cls.FIELDS}

    def __init__(self, **values: Any) -> None:
        for _, name, kind in self.FIELDS:
            if name in values:
                value = values.pop(name)
                if kind is _STRINGS:
                    value = list(value)
            elif kind is _STRINGS:
                value = []
            elif isinstance(kind, str):
                value = _DEFAULTS[kind]
            else:
                value = None  # a message field: absent
            object.__setattr__(self, name, value)
        if values:
            raise TypeError(f"{type(self).__name__} has no field {next(iter(values))!r}")

    def SerializeToString(self) -> bytes:
        """The message's bytes (grpclib's codec calls this name); default values are left out."""
        out = bytearray()
        for number, name, kind in self.FIELDS:
            value = getattr(self, name)
            if kind is _STRING:
                if value:
                    raw = value.encode("utf-8")
                    out += _varint(number << 3 | _LEN)
                    out += _varint(len(raw))
                    out += raw
            elif kind is _STRINGS:
                tag = _varint(number << 3 | _LEN)
                for item in value:
                    raw = item.encode("utf-8")
                    out += tag
                    out += _varint(len(raw))
                    out += raw
            elif kind is _FLOAT:
                if value != 0.0:  # as betterproto: -0.0 is left out too
                    out += _varint(number << 3 | _FIXED32)
                    out += _FLOAT_STRUCT.pack(value)
            elif kind is _ENUM or kind is _INT32 or kind is _BOOL:
                if value:
                    out += _varint(number << 3 | _VARINT)
                    out += _varint(int(value))
            elif value is not None:  # a nested message, given explicitly
                raw = value.SerializeToString()
                out += _varint(number << 3 | _LEN)
                out += _varint(len(raw))
                out += raw
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
            if wire_type != (_WIRE_TYPE[kind] if isinstance(kind, str) else _LEN):
                raise DecodeError(f"field {name} has wire type {wire_type}")
            if kind is _STRING:
                value = _utf8(value, name)
            elif kind is _STRINGS:
                getattr(message, name).append(_utf8(value, name))
                continue
            elif kind is _FLOAT:
                value = _FLOAT_STRUCT.unpack(value)[0]
            elif kind is _INT32:
                value &= _MASK32
                value = (value ^ _SIGN32) - _SIGN32
            elif kind is _BOOL:
                value = value > 0
            elif not isinstance(kind, str):
                value = kind.FromString(value)
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


class Infrastructure(WireMessage):
    """golem_task_api.Infrastructure."""

    FIELDS = ((1, "min_memory_mib", _FLOAT),)
    __slots__ = ("min_memory_mib",)
    min_memory_mib: float


class CreateTaskRequest(WireMessage):
    """golem_task_api.CreateTaskRequest."""

    FIELDS = ((1, "task_id", _STRING), (2, "max_subtasks_count", _INT32),
              (3, "task_params_json", _STRING))  # fmt: skip
    __slots__ = ("max_subtasks_count", "task_id", "task_params_json")
    task_id: str
    max_subtasks_count: int
    task_params_json: str


class CreateTaskReply(WireMessage):
    """golem_task_api.CreateTaskReply."""

    FIELDS = ((1, "env_id", _STRING), (2, "prerequisites_json", _STRING),
              (3, "inf_requirements", Infrastructure))  # fmt: skip
    __slots__ = ("env_id", "inf_requirements", "prerequisites_json")
    env_id: str
    prerequisites_json: str
    inf_requirements: Infrastructure | None


class NextSubtaskRequest(WireMessage):
    """golem_task_api.NextSubtaskRequest."""

    FIELDS = ((1, "task_id", _STRING), (2, "subtask_id", _STRING),
              (3, "opaque_node_id", _STRING))  # fmt: skip
    __slots__ = ("opaque_node_id", "subtask_id", "task_id")
    task_id: str
    subtask_id: str
    opaque_node_id: str


class SubtaskReply(WireMessage):
    """golem_task_api.SubtaskReply."""

    FIELDS = ((1, "subtask_params_json", _STRING), (2, "resources", _STRINGS))
    __slots__ = ("resources", "subtask_params_json")
    subtask_params_json: str
    resources: list[str]


class NextSubtaskReply(WireMessage):
    """golem_task_api.NextSubtaskReply; ``subtask`` (its oneof's one member) None: no subtask."""

    FIELDS = ((1, "subtask", SubtaskReply),)
    __slots__ = ("subtask",)
    subtask: SubtaskReply | None


class VerifyRequest(WireMessage):
    """golem_task_api.VerifyRequest."""

    FIELDS = ((1, "task_id", _STRING), (2, "subtask_id", _STRING))
    __slots__ = ("subtask_id", "task_id")
    task_id: str
    subtask_id: str


class VerifyReply(WireMessage):
    """golem_task_api.VerifyReply; ``result`` is the VerifyResult number."""

    FIELDS = ((1, "result", _ENUM), (2, "reason", _STRING))
    __slots__ = ("reason", "result")
    result: int
    reason: str


class DiscardSubtasksRequest(WireMessage):
    """golem_task_api.DiscardSubtasksRequest."""

    FIELDS = ((1, "task_id", _STRING), (2, "subtask_ids", _STRINGS))
    __slots__ = ("subtask_ids", "task_id")
    task_id: str
    subtask_ids: list[str]


class DiscardSubtasksReply(WireMessage):
    """golem_task_api.DiscardSubtasksReply."""

    FIELDS = ((1, "discarded_subtask_ids", _STRINGS),)
    __slots__ = ("discarded_subtask_ids",)
    discarded_subtask_ids: list[str]


class HasPendingSubtasksRequest(WireMessage):
    """golem_task_api.HasPendingSubtasksRequest."""

    FIELDS = ((1, "task_id", _STRING),)
    __slots__ = ("task_id",)
    task_id: str


class HasPendingSubtasksReply(WireMessage):
    """golem_task_api.HasPendingSubtasksReply."""

    FIELDS = ((1, "has_pending_subtasks", _BOOL),)
    __slots__ = ("has_pending_subtasks",)
    has_pending_subtasks: bool


class AbortTaskRequest(WireMessage):
    """golem_task_api.AbortTaskRequest."""

    FIELDS = ((1, "task_id", _STRING),)
    __slots__ = ("task_id",)
    task_id: str


class AbortTaskReply(WireMessage):
    """golem_task_api.AbortTaskReply (empty)."""

    __slots__ = ()


class AbortSubtaskRequest(WireMessage):
    """golem_task_api.AbortSubtaskRequest."""

    FIELDS = ((1, "task_id", _STRING), (2, "subtask_id", _STRING))
    __slots__ = ("subtask_id", "task_id")
    task_id: str
    subtask_id: str


class AbortSubtaskReply(WireMessage):
    """golem_task_api.AbortSubtaskReply (empty)."""

    __slots__ = ()
