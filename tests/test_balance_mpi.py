"""The load balancer under mpiexec: with rank 1 slowed down, rows move to rank 0, and the model is
the serial one up to the order of additions."""

import ast

import numpy as np
import pytest

from fastdp import synthetic, train

pytestmark = pytest.mark.mpi

N_ROWS, N_FEATURES = 60_000, 16
FIT = dict(solver="gd", learning_rate=0.5, max_iter=80, tol=0)


def test_rows_move_to_the_fast_rank_and_theta_is_unchanged(mpirun):
    result = mpirun(2, f"""
import numpy as np
from fastdp import partition, synthetic, train, world
comm = world()
rows = partition.contiguous_range({N_ROWS}, comm.size, comm.rank)
X, y = synthetic.linear_regression({N_ROWS}, {N_FEATURES}, rows, seed=3)
r = train.fit(X, y, rebalance=True, rebalance_every=5, **{FIT!r})
lines = comm.allgather_obj(f"RESULT {{comm.rank}} {{r.report['partition']}} {{r.report['rebalances']}} "
                           f"{{np.append(r.coef, r.intercept).tolist()}}")
if comm.rank == 0:
    print("\\n".join(lines), flush=True)
""", timeout=120, env=dict(__import__("os").environ, FASTDP_SLOWDOWN="1:3.0"))
    assert result.returncode == 0, result.stderr
    X, y = synthetic.linear_regression(N_ROWS, N_FEATURES, seed=3)
    serial = train.fit(X, y, **FIT)
    expected = np.append(serial.coef, serial.intercept)
    lines = result.lines("RESULT")
    assert len(lines) == 2
    for line in lines:
        _, _, rest = line.split(" ", 2)
        partition_end = rest.index("]]") + 2
        partition = ast.literal_eval(rest[:partition_end])
        rebalances, theta = rest[partition_end + 1:].split(" ", 1)
        assert int(rebalances) >= 1
        rows0, rows1 = (b - a for a, b in partition)
        assert partition[0][0] == 0 and partition[1][1] == N_ROWS and rows0 + rows1 == N_ROWS
        assert rows0 > 2 * rows1  # rank 1 works at a third of the speed: about 3:1
        np.testing.assert_allclose(ast.literal_eval(theta), expected, rtol=1e-12, atol=1e-14)
