"""The hand-written task-api messages against betterproto's generated ones, byte for byte."""

from __future__ import annotations

import math
import struct
from typing import Any

import betterproto
import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from golem_apps import _wire as wire
from golem_apps.proto import golem_task_api as api
from golem_apps.proto.grpc.health import v1 as health

text = st.text()
float32 = st.floats(width=32)
texts = st.lists(text, max_size=4)
int32 = st.integers(-(2**31), 2**31 - 1)


def nested(light: type[wire.WireMessage], generated: type[Any], values: Any) -> Any:
    """A nested message given explicitly (betterproto then sends it even when empty), or none."""
    return st.one_of(st.none(), values.map(lambda fields: (light(**fields), generated(**fields))))


def split_nested(fields: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """The light and the betterproto constructor arguments of drawn values."""
    mine: dict[str, Any] = {}
    theirs: dict[str, Any] = {}
    for name, value in fields.items():
        if isinstance(value, tuple):
            mine[name], theirs[name] = value
        elif value is not None:
            mine[name] = theirs[name] = value
    return mine, theirs


infrastructure = st.fixed_dictionaries({"min_memory_mib": float32})
subtask = st.fixed_dictionaries({"subtask_params_json": text, "resources": texts})

# (light class, betterproto class, strategy of field values)
PAIRS: list[tuple[type[wire.WireMessage], type[Any], st.SearchStrategy[dict[str, Any]]]] = [
    (
        wire.ComputeRequest,
        api.ComputeRequest,
        st.fixed_dictionaries({"task_id": text, "subtask_id": text, "subtask_params_json": text}),
    ),
    (wire.ComputeReply, api.ComputeReply, st.fixed_dictionaries({"output_filepath": text})),
    (wire.RunBenchmarkRequest, api.RunBenchmarkRequest, st.just({})),
    (wire.RunBenchmarkReply, api.RunBenchmarkReply, st.fixed_dictionaries({"score": float32})),
    (wire.ShutdownRequest, api.ShutdownRequest, st.just({})),
    (wire.ShutdownReply, api.ShutdownReply, st.just({})),
    (wire.HealthCheckRequest, health.HealthCheckRequest, st.fixed_dictionaries({"service": text})),
    (
        wire.HealthCheckResponse,
        health.HealthCheckResponse,
        st.fixed_dictionaries({"status": st.sampled_from([0, 1, 2, 3])}),
    ),
    (wire.Infrastructure, api.Infrastructure, infrastructure),
    (
        wire.CreateTaskRequest,
        api.CreateTaskRequest,
        st.fixed_dictionaries(
            {"task_id": text, "max_subtasks_count": int32, "task_params_json": text}
        ),
    ),
    (
        wire.CreateTaskReply,
        api.CreateTaskReply,
        st.fixed_dictionaries(
            {
                "env_id": text,
                "prerequisites_json": text,
                "inf_requirements": nested(wire.Infrastructure, api.Infrastructure, infrastructure),
            }
        ),
    ),
    (
        wire.NextSubtaskRequest,
        api.NextSubtaskRequest,
        st.fixed_dictionaries({"task_id": text, "subtask_id": text, "opaque_node_id": text}),
    ),
    (wire.SubtaskReply, api.SubtaskReply, subtask),
    (
        wire.NextSubtaskReply,
        api.NextSubtaskReply,
        st.fixed_dictionaries({"subtask": nested(wire.SubtaskReply, api.SubtaskReply, subtask)}),
    ),
    (
        wire.VerifyRequest,
        api.VerifyRequest,
        st.fixed_dictionaries({"task_id": text, "subtask_id": text}),
    ),
    (
        wire.VerifyReply,
        api.VerifyReply,
        st.fixed_dictionaries({"result": st.sampled_from([0, 1, 2, 3]), "reason": text}),
    ),
    (
        wire.DiscardSubtasksRequest,
        api.DiscardSubtasksRequest,
        st.fixed_dictionaries({"task_id": text, "subtask_ids": texts}),
    ),
    (
        wire.DiscardSubtasksReply,
        api.DiscardSubtasksReply,
        st.fixed_dictionaries({"discarded_subtask_ids": texts}),
    ),
    (
        wire.HasPendingSubtasksRequest,
        api.HasPendingSubtasksRequest,
        st.fixed_dictionaries({"task_id": text}),
    ),
    (
        wire.HasPendingSubtasksReply,
        api.HasPendingSubtasksReply,
        st.fixed_dictionaries({"has_pending_subtasks": st.booleans()}),
    ),
    (wire.AbortTaskRequest, api.AbortTaskRequest, st.fixed_dictionaries({"task_id": text})),
    (wire.AbortTaskReply, api.AbortTaskReply, st.just({})),
    (
        wire.AbortSubtaskRequest,
        api.AbortSubtaskRequest,
        st.fixed_dictionaries({"task_id": text, "subtask_id": text}),
    ),
    (wire.AbortSubtaskReply, api.AbortSubtaskReply, st.just({})),
]
IDS = [light.__name__ for light, _, _ in PAIRS]


def same_value(a: object, b: object) -> bool:
    """Equal values; floats compared bit for bit (NaN, -0.0)."""
    if isinstance(a, float) and isinstance(b, float):
        return struct.pack("<f", a) == struct.pack("<f", b) or (math.isnan(a) and math.isnan(b))
    return a == b


def assert_same_fields(light: wire.WireMessage, generated: Any) -> None:
    for _, name, kind in light.FIELDS:
        # betterproto raises AttributeError for an unset oneof member
        mine, theirs = getattr(light, name), getattr(generated, name, None)
        if isinstance(kind, type):  # a nested message: None when betterproto has none on the wire
            if mine is None:
                assert theirs is None or not betterproto.serialized_on_wire(theirs), name
            else:
                assert_same_fields(mine, theirs)
        elif isinstance(mine, list):
            assert theirs is not None and mine == list(theirs), name
        else:
            assert same_value(mine, theirs if not isinstance(theirs, int) else int(theirs)), name


@pytest.mark.parametrize(("light", "generated", "values"), PAIRS, ids=IDS)
@given(data=st.data())
def test_encoding_is_betterprotos(
    light: type[wire.WireMessage], generated: type[Any], values: Any, data: st.DataObject
) -> None:
    mine, theirs = split_nested(data.draw(values))
    encoded = light(**mine).SerializeToString()
    assert encoded == bytes(generated(**theirs))
    # And both decode it to the same values.
    assert_same_fields(light.FromString(encoded), generated.FromString(encoded))


# Wire fields of any number and wire type: known fields, unknown ones, repeats, any order.
varint_field = st.tuples(st.just(0), st.integers(0, (1 << 64) - 1))
fixed64_field = st.tuples(st.just(1), st.binary(min_size=8, max_size=8))
len_field = st.tuples(st.just(2), st.one_of(st.binary(max_size=20), text.map(str.encode)))
fixed32_field = st.tuples(st.just(5), st.binary(min_size=4, max_size=4))
raw_field = st.tuples(
    st.integers(1, 6), st.one_of(varint_field, fixed64_field, len_field, fixed32_field)
)


def encode_raw(fields: list[tuple[int, tuple[int, Any]]]) -> bytes:
    out = b""
    for number, (wire_type, value) in fields:
        out += wire._varint(number << 3 | wire_type)
        if wire_type == 0:
            out += wire._varint(value)
        elif wire_type == 2:
            out += wire._varint(len(value)) + value
        else:
            out += value
    return out


@pytest.mark.parametrize(("light", "generated", "values"), PAIRS, ids=IDS)
@given(fields=st.lists(raw_field, max_size=8), junk=st.binary(max_size=12))
@example(fields=[(1, (2, b"\xff"))], junk=b"")  # invalid UTF-8 in a string field
@example(fields=[], junk=b"\x0a\x05ab")  # truncated length-delimited field
def test_decoding_agrees_with_betterproto(
    light: type[wire.WireMessage],
    generated: type[Any],
    values: Any,
    fields: list[tuple[int, tuple[int, Any]]],
    junk: bytes,
) -> None:
    """Whatever the light decoder accepts, betterproto decodes to the same values."""
    for data in (encode_raw(fields), encode_raw(fields) + junk, junk):
        try:
            mine = light.FromString(data)
        except wire.DecodeError:
            continue  # stricter than betterproto is allowed; accepting garbage is not
        assert_same_fields(mine, generated.FromString(data))


def test_decoding_errors() -> None:
    with pytest.raises(wire.DecodeError, match="truncated"):
        wire.ComputeRequest.FromString(b"\x0a\x05ab")
    with pytest.raises(wire.DecodeError, match="wire type"):
        wire.ComputeRequest.FromString(b"\x08\x01")  # task_id sent as a varint
    with pytest.raises(wire.DecodeError, match="UTF-8"):
        wire.ComputeRequest.FromString(b"\x0a\x01\xff")
    with pytest.raises(wire.DecodeError, match="varint"):
        wire.ComputeRequest.FromString(b"\x80" * 11)


def test_unknown_and_repeated_fields() -> None:
    data = b"\x0a\x01a" + b"\x28\x07" + b"\x0a\x01b"  # task_id "a", unknown field 5, task_id "b"
    assert wire.ComputeRequest.FromString(data) == wire.ComputeRequest(task_id="b")


def test_constructor_rejects_unknown_fields() -> None:
    with pytest.raises(TypeError, match="no field 'nope'"):
        wire.ComputeReply(nope="x")


def test_serving_is_the_generated_enum_value() -> None:
    assert wire.SERVING == health.HealthCheckResponseServingStatus.SERVING


@pytest.mark.parametrize(("light", "generated", "values"), PAIRS, ids=IDS)
def test_fields_are_the_generated_ones(
    light: type[wire.WireMessage], generated: type[Any], values: Any
) -> None:
    """Same field numbers and names as the protos' generated class: none missing, none extra."""
    meta = generated()._betterproto.meta_by_field_name
    assert {(number, name) for number, name, _ in light.FIELDS} == {
        (field.number, name) for name, field in meta.items()
    }


def test_repeated_and_signed_fields() -> None:
    data = b"\x12\x01a\x0a\x01t\x12\x00"  # subtask_ids "a", task_id "t", subtask_ids ""
    assert wire.DiscardSubtasksRequest.FromString(data) == wire.DiscardSubtasksRequest(
        task_id="t", subtask_ids=["a", ""]
    )
    minus_one = wire.CreateTaskRequest(max_subtasks_count=-1).SerializeToString()
    assert minus_one == b"\x10" + b"\xff" * 9 + b"\x01"  # ten bytes, as protobuf sends int32 -1
    assert wire.CreateTaskRequest.FromString(minus_one).max_subtasks_count == -1


def test_nested_message_presence() -> None:
    assert wire.NextSubtaskReply().subtask is None
    assert wire.NextSubtaskReply.FromString(b"").subtask is None
    empty = wire.NextSubtaskReply(subtask=wire.SubtaskReply())
    assert empty.SerializeToString() == b"\x0a\x00"  # a subtask with empty params is still one
    assert wire.NextSubtaskReply.FromString(b"\x0a\x00") == empty
    with pytest.raises(wire.DecodeError, match="truncated"):
        wire.NextSubtaskReply.FromString(b"\x0a\x02\x0a\x05")
