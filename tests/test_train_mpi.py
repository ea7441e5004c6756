"""Data-parallel training under mpiexec equals serial training; bad input never hangs."""

import ast
import inspect

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


OVERLAP_SOLVERS = {
    "sgd-momentum": dict(solver="sgd", batch_size=128, learning_rate=0.05, momentum=0.5),
    "adam": dict(solver="adam", batch_size=100, learning_rate=0.02),
}


def overlap_data(kind, rows=None):
    """Rows `rows` (None: all) of the regression data, dense or CSR."""
    import scipy.sparse as sp

    X, y = synthetic.linear_regression(N_ROWS, N_FEATURES, rows, seed=11)
    return (sp.csr_matrix(np.where(np.abs(X) > 0.8, X, 0.0)) if kind == "csr" else X), y


OVERLAP_PRELUDE = PRELUDE + inspect.getsource(overlap_data) + f"""
from fastdp.train import fit
SOLVERS = {OVERLAP_SOLVERS!r}

def run(kind, name, rows, overlap, **extra):
    X, y = overlap_data(kind, rows)
    steps = []
    r = fit(X, y, callback=lambda t, theta, f: steps.append(theta.tolist()), overlap=overlap,
            max_iter=3, tol=0, alpha=0.01, **SOLVERS[name], **extra)
    say(f"RUN-{{kind}}-{{name}}-{{overlap}}", comm.rank,
        [steps, r.loss_history.tolist(), np.append(r.coef, r.intercept).tolist(),
         r.report["partition"], r.report["rebalances"]])
"""


def runs(result, tag: str) -> list[list]:
    """Each rank's [steps, loss history, theta, partition, rebalances] of one run."""
    return [ast.literal_eval(line.split(" ", 2)[2]) for line in result.lines(f"RUN-{tag} ")]


def assert_bitwise_equal_runs(result, tag: str) -> tuple[list[list], list[list]]:
    """The runs without and with overlap: on both ranks, the same steps, history and model."""
    plain, overlapped = runs(result, f"{tag}-False"), runs(result, f"{tag}-True")
    assert len(plain) == len(overlapped) == 2, result.stdout + result.stderr
    for run in plain + overlapped:
        assert run[:3] == plain[0][:3]  # float lists: == is bitwise (repr round-trips)
    assert len(plain[0][0]) > 3 * 70  # 3 epochs of 10,007 rows in batches of 100 or 128
    return plain, overlapped


@pytest.mark.parametrize("kind", ["dense", "csr"])
def test_overlap_takes_bitwise_the_same_steps_on_2_ranks(mpirun, kind):
    """Every step's theta, the loss history and the model with overlap=True equal those with
    overlap=False exactly (on 2 ranks each value is one sum of two, whatever MPI's algorithm),
    and the serial fit up to the order of additions."""
    from fastdp.train import fit

    result = mpirun(2, OVERLAP_PRELUDE + f"""
rows = partition.contiguous_range(N_ROWS, comm.size, comm.rank)
for name in SOLVERS:
    for overlap in (False, True):
        run({kind!r}, name, rows, overlap)
""")
    assert result.returncode == 0, result.stderr
    X, y = overlap_data(kind)
    for name, solver in OVERLAP_SOLVERS.items():
        plain, _ = assert_bitwise_equal_runs(result, f"{kind}-{name}")
        serial = fit(X, y, max_iter=3, tol=0, alpha=0.01, **solver)
        np.testing.assert_allclose(plain[0][2], np.append(serial.coef, serial.intercept),
                                   rtol=1e-9, atol=1e-12)
        np.testing.assert_allclose(plain[0][1], serial.loss_history, rtol=1e-11)


def test_overlap_with_a_rank_holding_no_rows(mpirun):
    """A rank with no rows starts and waits for as many Iallreduces as the other."""
    result = mpirun(2, OVERLAP_PRELUDE + """
bounds = [0, 0, N_ROWS]  # rank 0 holds no rows: its batches are empty, still reduced
for overlap in (False, True):
    run("dense", "sgd-momentum", range(bounds[comm.rank], bounds[comm.rank + 1]), overlap)
""")
    assert result.returncode == 0, result.stderr
    assert_bitwise_equal_runs(result, "dense-sgd-momentum")


@pytest.mark.parametrize("kind", ["dense", "csr"])
def test_overlap_prepares_again_when_the_balancer_moves_rows(mpirun, kind):
    """Epoch 1's first batch is prepared during the last reduction of epoch 0, before the
    balancer moves rows at the epoch's end: it is prepared again from the new shard, so the steps
    stay bitwise those without overlap. (The proposal is fixed here, the same in both fits.)"""
    result = mpirun(2, OVERLAP_PRELUDE + f"""
from fastdp import balance

def propose(self, rows, processed, seconds):  # move rows once, at the first epoch end
    first = not getattr(self, "proposed", False)
    self.proposed = True
    return [range(0, 7_000), range(7_000, N_ROWS)] if first else None

balance.LoadBalancer.propose = propose
rows = partition.contiguous_range(N_ROWS, comm.size, comm.rank)
for overlap in (False, True):
    run({kind!r}, "sgd-momentum", rows, overlap, rebalance=True)
""")
    assert result.returncode == 0, result.stderr
    plain, overlapped = assert_bitwise_equal_runs(result, f"{kind}-sgd-momentum")
    for run in plain + overlapped:
        assert run[3] == [[0, 7_000], [7_000, N_ROWS]] and run[4] == 1


WIDE = """
import numpy as np
import scipy.sparse as sp

def wide_problem():
    '''4,000 rows x 2**18 features (wide enough for column tiles), ~12 non-zeros per row.'''
    rng = np.random.default_rng(5)
    X = sp.random(4000, 2**18, density=12 / 2**18, format="csr", random_state=rng)
    y = np.where(X @ rng.normal(size=2**18) + 0.01 * rng.normal(size=4000) > 0, 1.0, -1.0)
    return X, y

WIDE_FIT = dict(loss="logistic", solver="gd", learning_rate=2.0, max_iter=20, tol=0.0)
"""


def test_wide_csr_on_column_tiles_equals_serial(mpirun):
    """2 ranks, each reading its rows of a 2**18-feature CSR through its own column tiles, end
    where one process does (within rounding), with the tiles on every rank in the report."""
    namespace: dict = {}
    exec(WIDE, namespace)
    X, y = namespace["wide_problem"]()
    from fastdp.train import fit
    serial = {b: fit(X, y, backend=b, **namespace["WIDE_FIT"]) for b in ("numba", "cython")}
    assert all(r.report["csr_tiles"] == [16] for r in serial.values())  # 2**18 / 2**14 columns
    result = mpirun(2, PRELUDE + WIDE + """
from fastdp.train import fit
X, y = wide_problem()
rows = partition.contiguous_range(X.shape[0], comm.size, comm.rank)
for backend in ("numba", "cython"):
    r = fit(X[rows.start:rows.stop], y[rows.start:rows.stop], backend=backend, **WIDE_FIT)
    say(f"THETA-{backend}", comm.rank, np.append(r.coef, r.intercept).tolist())
    say(f"TILES-{backend}", comm.rank, r.report["csr_tiles"])
""", timeout=180)
    assert result.returncode == 0, result.stderr
    for backend, r in serial.items():
        assert result.lines(f"TILES-{backend}") == [f"TILES-{backend} {k} [16, 16]" for k in range(2)]
        assert_all_ranks_equal_serial(result, 2, f"THETA-{backend}", np.append(r.coef, r.intercept))


def test_fit_each_on_2_ranks_equals_separate_fits_and_names_bad_data_on_both(mpirun):
    """One-vs-rest through fit_each on 2 ranks (CSR shards, mini-batch SGD): each model is
    bitwise the separate fit's, on every rank; unsorted CSR indices on rank 1 raise the same
    ValueError on both ranks at the first target, and a bad target on rank 0 at its own."""
    result = mpirun(2, PRELUDE + """
import scipy.sparse as sp
from fastdp import train
rng = np.random.default_rng(31)
X = sp.random(600, 300, density=0.05, format="csr", random_state=rng)
labels = rng.integers(0, 3, 600)
rows = partition.contiguous_range(600, comm.size, comm.rank)
X, labels = X[rows], labels[rows]
targets = [np.where(labels == c, 1.0, -1.0) for c in range(3)]
options = dict(loss="hinge", solver="sgd", batch_size=40, max_iter=2, tol=0, alpha=1e-3)
for c, result in enumerate(train.fit_each(X, targets, **options)):
    alone = train.fit(X, targets[c], **options)
    say("SAME", comm.rank, c, bool(np.array_equal(result.coef, alone.coef)
                                   and result.intercept == alone.intercept))
    say("COEF", comm.rank, c, result.coef[:5].tolist())
bad = X.copy()
if comm.rank == 1:
    bad.indices[:2] = bad.indices[1::-1]
    bad.has_sorted_indices = False
try:
    next(train.fit_each(bad, targets, **options))
    say("NO-ERROR", comm.rank)
except ValueError as exc:
    say("CAUGHT-X", comm.rank, exc)
wrong = [targets[0], targets[1] * (2.0 if comm.rank == 0 else 1.0)]
fits = train.fit_each(X, wrong, **options)
next(fits)
try:
    next(fits)
    say("NO-ERROR", comm.rank)
except ValueError as exc:
    say("CAUGHT-Y", comm.rank, exc)
""", timeout=180)
    assert result.returncode == 0, result.stderr
    assert "NO-ERROR" not in result.stdout
    for c in range(3):
        assert [line.split()[-1] for line in result.lines("SAME ")
                if line.split()[2] == str(c)] == ["True", "True"]
        coefs = [line.split(" ", 3)[3] for line in result.lines("COEF ") if line.split()[2] == str(c)]
        assert len(coefs) == 2 and coefs[0] == coefs[1]
    for rank in (0, 1):
        [x_line] = result.lines(f"CAUGHT-X {rank}")
        assert "rank 1: X (CSR) indices are not sorted in row" in x_line
        [y_line] = result.lines(f"CAUGHT-Y {rank}")
        assert "rank 0: y must be -1 or +1 for loss 'hinge', got -2.0 at row 0" in y_line
