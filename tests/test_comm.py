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
