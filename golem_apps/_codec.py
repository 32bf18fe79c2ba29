"""The runtime of the light protobuf messages that ``make proto`` generates into :mod:`._wire`.

Why a second codec beside betterproto (see docs/messages.md): betterproto
2.0.0b7 takes 50 to 110 µs to encode or decode one of the task-api's small
messages, more than grpclib spends on the rest of a call, and a provider
process, started once per subtask, would pay for importing betterproto before
it serves. This module and the generated one import only the standard
library's ``struct``.

The generated classes only declare their fields (``FIELDS``, from the protos'
descriptors); this one base class encodes and decodes them all. The encoding
is betterproto's, byte for byte (tests/test_wire.py checks it against
betterproto and Google's protobuf runtime): fields in number order, proto3
defaults left out (``-0.0`` too, as betterproto does; Google's runtime sends
it), packed repeated numbers, a message or oneof member sent whenever it is
set (not None), even when empty. One exception: a map entry's key and value
are always sent, as Google's runtime does (betterproto leaves out an empty
string, bytes or message there). Decoding follows Google's runtime, the
reference: unknown fields are skipped, a singular field keeps its last value,
a message field given twice is merged, repeated numbers are read packed or
not, 32-bit varints are truncated to 32 bits. It is strict where Google's is
lax: a truncated field, invalid UTF-8, a known field with a wrong wire type,
or a map entry with an unknown field is a :class:`DecodeError`.
"""

from __future__ import annotations

import struct
from typing import Any, ClassVar

__all__ = [
    "BOOL",
    "BYTES",
    "DOUBLE",
    "ENUM",
    "FIXED32",
    "FIXED64",
    "FLOAT",
    "INT32",
    "INT64",
    "MAP",
    "OPTIONAL",
    "REPEATED",
    "SFIXED32",
    "SFIXED64",
    "SINGULAR",
    "SINT32",
    "SINT64",
    "STRING",
    "UINT32",
    "UINT64",
    "DecodeError",
    "WireMessage",
]

# Field kinds: the proto scalar type names (a message field's kind is its class).
DOUBLE = "double"
FLOAT = "float"
INT64 = "int64"
UINT64 = "uint64"
INT32 = "int32"
FIXED64 = "fixed64"
FIXED32 = "fixed32"
BOOL = "bool"
STRING = "string"
BYTES = "bytes"
UINT32 = "uint32"
ENUM = "enum"
SFIXED32 = "sfixed32"
SFIXED64 = "sfixed64"
SINT32 = "sint32"
SINT64 = "sint64"

# Field labels.
SINGULAR = "singular"  # proto3 implicit presence: left out at its default
REPEATED = "repeated"
MAP = "map"  # a map<key, value>: its kind is (key kind, value kind)
OPTIONAL = "optional"  # explicit presence (a message, a oneof member, proto3 `optional`):
# None when unset, else sent even at its default

#: A scalar's or a message's kind: one of the names above, or the message's class.
ValueKind = str | type["WireMessage"]
#: A field's kind: a value kind, or for a map (key kind, value kind).
Kind = ValueKind | tuple[str, ValueKind]
#: One entry of a message's FIELDS: (number, name, kind, label, oneof group or None).
Field = tuple[int, str, Kind, str, str | None]

_VARINT = 0
_I64 = 1
_LEN = 2
_I32 = 5

_MASK64 = (1 << 64) - 1
_MASK32 = (1 << 32) - 1

_FIXED_STRUCT = {
    DOUBLE: struct.Struct("<d"),
    FLOAT: struct.Struct("<f"),
    FIXED64: struct.Struct("<Q"),
    SFIXED64: struct.Struct("<q"),
    FIXED32: struct.Struct("<I"),
    SFIXED32: struct.Struct("<i"),
}
_WIRE_TYPE = {STRING: _LEN, BYTES: _LEN, DOUBLE: _I64, FIXED64: _I64, SFIXED64: _I64,
              FLOAT: _I32, FIXED32: _I32, SFIXED32: _I32}  # fmt: skip
_VARINT_KINDS = frozenset((INT64, UINT64, INT32, BOOL, UINT32, ENUM, SINT32, SINT64))
_DEFAULTS: dict[str, Any] = {STRING: "", BYTES: b"", BOOL: False, DOUBLE: 0.0, FLOAT: 0.0}


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
            return result & _MASK64, pos
        shift += 7


def _signed(value: int, bits: int) -> int:
    value &= (1 << bits) - 1
    sign = 1 << (bits - 1)
    return (value ^ sign) - sign


def _zigzag(value: int, bits: int) -> int:
    return ((value << 1) ^ (value >> (bits - 1))) & ((1 << bits) - 1)


def _unzigzag(value: int, bits: int) -> int:
    value &= (1 << bits) - 1
    return (value >> 1) ^ -(value & 1)


def _encode_number(kind: str, value: Any) -> bytes:
    """A number's bytes without its tag (varint or fixed)."""
    if kind is SINT32 or kind is SINT64:
        return _varint(_zigzag(value, 32 if kind is SINT32 else 64))
    if kind in _VARINT_KINDS:
        return _varint(int(value))
    return _FIXED_STRUCT[kind].pack(value)


def _decode_varint_kind(kind: str, value: int) -> Any:
    if kind is INT32 or kind is ENUM:
        return _signed(value, 32)
    if kind is UINT32:
        return value & _MASK32
    if kind is INT64:
        return _signed(value, 64)
    if kind is BOOL:
        return value != 0
    if kind is SINT32:
        return _unzigzag(value, 32)
    if kind is SINT64:
        return _unzigzag(value, 64)
    return value  # uint64


def _utf8(raw: bytes, name: str) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise DecodeError(f"field {name} is not UTF-8: {exc}") from None


def _field_bytes(number: int, kind: ValueKind, value: Any) -> bytes:
    """One field with its tag, even at its default (as a map entry's key and value are)."""
    if kind is STRING or kind is BYTES or not isinstance(kind, str):
        raw = value.encode("utf-8") if kind is STRING else bytes(value)
        return _varint(number << 3 | _LEN) + _varint(len(raw)) + raw
    return _varint(number << 3 | _WIRE_TYPE.get(kind, _VARINT)) + _encode_number(kind, value)


class WireMessage:
    """A proto3 message; the generated subclasses list their ``FIELDS``.

    Offers what grpclib's codec calls (``SerializeToString``, ``FromString``)
    and equality for tests.
    """

    #: The message's full proto name, e.g. ``golem_task_api.ComputeRequest``.
    PROTO_NAME: ClassVar[str] = ""
    #: (number, name, kind, label, oneof group), in field number order.
    FIELDS: ClassVar[tuple[Field, ...]] = ()
    # Precomputed from FIELDS: the encoding plan, and the decoding plan by key.
    _PLAN: ClassVar[tuple[tuple[bytes, str, Any, str], ...]] = ()
    _BY_KEY: ClassVar[dict[int, tuple[int, str, Any, str, str | None]]] = {}
    _BY_NUMBER: ClassVar[dict[int, Field]] = {}
    _GROUPS: ClassVar[dict[str, tuple[str, ...]]] = {}
    _ENTRY: ClassVar[bool] = False  # a map entry: key and value only
    __slots__ = ()

    def __init_subclass__(cls) -> None:
        super().__init_subclass__()
        plan = []
        by_key: dict[int, tuple[int, str, Any, str, str | None]] = {}
        groups: dict[str, list[str]] = {}
        for number, name, declared, label, group in cls.FIELDS:
            # A map's entries are messages of a class of their own.
            kind: Any = _map_entry(*declared) if isinstance(declared, tuple) else declared
            field = (number, name, kind, label, group)
            wire_type = _WIRE_TYPE.get(kind, _VARINT) if isinstance(kind, str) else _LEN
            packed = label is REPEATED and isinstance(kind, str) and wire_type != _LEN
            by_key[number << 3 | wire_type] = field
            if packed:
                by_key[number << 3 | _LEN] = field  # a packed run of numbers
            plan.append((_varint(number << 3 | (_LEN if packed else wire_type)), name, kind, label))
            if group is not None:
                groups.setdefault(group, []).append(name)
        cls._PLAN = tuple(plan)
        cls._BY_KEY = by_key
        cls._BY_NUMBER = {field[0]: field for field in cls.FIELDS}
        cls._GROUPS = {group: tuple(names) for group, names in groups.items()}

    def SerializeToString(self) -> bytes:
        """The message's bytes (grpclib's codec calls this name)."""
        out = bytearray()
        for tag, name, kind, label in self._PLAN:
            value = getattr(self, name)
            if label is SINGULAR:
                if not value:  # the default: left out (as betterproto, -0.0 too)
                    continue
            elif label is REPEATED:
                if not value:
                    continue
                if kind is STRING or kind is BYTES or not isinstance(kind, str):
                    for item in value:
                        raw = item.encode("utf-8") if kind is STRING else bytes(item)
                        out += tag
                        out += _varint(len(raw))
                        out += raw
                else:  # numbers, packed
                    raw = b"".join([_encode_number(kind, item) for item in value])
                    out += tag
                    out += _varint(len(raw))
                    out += raw
                continue
            elif label is MAP:
                for item in value.items():
                    raw = kind.entry_bytes(*item)
                    out += tag
                    out += _varint(len(raw))
                    out += raw
                continue
            elif value is None:  # OPTIONAL, or a message field: unset
                continue
            out += tag
            if kind is STRING:
                raw = value.encode("utf-8")
                out += _varint(len(raw))
                out += raw
            elif isinstance(kind, str):
                if kind is BYTES:
                    out += _varint(len(value))
                    out += value
                else:
                    out += _encode_number(kind, value)
            else:
                raw = value.SerializeToString()
                out += _varint(len(raw))
                out += raw
        return bytes(out)

    __bytes__ = SerializeToString

    @classmethod
    def FromString(cls, data: bytes) -> Any:
        """Decode ``data`` (grpclib's codec calls this name); DecodeError if it is invalid."""
        message = cls()
        message._merge(bytes(data))
        return message

    def _merge(self, data: bytes) -> None:
        """Decode ``data`` into this message, as Google's MergeFromString does."""
        by_key = self._BY_KEY
        pos = 0
        end = len(data)
        while pos < end:
            key = data[pos]
            if key < 0x80:
                pos += 1
            else:
                key, pos = _read_varint(data, pos)
                if key > _MASK32:  # field numbers stop at 2**29 - 1
                    raise DecodeError("field number too large")
            wire_type = key & 7
            value: Any
            if wire_type == _LEN:
                length = data[pos] if pos < end else 0x80
                if length < 0x80:
                    pos += 1
                else:
                    length, pos = _read_varint(data, pos)
                value, pos = data[pos : pos + length], pos + length
            elif wire_type == _VARINT:
                value, pos = _read_varint(data, pos)
            elif wire_type == _I32:
                value, pos = data[pos : pos + 4], pos + 4
            elif wire_type == _I64:
                value, pos = data[pos : pos + 8], pos + 8
            else:
                raise DecodeError(f"unsupported wire type {wire_type}")
            if pos > end:
                raise DecodeError("truncated field")
            field = by_key.get(key)
            if field is None:
                if key >> 3 == 0:
                    raise DecodeError("field number 0")
                known = self._BY_NUMBER.get(key >> 3)
                if known is not None:
                    raise DecodeError(f"field {known[1]} has wire type {wire_type}")
                if self._ENTRY:  # protobuf drops such an entry whole: refused here
                    raise DecodeError("a map entry with a field other than key and value")
                continue  # an unknown field: skipped
            _, name, kind, label, group = field
            if kind is STRING:
                value = _utf8(value, name)
            elif not isinstance(kind, str):  # a nested message
                if label is MAP:
                    entry = kind.FromString(value)
                    item = entry.value
                    getattr(self, name)[entry.key] = kind.VALUE() if item is None else item
                    continue
                if label is REPEATED:
                    value = kind.FromString(value)
                else:
                    current = getattr(self, name)
                    if current is None:
                        current = kind()
                    current._merge(value)
                    value = current
            elif label is REPEATED and wire_type == _LEN and kind is not BYTES:
                getattr(self, name).extend(_unpack(kind, value))
                continue
            elif wire_type == _VARINT:
                value = _decode_varint_kind(kind, value)
            elif kind is not BYTES:
                value = _FIXED_STRUCT[kind].unpack(value)[0]
            if label is REPEATED:
                getattr(self, name).append(value)
                continue
            if group is not None:
                for sibling in self._GROUPS[group]:
                    if sibling != name:
                        object.__setattr__(self, sibling, None)
            object.__setattr__(self, name, value)

    def __eq__(self, other: object) -> bool:
        if type(other) is not type(self):
            return NotImplemented
        return all(getattr(self, field[1]) == getattr(other, field[1]) for field in self.FIELDS)

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        fields = ", ".join(f"{field[1]}={getattr(self, field[1])!r}" for field in self.FIELDS)
        return f"{type(self).__name__}({fields})"


def _unpack(kind: str, data: bytes) -> list[Any]:
    """The numbers of a packed repeated field."""
    fixed = _FIXED_STRUCT.get(kind)
    if fixed is not None:
        if len(data) % fixed.size:
            raise DecodeError("truncated packed field")
        return [item for (item,) in fixed.iter_unpack(data)]
    values = []
    pos = 0
    while pos < len(data):
        value, pos = _read_varint(data, pos)
        values.append(_decode_varint_kind(kind, value))
    return values


class _MapEntry(WireMessage):
    """One entry of a map field: key 1, value 2, both always sent (as protobuf does)."""

    KEY: ClassVar[str] = STRING
    VALUE: ClassVar[Any] = STRING
    _ENTRY = True
    __slots__ = ("key", "value")

    def __init__(self) -> None:
        self.key = _DEFAULTS.get(self.KEY, 0)
        value = self.VALUE
        self.value = _DEFAULTS.get(value, 0) if isinstance(value, str) else None

    @classmethod
    def entry_bytes(cls, key: Any, value: Any) -> bytes:
        return _field_bytes(1, cls.KEY, key) + _field_bytes(2, cls.VALUE, value)


_ENTRIES: dict[tuple[str, ValueKind], type[_MapEntry]] = {}


def _map_entry(key: str, value: ValueKind) -> type[_MapEntry]:
    """The entry class of a map<key, value> (a message absent from an entry reads as empty)."""
    entry = _ENTRIES.get((key, value))
    if entry is None:
        label = SINGULAR if isinstance(value, str) else OPTIONAL
        fields: tuple[Field, ...] = (
            (1, "key", key, SINGULAR, None),
            (2, "value", value, label, None),
        )
        namespace = {"KEY": key, "VALUE": value, "FIELDS": fields, "__slots__": ()}
        entry = _ENTRIES[key, value] = type("MapEntry", (_MapEntry,), namespace)
    return entry
