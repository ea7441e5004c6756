import os
import subprocess
import sys

import numpy as np
import pytest

from fastdp import comm


def test_serial_comm_collectives_are_identities():
    c = comm.SerialComm()
    buf = np.arange(4.0)
    assert c.allreduce_sum_(buf) is buf and np.array_equal(buf, np.arange(4.0))
    assert c.bcast_(buf) is buf
    assert c.allgather_obj({"a": 1}) == [{"a": 1}]
    c.barrier()
    assert (c.rank, c.size, c.local_size) == (0, 1, 1)
    with pytest.raises(ValueError, match="root must be 0"):
        c.bcast_(buf, root=1)


def test_serial_iallreduce_is_complete_at_once():
    c = comm.SerialComm()
    buf = np.arange(4.0)
    request = c.iallreduce_sum_(buf)
    assert request.test() is True and request.wait() is None and request.test() is True
    assert np.array_equal(buf, np.arange(4.0))


@pytest.mark.parametrize("environ,expected", [
    ({}, False), ({"PMI_RANK": "0"}, True), ({"OMPI_COMM_WORLD_SIZE": "2"}, True),
    ({"PMIX_RANK": "1"}, True), ({"HOME": "/root"}, False),
])
def test_launched_by_mpi(environ, expected):
    assert comm.launched_by_mpi(environ) is expected


def test_world_is_serial_without_a_launcher():
    assert isinstance(comm.world(), comm.SerialComm)


def test_import_and_serial_use_never_initialize_mpi():
    code = ("import sys, numpy as np, fastdp; "
            "fastdp.fit_gd(np.ones((4, 1)), np.ones(4), max_iter=2); "
            "assert 'mpi4py.MPI' not in sys.modules; print('serial', type(fastdp.world()).__name__)")
    env = {k: v for k, v in os.environ.items() if k not in comm.LAUNCHER_VARIABLES}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "serial SerialComm"


def test_raise_if_any():
    comm.raise_if_any(comm.SerialComm(), None)
    with pytest.raises(ValueError, match="^X is bad$"):
        comm.raise_if_any(comm.SerialComm(), "X is bad")
    with pytest.raises(TypeError):
        comm.raise_if_any(comm.SerialComm(), "nope", TypeError)


def test_serial_row_collectives_are_identities():
    from fastdp.comm import SerialComm

    comm = SerialComm()
    X = np.arange(6.0).reshape(3, 2)
    assert comm.scatter_rows(X, [3]) is X and comm.gather_rows(X, [3], root=None) is X
    assert comm.bcast_obj({"a": 1}) == {"a": 1} and comm.scatter_obj(["only"]) == "only"
    with pytest.raises(ValueError, match=r"counts must be \[3\] for one rank, got \[2\]"):
        comm.scatter_rows(X, [2])


@pytest.mark.parametrize("environ,expected", [
    ({}, (60.0, 0.0)),
    ({"FASTDP_WATCHDOG_SECONDS": "", "FASTDP_WATCHDOG_ABORT_SECONDS": ""}, (60.0, 0.0)),
    ({"FASTDP_WATCHDOG_SECONDS": " 2.5 "}, (2.5, 0.0)),
    ({"FASTDP_WATCHDOG_SECONDS": "0"}, (0.0, 0.0)),
    ({"FASTDP_WATCHDOG_ABORT_SECONDS": "1e3"}, (60.0, 1000.0)),
    ({"FASTDP_WATCHDOG_SECONDS": "5", "FASTDP_WATCHDOG_ABORT_SECONDS": "600"}, (5.0, 600.0)),
])
def test_watchdog_limits_from_the_environment(environ, expected):
    assert comm.watchdog_from_env(environ) == expected


@pytest.mark.parametrize("name", ["FASTDP_WATCHDOG_SECONDS", "FASTDP_WATCHDOG_ABORT_SECONDS"])
@pytest.mark.parametrize("value", ["-1", "-0.5", "soon", "60s", "nan", "inf"])
def test_bad_watchdog_seconds_raise_naming_the_variable(name, value):
    off = "abort" if "ABORT" in name else "watchdog"
    with pytest.raises(ValueError, match=rf"^{name} must be a number of seconds >= 0 \(0 turns the "
                                         rf"{off} off\), got '{value}'$"):
        comm.watchdog_from_env({name: value})


def test_set_watchdog_checks_its_values_and_is_harmless_without_mpi(monkeypatch):
    monkeypatch.setattr(comm, "_WATCHDOG_SET", None)
    monkeypatch.delenv("FASTDP_WATCHDOG_ABORT_SECONDS", raising=False)
    for bad in (-1, "x", None, True, float("nan")):
        with pytest.raises(ValueError, match="watchdog seconds must be a number of seconds >= 0"):
            comm.set_watchdog(bad)
        with pytest.raises(ValueError, match="watchdog abort seconds must be a number of seconds"):
            comm.set_watchdog(1, bad if bad is not None else -2)
    assert comm._WATCHDOG_SET is None
    comm.set_watchdog(2)
    assert comm._WATCHDOG_SET == (2.0, 0.0) and isinstance(comm.world(), comm.SerialComm)
    comm.set_watchdog(3, 30)
    comm.set_watchdog(4)  # keeps the abort limit
    assert comm._WATCHDOG_SET == (4.0, 30.0)


def test_ranks_text_shortens_runs():
    assert comm._ranks_text([]) == ""
    assert comm._ranks_text([3]) == "3"
    assert comm._ranks_text([9, 1, 2, 5, 6, 7, 3, 11, 12]) == "1-3, 5-7, 9, 11, 12"
