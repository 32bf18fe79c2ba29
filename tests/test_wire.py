"""The generated light messages against the protos, betterproto and Google's protobuf runtime.

Every class of :mod:`golem_apps._wire` (and of tests/protos/kinds.proto, which
uses every field kind and label the generator supports, generated here at
test time) is checked three ways: its fields are the protos' (from the
descriptors Google's runtime reads); values drawn by hypothesis encode to
betterproto's bytes and to Google's, and each decodes the others' bytes to
the same values; whatever bytes the light decoder accepts, Google's decodes
to the same values.
"""

from __future__ import annotations

import atexit
import importlib
import math
import shutil
import subprocess
import sys
from collections.abc import Iterator
from functools import cache, partial
from pathlib import Path
from types import ModuleType
from typing import Any

import betterproto
import pytest
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory
from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.message import DecodeError as GoogleDecodeError
from grpc_tools import protoc
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from golem_apps import _codec as codec
from golem_apps import _wire as wire

from .conftest import ROOT

PROTOS = ROOT / "protos"
TEST_PROTOS = ROOT / "tests" / "protos"
PLUGIN = ROOT / "tools" / "protoc_gen_light.py"
PROTOC = [sys.executable, "-m", "grpc_tools.protoc"]


def proto_files(root: Path) -> list[str]:
    return sorted(str(path.relative_to(root)) for path in root.rglob("*.proto"))


@cache
def generated_for_tests() -> Path:
    """tests/protos compiled by our plugin and betterproto's, into a fresh directory."""
    import tempfile

    out = Path(tempfile.mkdtemp(prefix="light-"))
    atexit.register(shutil.rmtree, out, ignore_errors=True)
    bin_dir = str(Path(sys.executable).parent)
    env = {"PATH": f"{bin_dir}:/usr/bin:/bin"}
    subprocess.run(
        [
            *PROTOC,
            f"-I{TEST_PROTOS}",
            f"--plugin=protoc-gen-light={PLUGIN}",
            f"--light_out={out}",
            "--light_opt=runtime=golem_apps._codec",
            f"--python_betterproto_out={out}",
            *proto_files(TEST_PROTOS),
        ],
        check=True,
        env=env,
        capture_output=True,
    )
    (out / "_wire.py").rename(out / "kinds_light.py")
    return out


def generated_module(name: str) -> ModuleType:
    out = str(generated_for_tests())
    sys.path.insert(0, out)
    try:
        return importlib.import_module(name)
    finally:
        sys.path.remove(out)


@cache
def pool() -> descriptor_pool.DescriptorPool:
    """Google's descriptors of protos/ and tests/protos, as protoc compiles them."""
    include = str(Path(protoc.__file__).parent / "_proto")
    files: list[descriptor_pb2.FileDescriptorProto] = []
    for root in (PROTOS, TEST_PROTOS):
        out = generated_for_tests() / f"{root.name}.pb"
        status = protoc.main(
            [
                "protoc",
                f"-I{root}",
                f"-I{include}",
                "--include_imports",
                f"--descriptor_set_out={out}",
                *proto_files(root),
            ]
        )
        assert status == 0
        files += descriptor_pb2.FileDescriptorSet.FromString(out.read_bytes()).file
    result = descriptor_pool.DescriptorPool()
    added: set[str] = set()
    for file in files:
        if file.name not in added:
            result.Add(file)
            added.add(file.name)
    return result


def light_classes(module: ModuleType) -> list[type[codec.WireMessage]]:
    found = [getattr(module, name) for name in module.__all__]
    return [c for c in found if isinstance(c, type) and issubclass(c, codec.WireMessage)
            and c.__module__ == module.__name__]  # fmt: skip


def descriptor(light: type[codec.WireMessage]) -> Descriptor:
    return pool().FindMessageTypeByName(light.PROTO_NAME)


def google_class(light: type[codec.WireMessage]) -> Any:
    return _google_class(light.PROTO_NAME)


@cache
def _google_class(full_name: str) -> Any:
    return message_factory.GetMessageClass(pool().FindMessageTypeByName(full_name))


def betterproto_class(light: type[codec.WireMessage]) -> Any:
    """betterproto's class of the same message: same name, in the module of its package."""
    return _betterproto_class(light.PROTO_NAME, light.__name__)


@cache
def _betterproto_class(full_name: str, name: str) -> Any:
    package = pool().FindMessageTypeByName(full_name).file.package
    if package == "kinds":
        module = generated_module("kinds")
    else:
        module = importlib.import_module(f"golem_apps.proto.{package}")
    return getattr(module, name)


MESSAGES = light_classes(wire) + light_classes(generated_module("kinds_light"))
IDS = [light.PROTO_NAME for light in MESSAGES]
# No deadline: the machine is shared, and a slow example is not a wrong one.
NO_DEADLINE = settings(deadline=None, suppress_health_check=[HealthCheck.too_slow])

# Values: a tree of plain values per message (a nested message: a dict, unset: None).
INT32 = st.integers(-(2**31), 2**31 - 1)
INT64 = st.integers(-(2**63), 2**63 - 1)
SCALARS: dict[str, st.SearchStrategy[Any]] = {
    codec.DOUBLE: st.floats(),
    codec.FLOAT: st.floats(width=32),
    codec.INT64: INT64,
    codec.UINT64: st.integers(0, 2**64 - 1),
    codec.INT32: INT32,
    codec.FIXED64: st.integers(0, 2**64 - 1),
    codec.FIXED32: st.integers(0, 2**32 - 1),
    codec.BOOL: st.booleans(),
    codec.STRING: st.text(),
    codec.BYTES: st.binary(),
    codec.UINT32: st.integers(0, 2**32 - 1),
    codec.ENUM: INT32,  # proto3 enums are open: any int32 is a value
    codec.SFIXED32: INT32,
    codec.SFIXED64: INT64,
    codec.SINT32: INT32,
    codec.SINT64: INT64,
}


def value_kind(kind: codec.Kind) -> codec.ValueKind:
    """The kind of a field's values (a map's: its values')."""
    return kind[1] if isinstance(kind, tuple) else kind


def each(label: str, value: Any, convert: Any) -> Any:
    """``convert`` applied to a field's value: to each item of a list, each value of a map."""
    if value is None:
        return None
    if label is codec.REPEATED:
        return [convert(item) for item in value]
    if label is codec.MAP:
        return {key: convert(item) for key, item in value.items()}
    return convert(value)


def values(light: type[codec.WireMessage]) -> st.SearchStrategy[dict[str, Any]]:
    """A tree of field values for ``light``: at most one member of each oneof set."""

    def kind_values(kind: codec.ValueKind) -> st.SearchStrategy[Any]:
        return SCALARS[kind] if isinstance(kind, str) else st.deferred(lambda: values(kind))

    singles: dict[str, st.SearchStrategy[Any]] = {}
    groups: dict[str, list[tuple[str, codec.ValueKind]]] = {}
    for _, name, kind, label, group in light.FIELDS:
        if isinstance(kind, tuple):
            singles[name] = st.dictionaries(SCALARS[kind[0]], kind_values(kind[1]), max_size=3)
        elif group is not None:
            groups.setdefault(group, []).append((name, kind))
        elif label is codec.REPEATED:
            singles[name] = st.lists(kind_values(kind), max_size=3)
        elif label is codec.OPTIONAL:
            singles[name] = st.none() | kind_values(kind)
        else:
            singles[name] = kind_values(kind)

    def named(name: str, value: Any) -> tuple[str, Any]:
        return name, value

    def one_of(
        members: list[tuple[str, codec.ValueKind]],
    ) -> st.SearchStrategy[tuple[str, Any] | None]:
        return st.none() | st.one_of(
            [kind_values(kind).map(partial(named, name)) for name, kind in members]
        )

    def merge(drawn: tuple[dict[str, Any], list[tuple[str, Any] | None]]) -> dict[str, Any]:
        tree, chosen = drawn
        tree = dict(tree)
        for _, name, _, _, group in light.FIELDS:
            if group is not None:
                tree[name] = None
        tree.update(pair for pair in chosen if pair is not None)
        return tree

    return st.tuples(
        st.fixed_dictionaries(singles), st.tuples(*map(one_of, groups.values())).map(list)
    ).map(merge)


def build(light: type[codec.WireMessage], tree: dict[str, Any], side: str) -> Any:
    """The message of ``tree`` as a "light", "google" or "betterproto" object."""
    args: dict[str, Any] = {}
    for _, name, kind, label, _ in light.FIELDS:
        value, of = tree[name], value_kind(kind)
        if value is None and side != "light":
            continue  # unset
        if isinstance(of, type):
            value = each(label, value, partial(build, of, side=side))
        args[name] = value
    if side == "light":
        return light(**args)
    return (google_class(light) if side == "google" else betterproto_class(light))(**args)


def tree_of(light: type[codec.WireMessage], message: Any, side: str) -> dict[str, Any]:
    """The values of a "light", "google" or "betterproto" message, as a tree."""
    tree: dict[str, Any] = {}
    for _, name, kind, label, group in light.FIELDS:
        tree[name] = None
        if side == "google" and label is codec.OPTIONAL and not message.HasField(name):
            continue
        if side == "betterproto" and label is codec.OPTIONAL:
            if group is not None and not group.startswith("_"):
                if betterproto.which_one_of(message, group)[0] != name:
                    continue
            elif isinstance(kind, type):
                value = getattr(message, name, None)
                if value is None or not betterproto.serialized_on_wire(value):
                    continue
        value, of = getattr(message, name), value_kind(kind)
        if label is codec.REPEATED:
            value = list(value)
        elif label is codec.MAP:
            value = dict(value)
        if isinstance(of, type):
            tree[name] = each(label, value, lambda item, of=of: tree_of(of, item, side))
        else:
            tree[name] = each(label, value, partial(normal, of, side=side))
    return tree


def normal(kind: str, value: Any, side: str) -> Any:
    """A comparable value: floats bit for bit (any NaN is one), enums as int32."""
    if isinstance(value, float):
        return "nan" if math.isnan(value) else (value, math.copysign(1.0, value))
    if kind is codec.ENUM and side == "betterproto":
        return codec._signed(int(value), 32)  # betterproto reads a negative one as uint64
    return value


def after_the_wire(light: type[codec.WireMessage], tree: dict[str, Any]) -> dict[str, Any]:
    """``tree`` as read back: a singular -0.0 is left out (betterproto's rule), so reads 0.0."""
    out = dict(tree)
    for _, name, kind, label, _ in light.FIELDS:
        value, of = tree[name], value_kind(kind)
        if isinstance(of, type):
            out[name] = each(label, value, partial(after_the_wire, of))
        elif label is codec.SINGULAR and isinstance(value, float) and value == 0.0:
            out[name] = 0.0
    return out


def comparable(light: type[codec.WireMessage], tree: dict[str, Any]) -> dict[str, Any]:
    return tree_of(light, build(light, tree, "light"), "light")


def maps(
    light: type[codec.WireMessage], tree: dict[str, Any]
) -> Iterator[tuple[Any, dict[Any, Any]]]:
    """Every map of ``tree``, nested ones too, with its (key kind, value kind)."""
    for _, name, kind, label, _ in light.FIELDS:
        value, of = tree[name], value_kind(kind)
        if label is codec.MAP:
            yield kind, value
        if isinstance(of, type) and value is not None:
            items = (
                value.values()
                if label is codec.MAP
                else value
                if label is codec.REPEATED
                else [value]
            )
            for item in items:
                yield from maps(of, item)


def empty(kind: codec.ValueKind, value: Any) -> bool:
    if isinstance(kind, type):
        return not build(kind, value, "light").SerializeToString()
    return isinstance(value, (str, bytes)) and not value


@pytest.mark.parametrize("light", MESSAGES, ids=IDS)
@NO_DEADLINE
@given(data=st.data())
def test_round_trips_with_betterproto_and_protobuf(
    light: type[codec.WireMessage], data: st.DataObject
) -> None:
    tree = data.draw(values(light))
    mine = build(light, tree, "light").SerializeToString()
    google = build(light, tree, "google")
    # Where betterproto and Google's runtime differ, the light codec is one of them:
    # - a singular -0.0: left out as betterproto does (Google sends it);
    # - a map entry's empty string, bytes or message: sent as Google does (betterproto leaves
    #   it out); and Google's order of a map's entries is its own.
    kept = comparable(light, after_the_wire(light, tree))
    found = list(maps(light, tree))
    if not any(empty(k[0], key) or empty(k[1], v) for k, m in found for key, v in m.items()):
        assert mine == bytes(build(light, tree, "betterproto"))  # byte for byte betterproto's
    if kept == comparable(light, tree) and all(len(m) <= 1 for _, m in found):
        assert mine == google.SerializeToString(deterministic=True)  # and Google's
    # Each decodes the light bytes to the values sent...
    assert tree_of(light, light.FromString(mine), "light") == kept
    assert tree_of(light, betterproto_class(light)().parse(mine), "betterproto") == kept
    assert tree_of(light, google_class(light).FromString(mine), "google") == kept
    # ...and the light decoder reads Google's bytes (the reference) as sent.
    google_bytes = google.SerializeToString()
    assert tree_of(light, light.FromString(google_bytes), "light") == comparable(light, tree)


# Wire fields of any number and wire type: known fields, unknown ones, repeats, any order.
varint_field = st.tuples(st.just(0), st.integers(0, (1 << 64) - 1))
fixed64_field = st.tuples(st.just(1), st.binary(min_size=8, max_size=8))
len_field = st.tuples(st.just(2), st.one_of(st.binary(max_size=20), st.text().map(str.encode)))
fixed32_field = st.tuples(st.just(5), st.binary(min_size=4, max_size=4))
raw_field = st.tuples(
    st.integers(1, 18), st.one_of(varint_field, fixed64_field, len_field, fixed32_field)
)


def encode_raw(raw: list[tuple[int, tuple[int, Any]]]) -> bytes:
    out = b""
    for number, (wire_type, value) in raw:
        out += codec._varint(number << 3 | wire_type)
        if wire_type == 0:
            out += codec._varint(value)
        elif wire_type == 2:
            out += codec._varint(len(value)) + value
        else:
            out += value
    return out


@pytest.mark.parametrize("light", MESSAGES, ids=IDS)
@NO_DEADLINE
@given(raw=st.lists(raw_field, max_size=8), junk=st.binary(max_size=12))
@example(raw=[(1, (2, b"\xff"))], junk=b"")  # invalid UTF-8 in a string field
@example(raw=[], junk=b"\x0a\x05ab")  # truncated length-delimited field
def test_decoding_agrees_with_protobuf(
    light: type[codec.WireMessage], raw: list[tuple[int, tuple[int, Any]]], junk: bytes
) -> None:
    """Whatever the light decoder accepts, Google's runtime decodes to the same values."""
    for data in (encode_raw(raw), encode_raw(raw) + junk, junk):
        try:
            mine = light.FromString(data)
        except codec.DecodeError:
            continue  # stricter than Google's is allowed; accepting garbage is not
        try:
            theirs = google_class(light).FromString(data)
        except GoogleDecodeError:
            pytest.fail(f"the light decoder accepted {data!r}, which protobuf refuses")
        assert tree_of(light, mine, "light") == tree_of(light, theirs, "google")


# The descriptors' field types, as the runtime's kinds.
KINDS = {
    FieldDescriptor.TYPE_DOUBLE: codec.DOUBLE,
    FieldDescriptor.TYPE_FLOAT: codec.FLOAT,
    FieldDescriptor.TYPE_INT64: codec.INT64,
    FieldDescriptor.TYPE_UINT64: codec.UINT64,
    FieldDescriptor.TYPE_INT32: codec.INT32,
    FieldDescriptor.TYPE_FIXED64: codec.FIXED64,
    FieldDescriptor.TYPE_FIXED32: codec.FIXED32,
    FieldDescriptor.TYPE_BOOL: codec.BOOL,
    FieldDescriptor.TYPE_STRING: codec.STRING,
    FieldDescriptor.TYPE_BYTES: codec.BYTES,
    FieldDescriptor.TYPE_UINT32: codec.UINT32,
    FieldDescriptor.TYPE_ENUM: codec.ENUM,
    FieldDescriptor.TYPE_SFIXED32: codec.SFIXED32,
    FieldDescriptor.TYPE_SFIXED64: codec.SFIXED64,
    FieldDescriptor.TYPE_SINT32: codec.SINT32,
    FieldDescriptor.TYPE_SINT64: codec.SINT64,
}


def all_messages(root: Path) -> dict[str, Descriptor]:
    """Every message of the .proto files under ``root``, nested ones too, by full name."""
    found: dict[str, Descriptor] = {}

    def add(message: Descriptor) -> None:
        found[message.full_name] = message
        for nested in message.nested_types:
            add(nested)

    for name in proto_files(root):
        for message in pool().FindFileByName(name).message_types_by_name.values():
            add(message)
    return found


def test_every_message_of_every_proto_is_generated() -> None:
    """A .proto under protos/ missing from the Makefile's PROTOS would fail here."""
    assert {light.PROTO_NAME for light in light_classes(wire)} == set(all_messages(PROTOS))


def value_kind_of(field: FieldDescriptor) -> codec.ValueKind:
    """The light kind of a descriptor's field: a runtime kind or a light class."""
    if field.message_type is None:
        return KINDS[field.type]
    return next(light for light in MESSAGES if field.message_type.full_name == light.PROTO_NAME)


@pytest.mark.parametrize("light", MESSAGES, ids=IDS)
def test_fields_are_the_descriptors(light: type[codec.WireMessage]) -> None:
    """Numbers, names, kinds, labels and oneofs as the protos' descriptors say, in number order."""
    expected: list[codec.Field] = []
    for field in sorted(descriptor(light).fields, key=lambda field: field.number):
        entry = field.message_type
        if entry is not None and entry.GetOptions().map_entry:
            key, value = entry.fields_by_name["key"], entry.fields_by_name["value"]
            kinds = (KINDS[key.type], value_kind_of(value))
            expected.append((field.number, field.name, kinds, codec.MAP, None))
            continue
        kind = value_kind_of(field)
        if field.is_repeated:
            label = codec.REPEATED
        elif field.has_presence:  # a message, a oneof member, a proto3 `optional`
            label = codec.OPTIONAL
        else:
            label = codec.SINGULAR
        oneof = None if field.containing_oneof is None else field.containing_oneof.name
        expected.append((field.number, field.name, kind, label, oneof))
    assert list(light.FIELDS) == expected
    # Declared in number order: betterproto writes fields in declaration order, protobuf (and
    # the light codec) in number order; so their bytes are the same only for such protos.
    declared = [field.number for field in descriptor(light).fields]
    assert declared == sorted(declared), f"declare {light.PROTO_NAME}'s fields in number order"
    # betterproto has the same class under the same name, with the same field names.
    meta = betterproto_class(light)()._betterproto.meta_by_field_name
    assert {(f.number, name) for name, f in meta.items()} == {(n, name) for n, name, *_ in expected}


def all_enums(root: Path) -> set[str]:
    """The full names of every enum of the .proto files under ``root``, nested ones too."""
    found: set[str] = set()

    def add(message: Descriptor) -> None:
        found.update(enum.full_name for enum in message.enum_types)
        for nested in message.nested_types:
            add(nested)

    for name in proto_files(root):
        file = pool().FindFileByName(name)
        found.update(enum.full_name for enum in file.enum_types_by_name.values())
        for message in file.message_types_by_name.values():
            add(message)
    return found


@pytest.mark.parametrize(("module", "root"), [(wire, PROTOS), ("kinds_light", TEST_PROTOS)])
def test_enums_are_the_descriptors(module: ModuleType | str, root: Path) -> None:
    if isinstance(module, str):
        module = generated_module(module)
    enums: list[Any] = [
        value
        for value in map(module.__getattribute__, module.__all__)
        if isinstance(value, type) and value.__module__ == module.__name__
        and not issubclass(value, codec.WireMessage)
    ]  # fmt: skip
    assert {enum.PROTO_NAME for enum in enums} == all_enums(root)
    for enum in enums:
        constants = {name: v for name, v in vars(enum).items() if name.isupper()}
        del constants["PROTO_NAME"]
        found = pool().FindEnumTypeByName(enum.PROTO_NAME)
        assert constants == {value.name: value.number for value in found.values}


def test_serving_is_the_generated_enum_value() -> None:
    from golem_apps.proto.grpc.health import v1 as health

    assert (
        wire.HealthCheckResponseServingStatus.SERVING
        == health.HealthCheckResponseServingStatus.SERVING
    )


def test_decoding_errors() -> None:
    with pytest.raises(wire.DecodeError, match="truncated"):
        wire.ComputeRequest.FromString(b"\x0a\x05ab")
    with pytest.raises(wire.DecodeError, match="wire type"):
        wire.ComputeRequest.FromString(b"\x08\x01")  # task_id sent as a varint
    with pytest.raises(wire.DecodeError, match="UTF-8"):
        wire.ComputeRequest.FromString(b"\x0a\x01\xff")
    with pytest.raises(wire.DecodeError, match="varint"):
        wire.ComputeRequest.FromString(b"\x80" * 11)
    with pytest.raises(wire.DecodeError, match="too large"):
        wire.ComputeRequest.FromString(b"\x80\x80\x80\x80\x10\x00")  # field number 2**29
    with pytest.raises(wire.DecodeError, match="field number 0"):
        wire.ComputeRequest.FromString(b"\x02\x00")
    with pytest.raises(wire.DecodeError, match="wire type 3"):
        wire.ComputeRequest.FromString(b"\x0b\x0c")  # a group: not proto3


def test_unknown_and_repeated_fields() -> None:
    data = b"\x0a\x01a" + b"\x28\x07" + b"\x0a\x01b"  # task_id "a", unknown field 5, task_id "b"
    assert wire.ComputeRequest.FromString(data) == wire.ComputeRequest(task_id="b")


def test_repeated_and_signed_fields() -> None:
    data = b"\x12\x01a\x0a\x01t\x12\x00"  # subtask_ids "a", task_id "t", subtask_ids ""
    assert wire.DiscardSubtasksRequest.FromString(data) == wire.DiscardSubtasksRequest(
        task_id="t", subtask_ids=["a", ""]
    )
    minus_one = wire.CreateTaskRequest(max_subtasks_count=-1).SerializeToString()
    assert minus_one == b"\x10" + b"\xff" * 9 + b"\x01"  # ten bytes, as protobuf sends int32 -1
    assert wire.CreateTaskRequest.FromString(minus_one).max_subtasks_count == -1


def test_nested_message_presence_and_merge() -> None:
    assert wire.NextSubtaskReply().subtask is None
    assert wire.NextSubtaskReply.FromString(b"").subtask is None
    empty = wire.NextSubtaskReply(subtask=wire.SubtaskReply())
    assert empty.SerializeToString() == b"\x0a\x00"  # a subtask with empty params is still one
    assert wire.NextSubtaskReply.FromString(b"\x0a\x00") == empty
    with pytest.raises(wire.DecodeError, match="truncated"):
        wire.NextSubtaskReply.FromString(b"\x0a\x02\x0a\x05")
    # A message field sent twice is merged, as protobuf does.
    twice = b"\x0a\x03\x0a\x01p" + b"\x0a\x03\x12\x01r"
    assert wire.NextSubtaskReply.FromString(twice) == wire.NextSubtaskReply(
        subtask=wire.SubtaskReply(subtask_params_json="p", resources=["r"])
    )


def test_packed_numbers_map_entries_and_oneof_switch() -> None:
    kinds = generated_module("kinds_light")
    packed = kinds.Repeated(many_int32=[1, -1, 300]).SerializeToString()
    assert packed == b"\x2a\x0d\x01" + b"\xff" * 9 + b"\x01\xac\x02"
    unpacked = b"\x28\x01\x28\x02"
    assert kinds.Repeated.FromString(unpacked + packed).many_int32 == [1, 2, 1, -1, 300]
    with pytest.raises(codec.DecodeError, match="packed"):
        kinds.Repeated.FromString(b"\x12\x03abc")  # packed floats: not a multiple of 4 bytes
    # A later oneof member replaces an earlier one; set to its default, it is still sent.
    # A map entry: key and value always sent; an entry with another field is refused.
    assert kinds.Maps(counts={"": 0}).SerializeToString() == b"\x0a\x04\x0a\x00\x10\x00"
    assert kinds.Maps.FromString(b"\x0a\x02\x10\x07").counts == {"": 7}
    with pytest.raises(codec.DecodeError, match="map entry"):
        kinds.Maps.FromString(b"\x0a\x04\x18\x00\x10\x07")
    switched = kinds.Outer.FromString(b"\x32\x01x\x38\x00")  # text "x", then number 0
    assert (switched.text, switched.number) == (None, 0)
    assert kinds.Outer(number=0).SerializeToString() == b"\x38\x00"


def test_the_constructor_is_typed_and_refuses_unknown_fields() -> None:
    with pytest.raises(TypeError, match="nope"):
        wire.ComputeReply(nope="x")  # type: ignore[call-arg]
    with pytest.raises(TypeError):
        wire.ComputeReply("positional")  # type: ignore[call-arg]
