"""Checkpoints under mpiexec: a 2-rank run that crashes on every rank and resumes ends bitwise
where the uninterrupted 2-rank run ends (and, resumed on 1 rank, within rounding); errors reach
every rank with the same message."""

import ast
import inspect
import re

import numpy as np
import pytest

from fastdp import checkpoint, synthetic
from fastdp.train import fit

pytestmark = pytest.mark.mpi

N_ROWS, N_FEATURES = 3_001, 5
SOLVERS = {
    "gd": dict(solver="gd", momentum=0.9, learning_rate=0.1, max_iter=40),
    "sgd": dict(solver="sgd", momentum=0.5, batch_size=128, learning_rate=0.05, max_iter=3),
    "adamw": dict(solver="adamw", batch_size=100, learning_rate=0.02, max_iter=2,
                  schedule="cosine"),
}
CRASH_AT, EVERY = 29, 4  # every run is resumed from its step 28


def shard(kind, rows=None):
    """Rows `rows` (None: all) of the regression data, dense or CSR."""
    import scipy.sparse as sp

    X, y = synthetic.linear_regression(N_ROWS, N_FEATURES, rows, seed=5)
    return (sp.csr_matrix(np.where(np.abs(X) > 0.8, X, 0.0)) if kind == "csr" else X), y


def prelude(directory) -> str:
    return inspect.getsource(shard) + f"""
import numpy as np
from fastdp import partition, synthetic, world
from fastdp.train import NonFiniteError, fit
comm = world()
N_ROWS, N_FEATURES, SOLVERS = {N_ROWS}, {N_FEATURES}, {SOLVERS!r}
CRASH_AT, EVERY, DIRECTORY = {CRASH_AT}, {EVERY}, {str(directory)!r}
rows = partition.contiguous_range(N_ROWS, comm.size, comm.rank)

class Crash(Exception):
    pass

def crash(t, theta, objective):
    if t == CRASH_AT:
        raise Crash()

def say(*parts):  # collective print: rank 0 prints every rank's line, so none interleave
    lines = comm.allgather_obj(" ".join(str(p) for p in parts))
    if comm.rank == 0:
        print("\\n".join(lines), flush=True)
"""


def runs(result, tag: str) -> list:
    return [ast.literal_eval(line.split(" ", 2)[2]) for line in result.lines(f"{tag} ")]


@pytest.mark.parametrize("kind", ["dense", "csr"])
def test_crash_on_every_rank_and_resume_is_bitwise_the_uninterrupted_run(mpirun, tmp_path, kind):
    result = mpirun(2, prelude(tmp_path) + f"""
X, y = shard({kind!r}, rows)
for name, kwargs in SOLVERS.items():
    path = f"{{DIRECTORY}}/{{name}}.ckpt"
    whole = fit(X, y, tol=0, **kwargs)
    try:
        fit(X, y, tol=0, checkpoint=path, checkpoint_every=EVERY, callback=crash, **kwargs)
    except Crash:
        pass
    resumed = fit(X, y, tol=0, resume=path, **kwargs)
    say("RUN-" + name, comm.rank, [[np.append(r.coef, r.intercept).tolist(),
                                    r.loss_history.tolist(), r.n_iter] for r in (whole, resumed)])
""", timeout=240)
    assert result.returncode == 0, result.stderr
    for name, kwargs in SOLVERS.items():
        got = runs(result, f"RUN-{name}")
        assert len(got) == 2, result.stdout + result.stderr
        for whole, resumed in got:
            assert resumed == got[0][0] and whole == got[0][0]  # float lists: == is bitwise
        saved = checkpoint.read(tmp_path / f"{name}.ckpt")
        assert saved.n_ranks == 2 and saved.partition == [[0, 1501], [1501, N_ROWS]]
        assert saved.state.step == 28
        X, y = shard(kind)  # the same checkpoint resumed on 1 rank: the same run up to rounding
        serial = fit(X, y, tol=0, resume=tmp_path / f"{name}.ckpt", **kwargs)
        np.testing.assert_allclose(np.append(serial.coef, serial.intercept), got[0][0][0],
                                   rtol=1e-12, atol=1e-14)


def test_errors_reach_every_rank_with_the_same_message(mpirun, tmp_path):
    result = mpirun(2, prelude(tmp_path) + """
X, y = shard("dense", rows)
path = f"{DIRECTORY}/run.ckpt"
try:
    fit(X, y, solver="gd", learning_rate=10.0, max_iter=1000, tol=0, checkpoint=path,
        checkpoint_every=5)
except NonFiniteError as exc:
    say("NONFINITE", comm.rank, repr(str(exc)))
try:
    fit(X, y, solver="gd", learning_rate=1.0, max_iter=1000, tol=0, resume=path)
except ValueError as exc:
    say("MISMATCH", comm.rank, repr(str(exc)))
try:
    fit(X, y, solver="gd", resume=f"{DIRECTORY}/none.ckpt")
except FileNotFoundError as exc:
    say("MISSING", comm.rank, repr(str(exc)))
""", timeout=120)
    assert result.returncode == 0, result.stderr
    for tag, message in [
            ("NONFINITE", r"the loss became inf at step \d+; the last good checkpoint is "
                          r".*run\.ckpt \(step \d+\); try a smaller learning_rate than 10\.0"),
            ("MISMATCH", r"cannot resume from .*run\.ckpt: it was written by a different run "
                         r"\(learning_rate is 10\.0 there, 1\.0 here\)"),
            ("MISSING", r".*none\.ckpt: no such checkpoint file")]:
        messages = runs(result, tag)
        assert len(messages) == 2 and messages[0] == messages[1], result.stdout + result.stderr
        assert re.fullmatch(message, messages[0]), messages[0]
    step = int(re.search(r"\(step (\d+)\)", runs(result, "NONFINITE")[0]).group(1))
    assert checkpoint.read(tmp_path / "run.ckpt").state.step == step


def test_checkpoint_seconds_follows_rank_0s_clock_on_every_rank(mpirun, tmp_path):
    """Rank 0's verdict travels in the step's reduction (blocking, or MPI_Iallreduce with
    overlap), so both ranks write at the same steps: no rank waits alone in a collective."""
    result = mpirun(2, prelude(tmp_path) + """
X, y = shard("dense", rows)
for overlap in (False, True):
    path = f"{DIRECTORY}/seconds-{overlap}.ckpt"
    r = fit(X, y, tol=0, checkpoint=path, checkpoint_seconds=1e-9, overlap=overlap,
            **SOLVERS["sgd"])
    whole = fit(X, y, tol=0, **SOLVERS["sgd"])
    say("SECONDS", comm.rank, [overlap, bool(np.array_equal(r.coef, whole.coef))])
""", timeout=120)
    assert result.returncode == 0, result.stderr
    assert sorted(runs(result, "SECONDS")) == [[False, True]] * 2 + [[True, True]] * 2
    for overlap in (False, True):
        assert checkpoint.read(tmp_path / f"seconds-{overlap}.ckpt").state.step == 71  # the last


def test_kill_9_in_the_middle_of_a_checkpoint_write_leaves_the_previous_one_whole(mpirun, tmp_path):
    """Rank 0 is SIGKILLed after writing part of its third checkpoint (to the temporary file):
    the job ends, the checkpoint of the second write is whole and where it was, and resuming it
    (on a fresh 2-rank job) ends bitwise where the uninterrupted run ends."""
    kwargs = SOLVERS["gd"]
    killed = mpirun(2, prelude(tmp_path) + """
import os, signal
import numpy as np
X, y = shard("dense", rows)
real_savez, writes = np.savez, []

def savez_then_die(f, **arrays):  # the third write: a part of the archive, then kill -9
    writes.append(1)
    if len(writes) < 3:
        return real_savez(f, **arrays)
    f.write(b"PK\\x03\\x04 the first bytes of an archive")
    f.flush()
    os.fsync(f.fileno())
    os.kill(os.getpid(), signal.SIGKILL)

if comm.rank == 0:
    np.savez = savez_then_die
fit(X, y, tol=0, checkpoint=f"{DIRECTORY}/run.ckpt", checkpoint_every=EVERY, **SOLVERS["gd"])
say("NOT-KILLED", comm.rank)
""", timeout=120)
    assert killed.returncode != 0 and not killed.lines("NOT-KILLED"), killed.stdout + killed.stderr
    names = sorted(p.name for p in tmp_path.iterdir())
    assert "run.ckpt" in names and "run.ckpt.1" in names, names
    partial = [n for n in names if n.endswith(".tmp")]
    assert len(partial) == 1 and (tmp_path / partial[0]).stat().st_size > 0  # the write it died in
    saved = checkpoint.read(tmp_path / "run.ckpt")
    assert saved.state.step == 2 * EVERY and checkpoint.read(tmp_path / "run.ckpt.1").state.step == EVERY

    resumed = mpirun(2, prelude(tmp_path) + """
X, y = shard("dense", rows)
whole = fit(X, y, tol=0, **SOLVERS["gd"])
resumed = fit(X, y, tol=0, resume=f"{DIRECTORY}/run.ckpt", **SOLVERS["gd"])
say("RESUMED", comm.rank, [np.append(r.coef, r.intercept).tolist() for r in (whole, resumed)])
""", timeout=120)
    assert resumed.returncode == 0, resumed.stderr
    got = runs(resumed, "RESUMED")
    assert len(got) == 2 and all(whole == again == got[0][0] for whole, again in got)
    assert kwargs["max_iter"] > 2 * EVERY
