"""The ports the runner hands to its children are reserved across the processes of the machine."""

from __future__ import annotations

import subprocess
import sys

from golem_apps.runner._process import (
    PORT_LOCK_FILES,
    PORT_LOCKS,
    _reserve,
    free_port,
    release_port,
)

ASK_ANOTHER_PROCESS = (
    "import sys; from golem_apps.runner._process import _reserve; print(_reserve(int(sys.argv[1])))"
)


def reserved_elsewhere(port: int) -> bool:
    """Whether another golem_apps process finds the port taken."""
    done = subprocess.run(
        [sys.executable, "-c", ASK_ANOTHER_PROCESS, str(port)],
        capture_output=True, text=True, check=True, timeout=60,
    )  # fmt: skip
    return done.stdout.strip() == "False"


def test_a_port_handed_out_here_is_skipped_by_other_processes_until_released() -> None:
    port = free_port()
    try:
        assert reserved_elsewhere(port)
    finally:
        release_port(port)
    assert not reserved_elsewhere(port)


def test_a_port_is_not_handed_out_twice_in_one_process() -> None:
    ports = [free_port() for _ in range(50)]
    try:
        assert len(set(ports)) == 50
    finally:
        for port in ports:
            release_port(port)


def test_ports_share_a_bounded_set_of_lock_files() -> None:
    port = free_port()
    twin = port + PORT_LOCK_FILES if port + PORT_LOCK_FILES < 65536 else port - PORT_LOCK_FILES
    try:
        assert not _reserve(twin)  # its lock file is held: skipped, as if taken
    finally:
        release_port(port)
    assert _reserve(twin)
    release_port(twin)
    assert (PORT_LOCKS / f"bucket-{port % PORT_LOCK_FILES}").is_file()
