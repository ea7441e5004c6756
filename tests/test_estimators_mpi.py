"""Estimators under mpiexec: N ranks fit the 1-rank model; bad input raises on every rank."""

import ast

import numpy as np
import pytest
from sklearn.datasets import load_breast_cancer, load_diabetes, load_digits
from sklearn.preprocessing import StandardScaler

from fastdp import train
from fastdp.estimators import LogisticRegression, Ridge

pytestmark = pytest.mark.mpi

PRELUDE = """
import numpy as np
import scipy.sparse as sp
from sklearn.datasets import load_breast_cancer, load_diabetes, load_digits
from sklearn.preprocessing import StandardScaler
from fastdp import partition, train, world
from fastdp.estimators import LinearRegression, LinearSVC, LogisticRegression, Ridge
comm = world()

def say(*parts):  # collective print: rank 0 prints every rank's line, so none interleave
    lines = comm.allgather_obj(" ".join(str(p) for p in parts))
    if comm.rank == 0:
        print("\\n".join(lines), flush=True)

def my_rows(loader):
    X, y = loader(return_X_y=True)
    X = StandardScaler().fit_transform(X)
    rows = partition.contiguous_range(len(y), comm.size, comm.rank)
    return X[rows], y[rows]
"""

LBFGS = dict(solver="lbfgs", tol=1e-12, max_iter=10_000)


def standardized(loader):
    X, y = loader(return_X_y=True)
    return StandardScaler().fit_transform(X), y


def values(result, prefix):
    return [np.array(ast.literal_eval(line.split(" ", 2)[2])) for line in result.lines(prefix)]


@pytest.mark.parametrize("n", [2, 3])
def test_estimators_on_n_ranks_equal_one_rank(mpirun, n):
    result = mpirun(n, PRELUDE + f"""
LBFGS = {LBFGS!r}
X, y = my_rows(load_breast_cancer)
m = LogisticRegression(**LBFGS).fit(X, y)
say("BINARY", comm.rank, m.coef_.ravel().tolist() + m.intercept_.tolist())
X, y = my_rows(load_digits)
m = LogisticRegression(**LBFGS).fit(X, y)
say("MULTI", comm.rank, m.coef_.ravel().tolist() + m.intercept_.tolist() + m.classes_.tolist())
X, y = my_rows(load_diabetes)
m = Ridge(alpha=1.0, solver="gd", learning_rate=0.1, max_iter=300, tol=0).fit(X, y)
say("RIDGE-GD", comm.rank, m.coef_.tolist() + [m.intercept_])
""", timeout=180)
    assert result.returncode == 0, result.stderr
    X, y = standardized(load_breast_cancer)
    m = LogisticRegression(**LBFGS).fit(X, y)
    expected = {"BINARY": np.append(m.coef_.ravel(), m.intercept_)}
    X, y = standardized(load_digits)
    m = LogisticRegression(**LBFGS).fit(X, y)
    expected["MULTI"] = np.concatenate([m.coef_.ravel(), m.intercept_, m.classes_])
    X, y = standardized(load_diabetes)
    m = Ridge(alpha=1.0, solver="gd", learning_rate=0.1, max_iter=300, tol=0).fit(X, y)
    expected["RIDGE-GD"] = np.append(m.coef_, m.intercept_)
    for tag, serial in expected.items():
        got = values(result, tag)
        assert len(got) == n, result.stdout
        for theta in got:
            assert np.array_equal(theta, got[0]), tag  # every rank holds the same model
            np.testing.assert_allclose(theta, serial, rtol=0, atol=1e-8, err_msg=tag)


@pytest.mark.parametrize("n", [2, 3])
def test_sgd_with_a_seed_follows_the_one_rank_trajectory(mpirun, n):
    """Global batches are cut from one permutation of the global rows; each rank computes the part
    it holds, so the sequence of parameters is the 1-rank sequence, step by step."""
    kwargs = dict(loss="logistic", solver="sgd", batch_size=50, learning_rate=0.05, max_iter=3,
                  momentum=0.9, alpha=1e-3, random_state=7, tol=0)
    result = mpirun(n, PRELUDE + f"""
X, y = my_rows(load_breast_cancer)
steps = []
train.fit(X, np.where(y == 1, 1.0, -1.0), callback=lambda t, theta, f: steps.append(theta.copy()),
          **{kwargs!r})
say("TRAJECTORY", comm.rank, np.array(steps).ravel().tolist())
""", timeout=120)
    assert result.returncode == 0, result.stderr
    X, y = standardized(load_breast_cancer)
    steps = []
    train.fit(X, np.where(y == 1, 1.0, -1.0), callback=lambda t, theta, f: steps.append(theta.copy()),
              **kwargs)
    serial = np.array(steps).ravel()
    assert len(serial) == 3 * 12 * 31  # 3 epochs of ceil(569 / 50) batches, 31 parameters
    for trajectory in values(result, "TRAJECTORY"):
        np.testing.assert_allclose(trajectory, serial, rtol=0, atol=1e-10)


def test_classes_are_the_union_over_ranks_and_an_empty_shard_is_fine(mpirun):
    result = mpirun(3, PRELUDE + """
X, y = load_breast_cancer(return_X_y=True)
order = np.argsort(y, kind="stable")  # rank 0 holds only class 0, rank 1 mostly class 1
X, y = StandardScaler().fit_transform(X)[order], y[order]
rows = partition.contiguous_range(len(y), 2, comm.rank) if comm.rank < 2 else slice(0, 0)
m = LogisticRegression(solver="lbfgs", tol=1e-12, max_iter=10_000).fit(X[rows], y[rows])
say("CLASSES", comm.rank, m.classes_.tolist())
say("COEF", comm.rank, m.coef_.ravel().tolist())
""", timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.lines("CLASSES") == [f"CLASSES {r} [0, 1]" for r in range(3)]
    X, y = standardized(load_breast_cancer)
    serial = LogisticRegression(solver="lbfgs", tol=1e-12, max_iter=10_000).fit(X, y).coef_.ravel()
    for coef in values(result, "COEF"):
        np.testing.assert_allclose(coef, serial, atol=1e-8)


BAD = {
    "one-class": ("y = np.zeros(len(y))", "LogisticRegression",
                  "needs samples of at least 2 classes, but the data (on all ranks) contains only one class"),
    "features": ("X = X[:, :5] if comm.rank == 1 else X", "LogisticRegression",
                 "X has a different number of features on different ranks"),
    "nan": ("X[3, 2] = np.nan if comm.rank == 1 else X[3, 2]", "LogisticRegression",
            "rank 1: Input X contains NaN"),
    "empty-no-features": ("X = np.empty((0, 0)) if comm.rank == 1 else X; "
                          "y = y[:0] if comm.rank == 1 else y", "LogisticRegression",
                          "rank 1: Found array with 0 feature(s)"),
    "csr-out-of-range": ("X = sp.csr_matrix(X); X.indices[X.indptr[1]] = 99 if comm.rank == 1 else "
                         "X.indices[X.indptr[1]]", "LogisticRegression",
                         "rank 1: X (CSR) has column index 99 at row 1 but only 30 features"),
    "csr-unsorted": ("X = sp.csr_matrix(X); X.indices[:2] = X.indices[:2][::-1] if comm.rank == 1 "
                     "else X.indices[:2]; X.has_sorted_indices = comm.rank != 1", "LogisticRegression",
                     "rank 1: X (CSR) indices are not sorted in row 0"),
    "regression-target": ("y = y + 0.5 if comm.rank == 1 else y", "LogisticRegression",
                          "rank 1: Unknown label type"),
}


def test_bad_input_raises_the_same_error_on_every_rank(mpirun):
    result = mpirun(2, PRELUDE + f"""
for name, (corrupt, estimator, _) in {BAD!r}.items():
    X, y = my_rows(load_breast_cancer)
    exec(corrupt)
    try:
        globals()[estimator](max_iter=5).fit(X, y)
        say("NO-ERROR", comm.rank, name)
    except ValueError as exc:
        say("CAUGHT", comm.rank, name + ":", str(exc).replace(chr(10), " "))
""", timeout=120)
    assert result.returncode == 0, result.stderr
    assert "NO-ERROR" not in result.stdout, result.stdout
    for name, (_, _, message) in BAD.items():
        for rank in (0, 1):
            line = result.lines(f"CAUGHT {rank} {name}:")
            assert len(line) == 1 and message in line[0], (name, rank, result.stdout)


def test_softmax_labels_out_of_range_on_one_rank(mpirun):
    result = mpirun(2, PRELUDE + """
X, y = my_rows(load_digits)
if comm.rank == 1:
    y = y.copy(); y[4] = 12
try:
    train.fit(X, y, loss="softmax", n_classes=10, max_iter=2)
    say("NO-ERROR", comm.rank)
except ValueError as exc:
    say("CAUGHT", comm.rank, exc)
""", timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.lines("CAUGHT") == [
        f"CAUGHT {r} rank 1: y has label 12 but coef has 10 classes (labels must be 0..9)"
        for r in (0, 1)]


def test_verbose_progress_bar_comes_from_rank_0_only(mpirun):
    result = mpirun(2, PRELUDE + """
X, y = my_rows(load_breast_cancer)
LogisticRegression(verbose=True, solver="gd", max_iter=30, tol=0).fit(X, y)
""", timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stderr.count("30/30  objective") == 1, result.stderr


def test_training_report_has_every_ranks_rows_and_times(mpirun):
    result = mpirun(3, PRELUDE + """
X, y = load_breast_cancer(return_X_y=True)
X = StandardScaler().fit_transform(X)
rows = [slice(0, 100), slice(100, 500), slice(500, None)][comm.rank]
report = LinearSVC(max_iter=20).fit(X[rows], y[rows]).training_report_
say("REPORT", comm.rank, [(r["rank"], r["rows"], r["compute_s"] > 0, r["wait_s"] >= 0)
                          for r in report["ranks"]], report["imbalance"] >= 1.0)
""", timeout=60)
    assert result.returncode == 0, result.stderr
    expected = "[(0, 100, True, True), (1, 400, True, True), (2, 69, True, True)] True"
    assert result.lines("REPORT") == [f"REPORT {r} {expected}" for r in range(3)]
