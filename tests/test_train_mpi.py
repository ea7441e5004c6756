"""Data-parallel training under mpiexec equals serial training; bad input never hangs."""

import ast

import numpy as np
import pytest

from fastdp import synthetic
from fastdp.train import fit_gd

pytestmark = pytest.mark.mpi

N_ROWS, N_FEATURES = 10_007, 6
FIT = dict(learning_rate=0.5, tol=1e-11, max_iter=500)

PRELUDE = f"""
import numpy as np
from fastdp import partition, synthetic, world
from fastdp.train import fit_gd
comm = world()
N_ROWS, N_FEATURES, FIT = {N_ROWS}, {N_FEATURES}, {FIT!r}

def say(*parts):  # collective print: rank 0 prints every rank's line, so none interleave
    lines = comm.allgather_obj(" ".join(str(p) for p in parts))
    if comm.rank == 0:
        print("\\n".join(lines), flush=True)
"""


def serial_theta(backend: str, n_rows: int = N_ROWS) -> np.ndarray:
    X, y = synthetic.linear_regression(n_rows, N_FEATURES, seed=11)
    result = fit_gd(X, y, backend=backend, **FIT)
    return np.append(result.coef, result.intercept)


def thetas(result, prefix: str) -> list[np.ndarray]:
    return [np.array(ast.literal_eval(line.split(" ", 2)[2])) for line in result.lines(prefix)]


def assert_all_ranks_equal_serial(result, n: int, tag: str, serial: np.ndarray) -> None:
    got = thetas(result, tag)
    assert len(got) == n, result.stdout + result.stderr
    for theta in got:
        assert np.array_equal(theta, got[0])  # every rank holds the very same parameters
        np.testing.assert_allclose(theta, serial, rtol=1e-12, atol=0)


@pytest.mark.parametrize("n", [1, 2, 3])
def test_data_parallel_equals_serial(mpirun, n):
    result = mpirun(n, PRELUDE + """
rows = partition.contiguous_range(N_ROWS, comm.size, comm.rank)
X, y = synthetic.linear_regression(N_ROWS, N_FEATURES, rows, seed=11)
for backend in ("numba", "cython"):
    r = fit_gd(X, y, backend=backend, **FIT)
    assert r.n_rows == N_ROWS and r.n_ranks == comm.size
    say(f"THETA-{backend}", comm.rank, np.append(r.coef, r.intercept).tolist())
""")
    assert result.returncode == 0, result.stderr
    for backend in ("numba", "cython"):
        assert_all_ranks_equal_serial(result, n, f"THETA-{backend}", serial_theta(backend))


def test_unequal_shards_equal_serial(mpirun):
    """Shards of 37, 8963 and 1007 rows: equal-weight averaging would be wrong here."""
    result = mpirun(3, PRELUDE + """
bounds = [0, 37, 9000, N_ROWS]
X, y = synthetic.linear_regression(N_ROWS, N_FEATURES, range(bounds[comm.rank], bounds[comm.rank + 1]), seed=11)
r = fit_gd(X, y, **FIT)
say("THETA", comm.rank, np.append(r.coef, r.intercept).tolist())
one = fit_gd(X, y, learning_rate=0.5, max_iter=1, tol=0)
say("STEP", comm.rank, np.append(one.coef, one.intercept).tolist())
""")
    assert result.returncode == 0, result.stderr
    assert_all_ranks_equal_serial(result, 3, "THETA", serial_theta("numba"))
    X, y = synthetic.linear_regression(N_ROWS, N_FEATURES, seed=11)
    one = fit_gd(X, y, learning_rate=0.5, max_iter=1, tol=0)
    assert_all_ranks_equal_serial(result, 3, "STEP", np.append(one.coef, one.intercept))


def test_more_ranks_than_rows(mpirun):
    result = mpirun(3, PRELUDE + """
rows = partition.contiguous_range(2, comm.size, comm.rank)
X, y = synthetic.linear_regression(2, N_FEATURES, rows, seed=11)
r = fit_gd(X, y, learning_rate=0.1, max_iter=50, tol=0)
say("THETA", comm.rank, np.append(r.coef, r.intercept).tolist())
""")
    assert result.returncode == 0, result.stderr
    X, y = synthetic.linear_regression(2, N_FEATURES, seed=11)
    r = fit_gd(X, y, learning_rate=0.1, max_iter=50, tol=0)
    assert_all_ranks_equal_serial(result, 3, "THETA", np.append(r.coef, r.intercept))


BAD_SHARDS = {
    "nan": ("X[0, 1] = np.nan", "rank 1: X contains NaN (first at row 0, column 1)"),
    "inf-y": ("y[2] = np.inf", "rank 1: y contains inf (first at row 2)"),
    "lengths": ("y = y[:-1]", "rank 1: X has 100 rows but y has 99"),
    "1-D": ("X = X[:, 0]", "rank 1: X must be 2-D"),
    "dtype": ("X = X.astype(str)", "rank 1: X must be numeric"),
    "learning-rate": ("kwargs['learning_rate'] = -1.0",
                      "rank 1: learning_rate must be a finite number > 0, got -1.0"),
    "features": ("X = X[:, :2]", "X has a different number of features on different ranks: "
                                 "rank 0: 3, rank 1: 2"),
}


def test_bad_shard_on_one_rank_raises_on_every_rank(mpirun):
    cases = {name: corrupt for name, (corrupt, _) in BAD_SHARDS.items()}
    result = mpirun(2, PRELUDE + f"""
for name, corrupt in {cases!r}.items():
    X, y = synthetic.linear_regression(200, 3, partition.contiguous_range(200, 2, comm.rank))
    kwargs = {{}}
    if comm.rank == 1:
        exec(corrupt)
    try:
        fit_gd(X, y, **kwargs)
        say("NO-ERROR", comm.rank, name)
    except ValueError as exc:
        say("CAUGHT", comm.rank, name + ":", exc)
""", timeout=60)
    assert result.returncode == 0, result.stderr
    assert "NO-ERROR" not in result.stdout
    for name, (_, message) in BAD_SHARDS.items():
        for rank in (0, 1):
            line = [l for l in result.lines(f"CAUGHT {rank} {name}:")]
            assert len(line) == 1 and message in line[0], (name, rank, result.stdout)


def test_exception_on_one_rank_mid_training_ends_the_job(mpirun):
    result = mpirun(2, PRELUDE + """
X, y = synthetic.linear_regression(1000, 3, partition.contiguous_range(1000, 2, comm.rank))

def callback(step, theta, objective):
    if comm.rank == 1 and step == 3:
        raise RuntimeError("boom at step 3 on rank 1")

fit_gd(X, y, learning_rate=0.1, max_iter=10_000_000, tol=0, callback=callback)
print("FINISHED", comm.rank)
""", timeout=60)
    assert result.returncode != 0
    assert "boom at step 3 on rank 1" in result.stderr, result
    assert "aborting all ranks" in result.stderr
    assert "FINISHED" not in result.stdout


SGD = dict(solver="sgd", batch_size=128, learning_rate=0.05, momentum=0.5, max_iter=3, tol=0,
           alpha=0.01)


def sgd_trajectory(X, y, **kwargs) -> np.ndarray:
    from fastdp.train import fit

    steps = []
    fit(X, y, callback=lambda t, theta, f: steps.append(theta.copy()), **SGD, **kwargs)
    return np.array(steps)


def test_overlapped_sgd_follows_the_serial_trajectory(mpirun):
    """2 ranks with overlap_chunks=2 take the 1-rank steps and the 2-rank steps without overlap,
    up to rounding, every step of 3 epochs."""
    result = mpirun(2, PRELUDE + f"""
from fastdp.train import fit
SGD = {SGD!r}
rows = partition.contiguous_range(N_ROWS, comm.size, comm.rank)
X, y = synthetic.linear_regression(N_ROWS, N_FEATURES, rows, seed=11)
for chunks in (None, 2):
    steps = []
    fit(X, y, callback=lambda t, theta, f: steps.append(theta.tolist()), overlap_chunks=chunks, **SGD)
    say(f"STEPS-{{chunks}}", comm.rank, steps)
""")
    assert result.returncode == 0, result.stderr
    X, y = synthetic.linear_regression(N_ROWS, N_FEATURES, seed=11)
    serial = sgd_trajectory(X, y)
    plain, overlapped = thetas(result, "STEPS-None"), thetas(result, "STEPS-2")
    assert len(plain) == len(overlapped) == 2 and serial.shape == (3 * 79, N_FEATURES + 1)
    for steps in (plain, overlapped):
        assert np.array_equal(steps[0], steps[1])  # both ranks hold the very same parameters
    np.testing.assert_allclose(overlapped[0], plain[0], rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(overlapped[0], serial, rtol=1e-10, atol=1e-12)


def test_overlap_with_a_rank_holding_no_rows(mpirun):
    """Every rank starts as many Iallreduces, whatever its rows, so the collectives pair up."""
    result = mpirun(3, PRELUDE + """
from fastdp.train import fit
bounds = [0, 0, 37, N_ROWS]  # rank 0 holds no rows: its chunks are empty, still reduced
X, y = synthetic.linear_regression(N_ROWS, N_FEATURES, range(bounds[comm.rank], bounds[comm.rank + 1]), seed=11)
r = fit(X, y, overlap_chunks=3, **FIT)
say("THETA", comm.rank, np.append(r.coef, r.intercept).tolist())
""")
    assert result.returncode == 0, result.stderr
    assert_all_ranks_equal_serial(result, 3, "THETA", serial_theta("numba"))
