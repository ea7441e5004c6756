"""fastdp.checkpoint: a run interrupted and resumed ends bitwise where the uninterrupted run ends;
checkpoints rotate, are atomic, refuse another run's config; the non-finite guard keeps the last
good one."""

import os
import re

import numpy as np
import pytest
import scipy.sparse as sp

from fastdp import checkpoint, synthetic
from fastdp.cli import main
from fastdp.estimators import LinearSVC, LogisticRegression
from fastdp.train import NonFiniteError, fit

N_ROWS = 1_000
SOLVERS = {  # full batch: 10 steps; mini-batch: 3 epochs of 8 batches
    "gd": {"solver": "gd", "momentum": 0.9, "max_iter": 10, "learning_rate": 0.1},
    "sgd": {"solver": "sgd", "momentum": 0.5, "batch_size": 128, "max_iter": 3,
            "learning_rate": 0.05, "schedule": "invscaling"},
    "adam": {"solver": "adam", "max_iter": 10, "learning_rate": 0.05},
    "adamw": {"solver": "adamw", "batch_size": 128, "max_iter": 3, "learning_rate": 0.05,
              "schedule": "cosine", "alpha": 0.01, "l1_ratio": 0.5},
}
CRASH_AT = {"gd": 7, "sgd": 13, "adam": 7, "adamw": 17}  # 17: epoch 2, batch 1


class Crash(Exception):
    """What a callback raises to play a process killed in the middle of a run."""


def data(sparse: bool):
    X, y = synthetic.linear_regression(N_ROWS, 4, seed=3)
    if sparse:
        X = sp.csr_matrix(X * (np.random.default_rng(1).random(X.shape) < 0.5))
    return X, y


def crash_at(step: int):
    def callback(t, theta, objective):
        if t == step:
            raise Crash(f"killed at step {t}")
    return callback


def assert_same_run(resumed, uninterrupted):
    assert np.array_equal(resumed.coef, uninterrupted.coef)
    assert np.array_equal(resumed.intercept, uninterrupted.intercept)
    assert np.array_equal(resumed.loss_history, uninterrupted.loss_history)
    assert resumed.n_iter == uninterrupted.n_iter
    assert resumed.converged == uninterrupted.converged
    assert resumed.grad_norm == uninterrupted.grad_norm


def files(directory) -> list[str]:
    return sorted(os.listdir(directory))


@pytest.mark.parametrize("sparse", [False, True], ids=["dense", "csr"])
@pytest.mark.parametrize("name", list(SOLVERS))
def test_crashed_and_resumed_run_is_bitwise_the_uninterrupted_one(tmp_path, name, sparse):
    X, y = data(sparse)
    kwargs = {"tol": 0, **SOLVERS[name]}
    steps = []
    uninterrupted = fit(X, y, callback=lambda t, theta, f: steps.append(theta.copy()), **kwargs)
    path = tmp_path / "run.ckpt"
    with pytest.raises(Crash):
        fit(X, y, checkpoint=path, checkpoint_every=3, callback=crash_at(CRASH_AT[name]),
            **kwargs)
    saved = checkpoint.read(path)
    step = CRASH_AT[name] // 3 * 3
    assert saved.state.step == step and np.array_equal(saved.state.theta, steps[step])
    assert files(tmp_path) == ["run.ckpt", "run.ckpt.1"]
    assert checkpoint.read(f"{path}.1").state.step == step - 3
    seen = []
    resumed = fit(X, y, resume=path, callback=lambda t, theta, f: seen.append(t), **kwargs)
    assert seen[0] == step and seen[-1] == len(steps) - 1  # the steps go on from the checkpoint
    assert_same_run(resumed, uninterrupted)


@pytest.mark.parametrize("name", ["sgd", "adamw"])
def test_mini_batch_checkpoint_records_epoch_batch_and_randomness(tmp_path, name):
    X, y = data(False)
    path = tmp_path / "run.ckpt"
    with pytest.raises(Crash):
        fit(X, y, tol=0, checkpoint=path, checkpoint_every=5, callback=crash_at(12),
            random_state=7, **SOLVERS[name])
    saved = checkpoint.read(path)
    assert (saved.state.step, saved.state.epoch, saved.state.batch) == (10, 1, 2)
    assert len(saved.state.history) == 1 and saved.state.epoch_loss > 0
    assert saved.config["random_state"] == 7 and saved.config["batch_size"] == 128
    assert saved.n_ranks == 1 and saved.partition == [[0, N_ROWS]]
    assert sorted(saved.state.rule) == (["velocity"] if name == "sgd" else ["m", "t", "v"])


@pytest.mark.parametrize("name,every,short,saved,smaller,at", [
    ("gd", 5, 5, 5, 4, "step 5"), ("sgd", 8, 2, 8, 1, "epoch 1")])
def test_a_shorter_run_continues_with_a_larger_max_iter(tmp_path, name, every, short, saved,
                                                        smaller, at):
    """max_iter may grow on resume (not under the cosine schedule, whose rates depend on it)."""
    X, y = data(False)
    kwargs = {"tol": 0, **SOLVERS[name]}
    # with checkpoint options, as the run resumed (without, one rank's SGD takes compiled steps)
    longer = fit(X, y, checkpoint=tmp_path / "longer.ckpt", checkpoint_every=every, **kwargs)
    path = tmp_path / "run.ckpt"
    fit(X, y, checkpoint=path, checkpoint_every=every, **{**kwargs, "max_iter": short})
    assert checkpoint.read(path).state.step == saved
    assert_same_run(fit(X, y, resume=path, **kwargs), longer)
    with pytest.raises(ValueError, match=rf"cannot resume from .*run\.ckpt with "
                                         rf"max_iter={smaller}: it is at {at} already; resume "
                                         rf"with a larger max_iter"):
        fit(X, y, resume=path, **{**kwargs, "max_iter": smaller})


def test_keeps_the_newest_n_under_numbered_names(tmp_path):
    X, y = data(False)
    path = tmp_path / "run.ckpt"
    fit(X, y, tol=0, checkpoint=path, checkpoint_every=2, checkpoint_keep=3, **SOLVERS["gd"])
    assert files(tmp_path) == ["run.ckpt", "run.ckpt.1", "run.ckpt.2"]
    assert [checkpoint.read(f"{path}{suffix}").state.step
            for suffix in ("", ".1", ".2")] == [10, 8, 6]
    other = tmp_path / "one"
    os.mkdir(other)
    fit(X, y, tol=0, checkpoint=other / "run.ckpt", checkpoint_every=2, checkpoint_keep=1,
        **SOLVERS["gd"])
    assert files(other) == ["run.ckpt"]


def test_checkpoint_seconds_writes_on_rank_0s_clock(tmp_path):
    X, y = data(False)
    path = tmp_path / "run.ckpt"
    fit(X, y, tol=0, checkpoint=path, checkpoint_seconds=1e-9, **SOLVERS["gd"])
    assert files(tmp_path) == ["run.ckpt", "run.ckpt.1"]
    assert checkpoint.read(path).state.step == 10  # the time was up at every step
    later = tmp_path / "later.ckpt"
    fit(X, y, tol=0, checkpoint=later, checkpoint_seconds=3600, **SOLVERS["gd"])
    assert not os.path.exists(later)


def test_a_write_that_fails_midway_leaves_the_previous_checkpoints(tmp_path, monkeypatch):
    X, y = data(False)
    path = tmp_path / "run.ckpt"
    real_savez = np.savez

    def fail_midway(f, **arrays):
        f.write(b"PK\x03\x04 the first bytes of an archive")
        raise OSError(28, "No space left on device")

    def callback(t, theta, objective):  # the checkpoints of steps 2 and 4 are written
        if t == 5:
            monkeypatch.setattr(np, "savez", fail_midway)

    with pytest.raises(OSError, match=r"cannot write the checkpoint .*run\.ckpt at step 6 "
                                      r"\(.*No space left on device\); the previous one is intact"):
        fit(X, y, tol=0, checkpoint=path, checkpoint_every=2, callback=callback,
            **SOLVERS["gd"])
    monkeypatch.setattr(np, "savez", real_savez)
    assert files(tmp_path) == ["run.ckpt", "run.ckpt.1"]  # no temporary left, nothing rotated
    assert checkpoint.read(path).state.step == 4
    assert checkpoint.read(f"{path}.1").state.step == 2
    assert_same_run(fit(X, y, tol=0, resume=path, **SOLVERS["gd"]),
                    fit(X, y, tol=0, **SOLVERS["gd"]))


@pytest.mark.parametrize("change,field", [
    ({"loss": "logistic"}, "loss"),
    ({"solver": "adam", "momentum": 0.0}, "solver"),
    ({"learning_rate": 0.2}, "learning_rate"),
    ({"alpha": 0.1}, "alpha"),
    ({"random_state": 1}, "random_state"),
])
def test_resuming_another_runs_checkpoint_names_the_field(tmp_path, change, field):
    X, y = data(False)
    path = tmp_path / "run.ckpt"
    fit(X, y, tol=0, checkpoint=path, checkpoint_every=5, **SOLVERS["gd"])
    if change.get("loss") == "logistic":
        y = np.where(y > np.median(y), 1.0, -1.0)
    with pytest.raises(ValueError, match=rf"cannot resume from .*run\.ckpt: it was written by a "
                                         rf"different run \(.*{field} is "):
        fit(X, y, tol=0, resume=path, **{**SOLVERS["gd"], **change})


def test_resuming_on_other_data_shapes_or_cosine_lengths_is_refused(tmp_path):
    X, y = data(False)
    path = tmp_path / "run.ckpt"
    fit(X, y, tol=0, checkpoint=path, checkpoint_every=5, **SOLVERS["adamw"])
    kwargs = {"tol": 0, "resume": path, **SOLVERS["adamw"]}
    with pytest.raises(ValueError, match=r"n_features is 4 there, 5 here"):
        fit(np.column_stack([X, X[:, 0]]), y, **kwargs)
    with pytest.raises(ValueError, match=r"n_rows is 1000 there, 999 here"):
        fit(X[1:], y[1:], **kwargs)
    with pytest.raises(ValueError, match=r"max_iter is 3 there, 4 here"):
        fit(X, y, **{**kwargs, "max_iter": 4})
    fit(X, y, **{**kwargs, "tol": 1e-3, "backend": "numpy"})  # tol and backend may differ


@pytest.mark.parametrize("kwargs,error,message", [
    ({"checkpoint": "c.ckpt"}, ValueError, r"checkpoint='c\.ckpt' needs checkpoint_every or "
                                           r"checkpoint_seconds"),
    ({"checkpoint_every": 3}, ValueError, r"checkpoint_every and checkpoint_seconds need "
                                          r"checkpoint=path"),
    ({"checkpoint": "c", "checkpoint_every": 0}, ValueError, r"checkpoint_every must be an "
                                                             r"integer >= 1 or None, got 0"),
    ({"checkpoint": "c", "checkpoint_seconds": -1.0}, ValueError,
     r"checkpoint_seconds must be a finite number > 0 or None, got -1\.0"),
    ({"checkpoint": "c", "checkpoint_every": 1, "checkpoint_keep": 0}, ValueError,
     r"checkpoint_keep must be an integer >= 1, got 0"),
    ({"checkpoint": 3, "checkpoint_every": 1}, ValueError, r"checkpoint must be a file path"),
    ({"solver": "lbfgs", "checkpoint": "c", "checkpoint_every": 1}, ValueError,
     r"checkpoint and resume need a first-order solver \['gd', 'sgd', 'adam', 'adamw'\], got "
     r"solver='lbfgs': scipy's L-BFGS-B cannot save or restore its memory"),
    ({"solver": "lbfgs", "resume": "c"}, ValueError, r"need a first-order solver"),
    ({"resume": "missing.ckpt"}, FileNotFoundError, r"missing\.ckpt: no such checkpoint file"),
])
def test_bad_checkpoint_options(tmp_path, monkeypatch, kwargs, error, message):
    monkeypatch.chdir(tmp_path)
    X, y = data(False)
    with pytest.raises(error, match=message):
        fit(X, y, **kwargs)
    assert files(tmp_path) == []


def test_a_file_that_is_no_checkpoint_is_named(tmp_path):
    X, y = data(False)
    bad = tmp_path / "bad.ckpt"
    bad.write_bytes(b"garbage")
    with pytest.raises(ValueError, match=r"bad\.ckpt: not a readable fastdp checkpoint"):
        fit(X, y, resume=bad)
    np.savez(tmp_path / "other.npz", metadata=np.array('{"format": "fastdp-model"}'))
    with pytest.raises(ValueError, match=r"other\.npz: not a fastdp checkpoint"):
        checkpoint.read(tmp_path / "other.npz")


def test_the_non_finite_guard_keeps_the_last_good_checkpoint(tmp_path):
    X, y = data(False)
    path = tmp_path / "run.ckpt"
    steps = []
    with pytest.raises(NonFiniteError) as info:
        fit(X, y, solver="gd", learning_rate=10.0, max_iter=1000, tol=0, checkpoint=path,
            checkpoint_every=5, callback=lambda t, theta, f: steps.append(t))
    bad = len(steps)  # the step whose reduced loss was not finite never reached the callback
    good = (bad - 1) // 5 * 5
    assert str(info.value) == (f"the loss became inf at step {bad}; the last good checkpoint is "
                               f"{path} (step {good}); try a smaller learning_rate than 10.0")
    assert isinstance(info.value, FloatingPointError) and isinstance(info.value, ValueError)
    saved = checkpoint.read(path)
    assert saved.state.step == good and np.all(np.isfinite(saved.state.theta))


def test_the_non_finite_guard_names_epoch_and_batch_and_the_resumed_checkpoint(tmp_path):
    X, y = data(False)
    path = tmp_path / "run.ckpt"
    kwargs = dict(solver="sgd", batch_size=100, learning_rate=30.0, max_iter=50, tol=0,
                  n_iter_no_change=50)  # the objective grows: do not stop on that
    with pytest.raises(NonFiniteError) as info:
        fit(X, y, checkpoint=path, checkpoint_every=3, **kwargs)
    found = re.fullmatch(r"the loss became inf at step (\d+) \(epoch (\d+), batch (\d+)\); the "
                         r"last good checkpoint is .*run\.ckpt \(step (\d+)\); try a smaller "
                         r"learning_rate than 30\.0", str(info.value))
    step, epoch, batch, good = map(int, found.groups())
    assert step == 10 * epoch + batch and good == (step - 1) // 3 * 3
    assert checkpoint.read(path).state.step == good
    with pytest.raises(NonFiniteError, match=rf"at step {step} .*the last good checkpoint is "
                                             rf".*run\.ckpt \(step {good}\)"):
        fit(X, y, resume=path, **kwargs)  # nothing newer written: the resumed one is named


def test_estimators_take_checkpoint_options(tmp_path):
    X, y = data(False)
    labels = (y > np.median(y)).astype(int)
    kwargs = dict(solver="sgd", batch_size=64, max_iter=4, tol=0)
    # with the same checkpoint options (without, one rank's plain SGD takes compiled steps)
    uninterrupted = LogisticRegression(**kwargs).fit(X, labels, checkpoint=tmp_path / "u.ckpt",
                                                     checkpoint_every=16)
    path = tmp_path / "run.ckpt"
    LogisticRegression(**{**kwargs, "max_iter": 2}).fit(X, labels, checkpoint=path,
                                                        checkpoint_every=16)
    resumed = LogisticRegression(**kwargs).fit(X, labels, resume=path)
    assert np.array_equal(resumed.coef_, uninterrupted.coef_)
    with pytest.raises(ValueError, match=r"LinearSVC fits one model per class for the 3 classes"):
        LinearSVC(solver="sgd").fit(X, np.arange(N_ROWS) % 3, checkpoint=path,
                                    checkpoint_every=1)


def test_cli_train_checkpoints_and_resumes(tmp_path, capsys):
    X, y = data(False)
    np.save(tmp_path / "d.npy", np.column_stack([X, y]))
    argv = ["train", "--data", str(tmp_path / "d.npy"), "--model", "linear", "--solver", "sgd",
            "--batch-size", "100", "--tol", "0"]
    path = str(tmp_path / "run.ckpt")
    assert main(argv + ["--max-iter", "4", "--output", str(tmp_path / "full.fdp"),  # (as above)
                        "--checkpoint", str(tmp_path / "full.ckpt"),
                        "--checkpoint-every", "10"]) == 0
    assert main(argv + ["--max-iter", "2", "--output", str(tmp_path / "half.fdp"),
                        "--checkpoint", path, "--checkpoint-every", "10",
                        "--checkpoint-keep", "1"]) == 0
    assert main(argv + ["--max-iter", "4", "--output", str(tmp_path / "resumed.fdp"),
                        "--resume", path]) == 0
    capsys.readouterr()
    from fastdp import load
    assert np.array_equal(load(tmp_path / "resumed.fdp").coef_, load(tmp_path / "full.fdp").coef_)
    assert not os.path.exists(f"{path}.1")


@pytest.mark.parametrize("options,message", [
    (["--solver", "gd", "--learning-rate", "10", "--max-iter", "1000"],
     r"^fastdp: error: the loss became inf at step \d+; try a smaller learning_rate than 10\.0$"),
    (["--checkpoint", "c.ckpt", "--checkpoint-every", "2"],
     r"^fastdp: error: checkpoint and resume need a first-order solver .*solver='lbfgs'"),
    (["--solver", "gd", "--resume", "none.ckpt"],
     r"^fastdp: error: none\.ckpt: no such checkpoint file$"),
])
def test_cli_train_errors_exit_2_with_one_line(tmp_path, capsys, monkeypatch, options, message):
    monkeypatch.chdir(tmp_path)
    X, y = data(False)
    np.save("d.npy", np.column_stack([X, y]))
    assert main(["train", "--data", "d.npy", "--model", "linear", "--output", "m.fdp"]
                + options) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and re.search(message, err.strip()), err
    assert not os.path.exists("m.fdp")


def test_a_write_removes_the_temporaries_of_writes_killed_midway(tmp_path):
    X, y = data(False)
    path = tmp_path / "run.ckpt"
    killed = [".run.ckpt.0123456789ab.tmp", ".run.ckpt.1.abcdef012345.tmp"]  # atomic_file's, _shift's
    others = [".other.ckpt.0123456789ab.tmp", ".run.ckpt.notours.tmp", "run.ckpt.0123456789ab.tmp"]
    for name in killed + others:
        (tmp_path / name).write_bytes(b"PK\x03\x04 part of an archive")
    fit(X, y, tol=0, checkpoint=path, checkpoint_every=2, **SOLVERS["gd"])
    assert files(tmp_path) == sorted(["run.ckpt", "run.ckpt.1", *others])
