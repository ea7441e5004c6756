"""The MPI communicator under mpiexec: buffer collectives, metadata, threads per rank."""

import pytest

from fastdp import threads

pytestmark = pytest.mark.mpi


@pytest.mark.parametrize("n", [2, 3])
def test_collectives(mpirun, n):
    result = mpirun(n, """
import sys
import numpy as np
from fastdp import comm, kernels, threads
c = comm.world()
assert isinstance(c, comm.MPIComm)
buf = np.arange(4.0) * (c.rank + 1)
assert c.allreduce_sum_(buf) is buf
expected = np.arange(4.0) * sum(range(1, c.size + 1))
assert np.array_equal(buf, expected), buf
b = np.full(3, float(c.rank))
c.bcast_(b, root=c.size - 1)
assert np.array_equal(b, np.full(3, c.size - 1.0))
assert c.allgather_obj(("rank", c.rank)) == [("rank", r) for r in range(c.size)]
assert c.local_size == c.size  # every rank on this one node
used = threads.configure(c.local_size, environ={})
assert used == {"numba": threads.threads_per_rank(c.size)} | {"cython": threads.threads_per_rank(c.size)}
assert sys.excepthook is not sys.__excepthook__
try:
    comm.raise_if_any(c, "bad shard" if c.rank == 1 else None)
except ValueError as exc:
    caught = f"CAUGHT {c.rank} {exc}"
lines = c.allgather_obj([caught, f"OK {c.rank} {c.size} {used['numba']}"])
if c.rank == 0:
    print("\\n".join(line for pair in lines for line in pair))
""", timeout=60)
    assert result.returncode == 0, result.stderr
    assert len(result.lines("OK")) == n
    assert result.lines("CAUGHT") == [f"CAUGHT {r} rank 1: bad shard" for r in range(n)]
    per_rank = threads.threads_per_rank(n)
    assert all(line.endswith(f" {per_rank}") for line in result.lines("OK"))
