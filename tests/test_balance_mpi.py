"""The load balancer under mpiexec: with rank 1 slowed down, rows move to rank 0, and the model is
the serial one up to the order of additions: dense and CSR rows, full-batch and mini-batch."""

import ast

import numpy as np
import pytest
import scipy.sparse as sp

from fastdp import synthetic, train

pytestmark = pytest.mark.mpi

N_ROWS, N_FEATURES = 60_000, 16
DATA = {
    "dense": f"X, y = synthetic.linear_regression({N_ROWS}, {N_FEATURES}, seed=3)",
    "csr": f"X, y = synthetic.linear_regression({N_ROWS}, {N_FEATURES}, seed=3)\n"
           "X = sp.csr_matrix(np.where(np.abs(X) > 1.0, X, 0.0)); y = np.sign(y + 0.5)",
    # 2**18 features: full-batch fits read a column-major copy (16 tiles of 2**14 columns),
    # rebuilt on each rank after rows move
    "csr-wide": f"rng = np.random.default_rng(3)\n"
                f"X = sp.random({N_ROWS}, 2**18, density=8 / 2**18, format='csr', random_state=rng)\n"
                "y = np.where(X @ rng.normal(size=2**18) > 0, 1.0, -1.0)",
}
SCENARIOS = {
    "dense-gd": ("dense", dict(solver="gd", learning_rate=0.5, max_iter=80, tol=0,
                               rebalance_every=5)),
    "csr-logistic-gd": ("csr", dict(loss="logistic", solver="gd", learning_rate=0.5, max_iter=80,
                                    tol=0, rebalance_every=5)),
    "csr-wide-logistic-gd": ("csr-wide", dict(loss="logistic", solver="gd", learning_rate=2.0,
                                              max_iter=40, tol=0, rebalance_every=5)),
    "dense-sgd": ("dense", dict(solver="sgd", batch_size=2000, learning_rate=0.05, max_iter=4,
                                tol=0, random_state=7)),
}


def make_data(kind: str):
    namespace = {"np": np, "sp": sp, "synthetic": synthetic}
    exec(DATA[kind], namespace)
    return namespace["X"], namespace["y"]


@pytest.mark.parametrize("scenario", sorted(SCENARIOS))
def test_rows_move_to_the_fast_rank_and_theta_is_unchanged(mpirun, scenario):
    kind, fit = SCENARIOS[scenario]
    result = mpirun(2, f"""
import numpy as np
import scipy.sparse as sp
from fastdp import partition, synthetic, train, world
comm = world()
{DATA[kind]}
rows = partition.contiguous_range({N_ROWS}, comm.size, comm.rank)
r = train.fit(X[rows.start:rows.stop], y[rows.start:rows.stop], rebalance=True, **{fit!r})
assert r.report["csr_tiles"] == ([16, 16] if "{kind}" == "csr-wide" else [0, 0]), r.report["csr_tiles"]
lines = comm.allgather_obj(f"RESULT {{comm.rank}} {{r.report['partition']}} {{r.report['rebalances']}} "
                           f"{{np.append(r.coef, r.intercept).tolist()}}")
if comm.rank == 0:
    print("\\n".join(lines), flush=True)
""", timeout=120, env=dict(__import__("os").environ, FASTDP_SLOWDOWN="1:3.0"))
    assert result.returncode == 0, result.stderr
    X, y = make_data(kind)
    fit = {k: v for k, v in fit.items() if k != "rebalance_every"}
    serial = train.fit(X, y, **fit)
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
        assert rows0 > 1.5 * rows1, partition  # rank 1 works at a third of the speed
        np.testing.assert_allclose(ast.literal_eval(theta), expected, rtol=1e-12, atol=1e-14)


def test_redistribute_moves_dense_and_csr_rows_exactly(mpirun):
    result = mpirun(3, """
import numpy as np
import scipy.sparse as sp
from fastdp import balance, world
comm = world()
rng = np.random.default_rng(0)
X = sp.random(50, 7, density=0.3, format="csr", random_state=1)
X[5] = 0  # an empty row
X.eliminate_zeros()
y = np.arange(50.0)
ok = True
for old_cuts, new_cuts in [((10, 30), (0, 49)), ((0, 0), (25, 25)), ((17, 18), (17, 18))]:
    old = [range(a, b) for a, b in zip((0,) + old_cuts, old_cuts + (50,))]
    new = [range(a, b) for a, b in zip((0,) + new_cuts, new_cuts + (50,))]
    mine = old[comm.rank]
    Xm, ym = balance.redistribute(comm, [X[mine.start:mine.stop], y[mine.start:mine.stop]], old, new)
    want = new[comm.rank]
    ok &= sp.issparse(Xm) and (Xm != X[want.start:want.stop]).nnz == 0 and Xm.shape[0] == len(want)
    ok &= np.array_equal(ym, y[want.start:want.stop])
print("OK" if all(comm.allgather_obj(ok)) else "MISMATCH", comm.rank)
""", timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.lines("OK") and not result.lines("MISMATCH"), result.stdout
