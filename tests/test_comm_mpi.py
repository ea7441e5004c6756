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


def test_scatter_and_gather_rows_keep_the_order(mpirun):
    result = mpirun(3, """
import numpy as np
from fastdp import world
comm = world()
X = np.arange(7 * 2, dtype=np.float32).reshape(7, 2) if comm.rank == 0 else None
counts = [3, 0, 4]
mine = comm.scatter_rows(X, counts)
back = comm.gather_rows(mine * 10, counts, root=0)
everywhere = comm.gather_rows(np.full((counts[comm.rank], 2), comm.rank, np.int64), counts, root=None)
try:
    comm.scatter_rows(X, [1, 1, 1])
    error = None
except ValueError as exc:
    error = str(exc)
lines = comm.allgather_obj(f"RANK {comm.rank} {mine.dtype} {mine.tolist()} "
                           f"{None if back is None else back.ravel().tolist()} "
                           f"{everywhere[:, 0].tolist()} {error}")
if comm.rank == 0:
    print("\\n".join(lines), flush=True)
""", timeout=60)
    assert result.returncode == 0, result.stderr
    lines = result.lines("RANK")
    full = [float(v) * 10 for v in range(14)]
    error = "counts [1, 1, 1] do not split X of shape (7, 2) over 3 ranks"
    assert lines[0] == f"RANK 0 float32 [[0.0, 1.0], [2.0, 3.0], [4.0, 5.0]] {full} [0, 0, 0, 2, 2, 2, 2] {error}"
    assert lines[1] == f"RANK 1 float32 [] None [0, 0, 0, 2, 2, 2, 2] {error}"
    assert lines[2].startswith("RANK 2 float32 [[6.0, 7.0], [8.0, 9.0], [10.0, 11.0], [12.0, 13.0]] None")


@pytest.mark.parametrize("n", [2, 3])
def test_iallreduce_sums_in_flight_while_the_rank_computes(mpirun, n):
    """Several Iallreduces in flight at once, started in the same order on every rank, each
    buffer summed in place; test() drives them while the rank does other work."""
    result = mpirun(n, """
import numpy as np
from fastdp import comm
c = comm.world()
bufs = [np.arange(5_000.0) * (c.rank + 1) + chunk for chunk in range(4)]
requests = []
for chunk, buf in enumerate(bufs):
    requests.append(c.iallreduce_sum_(buf))
    np.linalg.norm(np.random.default_rng(chunk).standard_normal(200_000))  # work in between
    done = [request.test() for request in requests]
    assert all(type(flag) is bool for flag in done), done
for request in requests:
    assert request.wait() is None
assert all(request.test() for request in requests)  # complete stays complete
total = sum(range(1, c.size + 1))
ok = all(np.array_equal(buf, np.arange(5_000.0) * total + chunk * c.size)
         for chunk, buf in enumerate(bufs))
lines = c.allgather_obj(f"IALLREDUCE {c.rank} {ok}")
if c.rank == 0:
    print("\\n".join(lines))
""", timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.lines("IALLREDUCE") == [f"IALLREDUCE {r} True" for r in range(n)]
