#!/usr/bin/env python3
"""protoc plugin: golem_apps' light message classes (golem_apps/_wire.py) from protos/.

Run by ``make proto`` (and ``make proto-check``) through grpc_tools.protoc,
beside betterproto's plugin, on every file of the Makefile's PROTOS:

    python -m grpc_tools.protoc -I protos --plugin=protoc-gen-light=tools/protoc_gen_light.py \
        --light_out=golem_apps a.proto b.proto ...

It writes one module, ``_wire.py``: for each message of those files (nested
ones too) a subclass of ``golem_apps._codec.WireMessage`` that declares its
fields (number, name, kind, label, oneof) and a typed keyword constructor,
and for each enum a class of int constants. The encoding and decoding are
the runtime's (golem_apps/_codec.py), written once. Class names are
betterproto's (nested names joined: ``VerifyReply.VerifyResult`` ->
``VerifyReplyVerifyResult``), so a server can swap one for the other by name;
two protos defining the same name is an error. The output is already in
ruff's format, so it passes ``make lint`` as generated.

Dev-only: it needs Google's protobuf package (a dev dependency, which
grpcio-tools brings), never imported at run time.
"""

from __future__ import annotations

import dataclasses
import keyword
import sys
from collections.abc import Iterator
from dataclasses import dataclass

from google.protobuf.compiler import plugin_pb2
from google.protobuf.descriptor_pb2 import (
    DescriptorProto,
    EnumDescriptorProto,
    FieldDescriptorProto,
    FileDescriptorProto,
)

OUTPUT = "_wire.py"
#: Where the generated module imports the runtime from (``--light_opt=runtime=...``
#: changes it: the tests generate classes for a test proto outside the package).
RUNTIME = "._codec"
LINE = 100

F = FieldDescriptorProto
#: Proto scalar type -> (runtime kind constant, Python type, default literal).
SCALARS = {
    F.TYPE_DOUBLE: ("DOUBLE", "float", "0.0"),
    F.TYPE_FLOAT: ("FLOAT", "float", "0.0"),
    F.TYPE_INT64: ("INT64", "int", "0"),
    F.TYPE_UINT64: ("UINT64", "int", "0"),
    F.TYPE_INT32: ("INT32", "int", "0"),
    F.TYPE_FIXED64: ("FIXED64", "int", "0"),
    F.TYPE_FIXED32: ("FIXED32", "int", "0"),
    F.TYPE_BOOL: ("BOOL", "bool", "False"),
    F.TYPE_STRING: ("STRING", "str", '""'),
    F.TYPE_BYTES: ("BYTES", "bytes", 'b""'),
    F.TYPE_UINT32: ("UINT32", "int", "0"),
    F.TYPE_ENUM: ("ENUM", "int", "0"),
    F.TYPE_SFIXED32: ("SFIXED32", "int", "0"),
    F.TYPE_SFIXED64: ("SFIXED64", "int", "0"),
    F.TYPE_SINT32: ("SINT32", "int", "0"),
    F.TYPE_SINT64: ("SINT64", "int", "0"),
}


class GeneratorError(Exception):
    """Raised when a proto uses something the light codec does not support."""


@dataclass
class Message:
    """One message to generate: its class name, full proto name, descriptor and file."""

    name: str
    full_name: str
    proto: DescriptorProto
    file: str
    comment: str = ""
    field_comments: dict[int, str] = dataclasses.field(default_factory=dict)  # by number


@dataclass
class Enum:
    """One enum to generate."""

    name: str
    full_name: str
    proto: EnumDescriptorProto
    file: str


def walk(
    file: FileDescriptorProto,
) -> Iterator[tuple[Message | Enum, tuple[int, ...]]]:
    """Every message and enum of ``file``, nested ones too, with its source-info path."""
    prefix = f"{file.package}." if file.package else ""

    def messages(
        protos: list[DescriptorProto], outer: str, full: str, path: tuple[int, ...]
    ) -> Iterator[tuple[Message | Enum, tuple[int, ...]]]:
        for index, proto in enumerate(protos):
            here = (*path, index)
            name, full_name = outer + proto.name, full + proto.name
            yield Message(name, full_name, proto, file.name), here
            yield from messages(list(proto.nested_type), name, f"{full_name}.", (*here, 3))
            yield from enums(list(proto.enum_type), name, f"{full_name}.", (*here, 4))

    def enums(
        protos: list[EnumDescriptorProto], outer: str, full: str, path: tuple[int, ...]
    ) -> Iterator[tuple[Message | Enum, tuple[int, ...]]]:
        for index, proto in enumerate(protos):
            yield Enum(outer + proto.name, full + proto.name, proto, file.name), (*path, index)

    yield from messages(list(file.message_type), "", prefix, (4,))
    yield from enums(list(file.enum_type), "", prefix, (5,))


def comments(file: FileDescriptorProto) -> dict[tuple[int, ...], str]:
    """Leading comments by source-info path."""
    return {
        tuple(location.path): location.leading_comments.strip()
        for location in file.source_code_info.location
        if location.leading_comments.strip()
    }


@dataclass
class Spec:
    """How one field is generated."""

    kind: str  # its FIELDS kind: a runtime constant, a class name, or "(KEY, VALUE)"
    label: str  # SINGULAR, OPTIONAL, REPEATED or MAP
    group: str | None  # its oneof
    parameter: str  # the constructor's parameter
    annotation: str  # the attribute's type
    assignment: str  # the constructor's line setting it
    constants: tuple[str, ...]  # the runtime names it uses


def value_kind(
    where: str, field: FieldDescriptorProto, classes: dict[str, str]
) -> tuple[str, str, str]:
    """(kind, Python type, default literal) of a field's values."""
    if field.type == F.TYPE_GROUP:
        raise GeneratorError(f"{where}: groups are not supported")
    if field.type != F.TYPE_MESSAGE:
        return SCALARS[field.type]
    full_name = field.type_name.lstrip(".")
    if full_name not in classes:
        raise GeneratorError(
            f"{where}: {full_name} is not a message of the generated files (a message of a "
            "file outside PROTOS, such as a well-known type, is not supported)"
        )
    return classes[full_name], classes[full_name], "None"


def field_spec(
    message: Message,
    field: FieldDescriptorProto,
    classes: dict[str, str],
    entries: dict[str, DescriptorProto],
) -> Spec:
    where = f"{message.full_name}.{field.name}"
    name = field.name
    if keyword.iskeyword(name) or not name.isidentifier():
        raise GeneratorError(f"{where}: the field name is not a Python identifier")
    entry = entries.get(field.type_name.lstrip(".")) if field.type == F.TYPE_MESSAGE else None
    if entry is not None:  # a map<key, value>
        key_field, value_field = sorted(entry.field, key=lambda f: f.number)
        key, key_python, _ = value_kind(where, key_field, classes)
        value, python, _ = value_kind(where, value_field, classes)
        constants = tuple(c for c in (key, value) if c.isupper())
        return Spec(
            f"({key}, {value})", "MAP", None,
            f"{name}: Mapping[{key_python}, {python}] | None = None",
            f"dict[{key_python}, {python}]",
            f"self.{name} = {{}} if {name} is None else dict({name})",
            ("MAP", "Mapping", *constants),
        )  # fmt: skip
    kind, python, default = value_kind(where, field, classes)
    constants = (kind,) if kind.isupper() else ()
    if field.label == F.LABEL_REPEATED:
        return Spec(
            kind, "REPEATED", None, f"{name}: Iterable[{python}] = ()", f"list[{python}]",
            f"self.{name} = list({name})", ("REPEATED", "Iterable", *constants),
        )  # fmt: skip
    group = None
    if field.HasField("oneof_index"):
        group = message.proto.oneof_decl[field.oneof_index].name
    if field.type == F.TYPE_MESSAGE or group is not None:
        return Spec(
            kind, "OPTIONAL", group, f"{name}: {python} | None = None", f"{python} | None",
            f"self.{name} = {name}", ("OPTIONAL", *constants),
        )  # fmt: skip
    return Spec(
        kind, "SINGULAR", None, f"{name}: {python} = {default}", python,
        f"self.{name} = {name}", ("SINGULAR", *constants),
    )  # fmt: skip


def ordered(messages: list[Message], entries: dict[str, DescriptorProto]) -> list[Message]:
    """The messages, each after the ones its fields refer to (its FIELDS name their classes)."""
    by_name = {message.full_name: message for message in messages}
    done: dict[str, bool] = {}  # full name -> finished (False: being visited)
    out: list[Message] = []

    def visit(message: Message) -> None:
        state = done.get(message.full_name)
        if state is False:
            raise GeneratorError(f"{message.full_name}: recursive messages are not supported")
        if state:
            return
        done[message.full_name] = False
        for field in message.proto.field:
            entry = entries.get(field.type_name.lstrip("."))
            if entry is not None:  # a map: its value's message
                field = max(entry.field, key=lambda f: f.number)
            if field.type == F.TYPE_MESSAGE and field.type_name.lstrip(".") in by_name:
                visit(by_name[field.type_name.lstrip(".")])
        done[message.full_name] = True
        out.append(message)

    for message in messages:
        visit(message)
    return out


def docstring(text: str, indent: str) -> list[str]:
    """``text`` as a docstring: its first line the summary, the rest as written."""
    text = text.replace("\\", "\\\\").replace('"""', '\\"\\"\\"')
    first, *rest = [line.rstrip() for line in text.splitlines()]
    if not rest:
        return [f'{indent}"""{first}"""']
    return [f'{indent}"""{first}', *[f"{indent}{line}" if line else "" for line in rest],
            f'{indent}"""']  # fmt: skip


def sequence(head: str, items: list[str], indent: str, close: str = ")") -> list[str]:
    """``head`` + items, in ruff's format: one line for one short item, else one item a line."""
    if len(items) == 1 and len(indent) + len(head) + len(items[0]) + len(close) + 1 <= LINE:
        return [f"{indent}{head}{items[0]},{close}"]
    return [f"{indent}{head}", *[f"{indent}    {item}," for item in items], f"{indent}{close}"]


def generate(request: plugin_pb2.CodeGeneratorRequest, runtime: str = RUNTIME) -> str:
    """The module's source; ``runtime`` is the module the classes import their base from."""
    files = {file.name: file for file in request.proto_file}
    messages: list[Message] = []
    enums: list[Enum] = []
    entries: dict[str, DescriptorProto] = {}  # map entry messages by full name
    # class name -> the full name that took it (or the runtime's names)
    owner = dict.fromkeys(("DecodeError", "WireMessage", "Iterable", "Mapping"), "golem_apps")
    for file_name in request.file_to_generate:
        file = files[file_name]
        if file.syntax != "proto3":
            raise GeneratorError(f"{file_name}: only proto3 files are supported")
        notes = comments(file)
        for item, path in walk(file):
            if isinstance(item, Message) and item.proto.options.map_entry:
                entries[item.full_name] = item.proto  # not a class: a map's (key, value)
                continue
            if item.name in owner:
                raise GeneratorError(
                    f"{item.full_name} and {owner[item.name]} would both be the class {item.name}"
                )
            owner[item.name] = item.full_name
            if isinstance(item, Message):
                item.comment = notes.get(path, "")
                oneofs_noted: set[int] = set()
                for index, field in enumerate(item.proto.field):
                    note = notes.get((*path, 2, index), "")
                    if field.HasField("oneof_index") and field.oneof_index not in oneofs_noted:
                        oneofs_noted.add(field.oneof_index)  # the oneof's comment, on its first
                        oneof_note = notes.get((*path, 8, field.oneof_index), "")
                        note = "\n".join(filter(None, (oneof_note, note)))
                    if note:
                        item.field_comments[field.number] = note
                messages.append(item)
            else:
                enums.append(item)
    classes = {message.full_name: message.name for message in messages}

    body: list[str] = []
    used: set[str] = set()
    for enum in enums:
        body += ["", "", f"class {enum.name}:"]
        body += docstring(f"{enum.full_name}: its values, as ints.", "    ")
        body += ["", f'    PROTO_NAME = "{enum.full_name}"']
        body += [f"    {value.name} = {value.number}" for value in enum.proto.value]
    for message in ordered(messages, entries):
        fields = sorted(message.proto.field, key=lambda field: field.number)
        specs = [field_spec(message, field, classes, entries) for field in fields]
        body += ["", "", f"class {message.name}(WireMessage):"]
        text = f"{message.full_name} ({message.file})."
        if message.comment:
            text += "\n\n" + message.comment
        body += docstring(text, "    ")
        body += ["", f'    PROTO_NAME = "{message.full_name}"']
        if fields:
            rows = []
            for field, spec in zip(fields, specs, strict=True):
                used.update(spec.constants)
                oneof = "None" if spec.group is None else f'"{spec.group}"'
                rows.append(f'({field.number}, "{field.name}", {spec.kind}, {spec.label}, {oneof})')
            body += sequence("FIELDS = (", rows, "    ")
            body += sequence("__slots__ = (", sorted(f'"{field.name}"' for field in fields), "    ")
            for field, spec in zip(fields, specs, strict=True):
                note = message.field_comments.get(field.number, "")
                body += [f"    #: {line}".rstrip() for line in note.splitlines()]
                body.append(f"    {field.name}: {spec.annotation}")
            body += ["", "    def __init__(", "        self,", "        *,"]
            body += [f"        {spec.parameter}," for spec in specs]
            body.append("    ) -> None:")
            body += [f"        {spec.assignment}" for spec in specs]
        else:
            body.append("    __slots__ = ()")

    names = sorted(["DecodeError", "WireMessage", *(e.name for e in enums), *classes.values()])
    head = [
        "# Generated by tools/protoc_gen_light.py (make proto) from the Makefile's PROTOS:",
        "# do not edit; make proto-check fails when this file differs from a fresh generation.",
        *docstring(
            "The light messages of protos/: generated classes over golem_apps._codec.\n\n"
            "See docs/messages.md for where they meet betterproto's classes. Generated from:\n\n"
            + "\n".join(f"- {name}" for name in request.file_to_generate),
            "",
        ),
        "",
        "from __future__ import annotations",
        "",
    ]
    abc = [name for name in ("Iterable", "Mapping") if name in used]
    if abc:
        head += [f"from collections.abc import {', '.join(abc)}", ""]
    used -= {"Iterable", "Mapping"}
    constants = sorted(name for name in used if name.isupper())
    head += sequence(f"from {runtime} import (", [*constants, "DecodeError", "WireMessage"], "")
    head += ["", *sequence("__all__ = [", [f'"{name}"' for name in names], "", "]")]
    if any(len(line) > LINE for line in head + body):  # long names or comments
        head.insert(2, "# ruff: noqa: E501")
    return "\n".join(head + body) + "\n"


def main() -> None:
    request = plugin_pb2.CodeGeneratorRequest.FromString(sys.stdin.buffer.read())
    response = plugin_pb2.CodeGeneratorResponse(
        supported_features=plugin_pb2.CodeGeneratorResponse.FEATURE_PROTO3_OPTIONAL
    )
    try:
        options = dict(item.partition("=")[::2] for item in request.parameter.split(",") if item)
        runtime = options.pop("runtime", RUNTIME)
        if options:
            raise GeneratorError(f"unknown option {next(iter(options))!r} (known: runtime)")
        response.file.add(name=OUTPUT, content=generate(request, runtime))
    except GeneratorError as exc:
        response.error = f"protoc-gen-light: {exc}"
    sys.stdout.buffer.write(response.SerializeToString())


if __name__ == "__main__":
    main()
