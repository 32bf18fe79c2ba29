"""golem_apps.constants agree with the file options of protos/ (compiled with protoc here)."""

from __future__ import annotations

import importlib
import sys
from pathlib import Path

import pytest
from grpc_tools import protoc

from golem_apps import constants
from golem_apps.proto import golem_task_api as api

from .conftest import ROOT

OPTIONS = {
    "constants": (
        "TASK_INPUTS_DIR",
        "SUBTASK_INPUTS_DIR",
        "TASK_OUTPUTS_DIR",
        "SUBTASK_OUTPUTS_DIR",
        "WORK_DIR",
    ),
    "envs": ("DOCKER_CPU_ENV_ID", "DOCKER_GPU_ENV_ID"),
}


@pytest.fixture(scope="module")
def compiled(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("pb2")
    include = str(Path(protoc.__file__).parent / "_proto")
    for name in OPTIONS:
        status = protoc.main(
            [
                "protoc",
                f"-I{ROOT / 'protos'}",
                f"-I{include}",
                f"--python_out={out}",
                f"golem_task_api/{name}.proto",
            ]
        )
        assert status == 0
    return out


@pytest.mark.parametrize("proto", sorted(OPTIONS))
def test_constants_match_the_proto_file_options(compiled: Path, proto: str) -> None:
    sys.path.insert(0, str(compiled))
    try:
        module = importlib.import_module(f"golem_task_api.{proto}_pb2")
    finally:
        sys.path.remove(str(compiled))
    options = module.DESCRIPTOR.GetOptions()
    for name in OPTIONS[proto]:
        assert getattr(constants, name) == options.Extensions[getattr(module, name)], name


def test_every_constant_is_checked_or_a_tls_file_name() -> None:
    checked = {name for names in OPTIONS.values() for name in names}
    assert set(constants.__all__) - checked == {
        "TLS_CLIENT_CERT",
        "TLS_CLIENT_KEY",
        "TLS_SERVER_CERT",
        "TLS_SERVER_KEY",
    }


def test_verify_result_values_match_the_wire_enum() -> None:
    from golem_apps import VerifyResult

    for result in VerifyResult:
        assert api.VerifyReplyVerifyResult[result.name] == result.value
