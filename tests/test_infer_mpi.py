"""fastdp.predict under mpiexec: bitwise the serial prediction, in order, for 1, 2 and 3 ranks."""

import numpy as np
import pytest
from sklearn.datasets import load_digits

import fastdp
from fastdp.estimators import LinearSVC, LogisticRegression

pytestmark = pytest.mark.mpi

PRELUDE = """
import numpy as np
import scipy.sparse as sp
import fastdp
from sklearn.datasets import load_digits
from fastdp import partition, world
from fastdp.estimators import LinearSVC, LogisticRegression
comm = world()
X, y = load_digits(return_X_y=True)
X = X / 16.0
NAMES = np.array(["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"])

def out(tag, values):
    if values is not None:
        np.save(f"{OUT}/{tag}-{comm.rank}.npy", values, allow_pickle=False)
"""


def serial_models(directory):
    """The models, fitted here once and saved where the MPI scripts load them: a fit in another
    process may differ in the last bits (Numba's freshly compiled and cached code can round the
    loss differently), and what is compared here is prediction, not training."""
    X, y = load_digits(return_X_y=True)
    X = X / 16.0
    names = np.array(["zero", "one", "two", "three", "four", "five", "six", "seven", "eight",
                      "nine"])[y]
    logistic = LogisticRegression(max_iter=50).fit(X, y)
    svc = LinearSVC(max_iter=20).fit(X, names)
    fastdp.save(logistic, directory / "logistic.fdp")
    fastdp.save(svc, directory / "svc.fdp")
    return X, logistic, svc


@pytest.mark.parametrize("n", [1, 2, 3])
def test_static_predictions_equal_serial_bitwise(mpirun, tmp_path, n):
    X, logistic, svc = serial_models(tmp_path)
    result = mpirun(n, f"OUT = {str(tmp_path)!r}\n" + PRELUDE + """
logistic, svc = fastdp.load(f"{OUT}/logistic.fdp"), fastdp.load(f"{OUT}/svc.fdp")
out("labels", fastdp.predict(logistic, X if comm.rank == 0 else None))
out("proba", fastdp.predict(logistic, X if comm.rank == 0 else None, method="predict_proba"))
out("names-all", fastdp.predict(svc, sp.csr_matrix(X) if comm.rank == 0 else None, gather_to=None))
rows = partition.contiguous_range(len(X), comm.size, comm.rank)
out("local", fastdp.predict(logistic, X[rows], scatter=False, method="decision_function"))
out("few", fastdp.predict(logistic, X[:2] if comm.rank == 0 else None))  # fewer rows than ranks
""", timeout=120)
    assert result.returncode == 0, result.stderr
    expected = {"labels": logistic.predict(X), "proba": logistic.predict_proba(X),
                "local": logistic.decision_function(X), "few": logistic.predict(X[:2])}
    for tag, values in expected.items():
        assert sorted(p.name for p in tmp_path.glob(f"{tag}-*.npy")) == [f"{tag}-0.npy"]
        assert np.array_equal(np.load(tmp_path / f"{tag}-0.npy"), values), tag
    for rank in range(n):  # gather_to=None: every rank holds the whole result
        assert np.array_equal(np.load(tmp_path / f"names-all-{rank}.npy"), svc.predict(X))


def test_a_bad_row_block_on_one_rank_raises_everywhere(mpirun, tmp_path):
    result = mpirun(2, f"OUT = {str(tmp_path)!r}\n" + PRELUDE + """
model = LogisticRegression(max_iter=5, comm=fastdp.comm.SerialComm()).fit(X, y)
mine = X[:10, :5] if comm.rank == 1 else X[:10]
try:
    fastdp.predict(model, mine, scatter=False)
    line = f"NO-ERROR {comm.rank}"
except ValueError as exc:
    line = f"CAUGHT {comm.rank} {exc}"
lines = comm.allgather_obj(line)  # rank 0 prints every rank's line: none interleave
if comm.rank == 0:
    print("\\n".join(lines), flush=True)
""", timeout=60)
    assert result.returncode == 0, result.stderr
    lines = result.lines("CAUGHT")
    assert len(lines) == 2 and all("rank 1: ValueError: X has 5 features" in line for line in lines)


@pytest.mark.parametrize("n", [2, 3])
def test_dynamic_schedule_equals_serial_in_order(mpirun, tmp_path, n):
    X, logistic, svc = serial_models(tmp_path)
    result = mpirun(n, f"OUT = {str(tmp_path)!r}\n" + PRELUDE + """
import time
logistic, svc = fastdp.load(f"{OUT}/logistic.fdp"), fastdp.load(f"{OUT}/svc.fdp")

class Uneven:  # rows of the first tenth cost 20x the others: the work queue evens it out
    def predict(self, rows):
        time.sleep(0.0001 * len(rows) * (20 if rows[0, 0] < 0.1 else 1))
        return logistic.predict(rows[:, 1:])

mine = X if comm.rank == 0 else None
out("labels", fastdp.predict(logistic, mine, schedule="dynamic", chunk_rows=7))
out("proba", fastdp.predict(logistic, mine, schedule="dynamic", method="predict_proba"))
out("names-all", fastdp.predict(svc, sp.csr_matrix(X) if comm.rank == 0 else None,
                                schedule="dynamic", gather_to=None))
out("few", fastdp.predict(logistic, X[:2] if comm.rank == 0 else None, schedule="dynamic"))
key = np.linspace(0, 1, len(X))[:, None]
out("uneven", fastdp.predict(Uneven(), np.hstack([key, X]) if comm.rank == 0 else None,
                             schedule="dynamic", chunk_rows=20))
""", timeout=120)
    assert result.returncode == 0, result.stderr
    expected = {"labels": logistic.predict(X), "proba": logistic.predict_proba(X),
                "few": logistic.predict(X[:2]), "uneven": logistic.predict(X)}
    for tag, values in expected.items():
        assert sorted(p.name for p in tmp_path.glob(f"{tag}-*.npy")) == [f"{tag}-0.npy"]
        assert np.array_equal(np.load(tmp_path / f"{tag}-0.npy"), values), tag
    for rank in range(n):
        assert np.array_equal(np.load(tmp_path / f"names-all-{rank}.npy"), svc.predict(X))


def test_dynamic_schedule_error_in_any_chunk_raises_everywhere(mpirun, tmp_path):
    result = mpirun(3, f"OUT = {str(tmp_path)!r}\n" + PRELUDE + """
class Picky:
    def predict(self, rows):
        if (rows[:, 0] == 150).any():
            raise ValueError("row 150 is bad")
        return rows[:, 0]

rows = np.arange(400.0)[:, None] if comm.rank == 0 else None
try:
    fastdp.predict(Picky(), rows, schedule="dynamic", chunk_rows=10)
    line = f"NO-ERROR {comm.rank}"
except ValueError as exc:
    line = f"CAUGHT {comm.rank} {exc}"
lines = comm.allgather_obj(line)
if comm.rank == 0:
    print("\\n".join(lines), flush=True)
""", timeout=60)
    assert result.returncode == 0, result.stderr
    lines = result.lines("CAUGHT")
    assert len(lines) == 3 and all(": ValueError: row 150 is bad" in line for line in lines), lines
    assert len({line.split(" ", 2)[2] for line in lines}) == 1  # the same message on every rank
