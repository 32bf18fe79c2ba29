"""tools/protoc_gen_light.py refuses what the light codec does not support, naming it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from .conftest import ROOT

PLUGIN = ROOT / "tools" / "protoc_gen_light.py"


def generate(tmp_path: Path, files: dict[str, str]) -> subprocess.CompletedProcess[str]:
    for name, text in files.items():
        (tmp_path / name).write_text(text)
    out = tmp_path / "out"
    out.mkdir()
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "grpc_tools.protoc",
            f"-I{tmp_path}",
            f"--plugin=protoc-gen-light={PLUGIN}",
            f"--light_out={out}",
            *files,
        ],
        capture_output=True,
        text=True,
        env={"PATH": f"{Path(sys.executable).parent}:/usr/bin:/bin"},
        timeout=60,
    )


P3 = 'syntax = "proto3";\npackage p;\n'
IMPORTED_MAP = (
    'import "google/protobuf/timestamp.proto";\n'
    "message M { map<string, google.protobuf.Timestamp> m = 1; }"
)
IMPORTED = (
    'import "google/protobuf/timestamp.proto";\nmessage M { google.protobuf.Timestamp t = 1; }'
)


@pytest.mark.parametrize(
    ("files", "error"),
    [
        ({"a.proto": 'syntax = "proto2";\nmessage M { optional int32 x = 1; }'}, "only proto3"),
        ({"a.proto": P3 + IMPORTED_MAP}, "p.M.m: google.protobuf.Timestamp is not a message"),
        ({"a.proto": P3 + "message M { M again = 1; }"}, "p.M: recursive"),
        ({"a.proto": P3 + "message M { N n = 1; }\nmessage N { M m = 1; }"}, "recursive"),
        ({"a.proto": P3 + "message M { string from = 1; }"}, "p.M.from: the field name"),
        (
            {
                "a.proto": P3 + "message Same {}",
                "b.proto": 'syntax = "proto3";\npackage q;\nmessage Same {}',
            },
            "q.Same and p.Same would both be the class Same",
        ),
        (
            {"a.proto": P3 + IMPORTED},
            "google.protobuf.Timestamp is not a message of the generated files",
        ),
    ],
    ids=[
        "proto2",
        "imported-map-value",
        "recursive",
        "mutually-recursive",
        "keyword",
        "collision",
        "imported",
    ],
)
def test_unsupported_protos_are_refused(tmp_path: Path, files: dict[str, str], error: str) -> None:
    done = generate(tmp_path, files)
    assert done.returncode != 0
    assert error in done.stderr
    assert not (tmp_path / "out" / "_wire.py").exists()


def test_a_message_may_use_one_of_another_generated_file(tmp_path: Path) -> None:
    done = generate(
        tmp_path,
        {
            "a.proto": P3 + "message Part { string name = 1; }",
            "b.proto": P3 + 'import "a.proto";\nmessage Whole { repeated Part parts = 1; }',
        },
    )
    assert done.returncode == 0, done.stderr
    source = (tmp_path / "out" / "_wire.py").read_text()
    assert source.index("class Part(") < source.index("class Whole(")
    assert '(1, "parts", Part, REPEATED, None)' in source
