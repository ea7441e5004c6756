"""fastdp.dense_steps: one rank's mini-batch SGD epoch over dense rows in one compiled loop.

A callback makes a fit take the training loop's own steps (it must see the parameters after every
step), which is how these tests get the model to compare with."""

import re

import numpy as np
import pytest

from fastdp import dense_steps, lazy_steps, optim, synthetic, train
from fastdp.comm import world
from fastdp.train import NonFiniteError, fit


def data(loss, rows=2000, n=12, dtype=np.float64, seed=0):
    X, y = synthetic.linear_regression(rows, n, seed=seed)
    if loss != "squared":
        y = np.where(y > np.median(y), 1.0, -1.0)
    return X.astype(dtype), y


def loop_steps(*args, **kwargs):
    """The same fit taking the training loop's own steps."""
    return fit(*args, callback=lambda step, theta, objective: None, **kwargs)


def counting(monkeypatch):
    """A list that gets the number of steps each DenseSteps.run call took."""
    calls = []
    run = dense_steps.DenseSteps.run

    def counted(self, theta, order, batch_size, rates):
        done, weighted = run(self, theta, order, batch_size, rates)
        calls.append(done)
        return done, weighted

    monkeypatch.setattr(dense_steps.DenseSteps, "run", counted)
    return calls


@pytest.mark.parametrize("loss", ["squared", "logistic", "hinge", "squared_hinge"])
@pytest.mark.parametrize("kwargs", [
    {"batch_size": 32, "alpha": 1e-3},
    {"batch_size": 1, "alpha": 0.0, "max_iter": 2, "backend": "numba"},
    {"batch_size": 37, "alpha": 0.01, "schedule": "invscaling", "fit_intercept": False},
    {"batch_size": 500, "alpha": 0.1, "schedule": "cosine", "learning_rate": 0.02},
    {"batch_size": 5000, "alpha": 1e-3},  # one batch an epoch: no compiled steps
    {"batch_size": 32, "alpha": 1e-3, "momentum": 0.9},
    {"batch_size": 16, "alpha": 1e-2, "momentum": 0.5, "nesterov": True, "l1_ratio": 0.5},
    {"batch_size": 32, "alpha": 1e-2, "l1_ratio": 1.0, "schedule": "invscaling"},
])
def test_compiled_steps_give_the_loops_model(monkeypatch, loss, kwargs):
    X, y = data(loss)
    kwargs = {"loss": loss, "solver": "sgd", "max_iter": 4, "tol": 0, "learning_rate": 0.05,
              **kwargs}
    calls = counting(monkeypatch)
    compiled = fit(X, y, **kwargs)
    steps_per_epoch = -(-X.shape[0] // kwargs["batch_size"])
    assert calls == ([steps_per_epoch - 1] * kwargs["max_iter"] if steps_per_epoch > 1 else [])
    reference = loop_steps(X, y, **kwargs)
    assert len(calls) == (kwargs["max_iter"] if steps_per_epoch > 1 else 0)  # none more
    np.testing.assert_allclose(compiled.coef, reference.coef, rtol=1e-11, atol=1e-13)
    assert compiled.intercept == pytest.approx(reference.intercept, rel=1e-11, abs=1e-13)
    np.testing.assert_allclose(compiled.loss_history, reference.loss_history, rtol=1e-11)
    assert compiled.grad_norm == pytest.approx(reference.grad_norm, rel=1e-9)
    if not kwargs.get("fit_intercept", True):
        assert compiled.intercept == 0.0


def test_float32_rows_sum_in_float64():
    """The compiled kernels sum a group of float32 rows' gradient in float32, this loop each row's
    in float64: the models agree to float32's precision."""
    X, y = data("logistic", dtype=np.float32)
    kwargs = {"loss": "logistic", "solver": "sgd", "batch_size": 32, "max_iter": 3, "tol": 0,
              "alpha": 1e-3}
    np.testing.assert_allclose(fit(X, y, **kwargs).coef, loop_steps(X, y, **kwargs).coef,
                               rtol=1e-6, atol=1e-8)


def test_early_stopping_and_the_same_model_from_run_to_run():
    X, y = data("logistic", seed=3)
    kwargs = {"loss": "logistic", "solver": "sgd", "batch_size": 20, "max_iter": 100,
              "tol": 1e-4, "n_iter_no_change": 2, "alpha": 1e-2, "learning_rate": 0.05}
    first, second, reference = fit(X, y, **kwargs), fit(X, y, **kwargs), loop_steps(X, y, **kwargs)
    assert np.array_equal(first.coef, second.coef) and first.intercept == second.intercept
    assert first.converged and first.n_iter == reference.n_iter < 100
    np.testing.assert_allclose(first.coef, reference.coef, rtol=1e-10, atol=1e-13)


@pytest.mark.parametrize("change", [
    {"backend": "numpy"},
    {"deterministic": True}, {"rebalance": True}, {"solver": "adam"},
    {"batch_size": dense_steps.SERIAL_VALUES // 12 + 1},  # too much work for one thread
])
def test_loop_steps_where_the_compiled_loop_does_not_apply(monkeypatch, change):
    X, y = data("hinge", rows=5000)
    calls = counting(monkeypatch)
    fit(X, y, **{"loss": "hinge", "solver": "sgd", "batch_size": 64, "max_iter": 1,
                 "alpha": 0.1, "learning_rate": 0.05, "tol": 0, **change})
    assert calls == []


def test_applies_to_one_rank_dense_plain_sgd_small_batches():
    X, y = data("hinge")
    objective = train.Objective(X, y, "hinge", 1, optim.Penalty(0.1, 0.0, 12), True, "cython",
                                world(), [range(2000)])
    rule = optim.SGD(13)
    default = {"callback": None, "checkpointing": False}
    assert dense_steps.applies(objective, rule, 64, **default)
    assert not dense_steps.applies(objective, rule, dense_steps.SERIAL_VALUES, **default)
    assert not dense_steps.applies(objective, rule, 64, **{**default, "checkpointing": True})
    assert not dense_steps.applies(objective, rule, 64, **{**default, "callback": print})
    assert not lazy_steps.applies(objective, rule, 0.1, **default)  # dense rows: not lazy
    softmax = train.Objective(X, (y > 0).astype(np.intp), "softmax", 2,
                              optim.Penalty(0.1, 0.0, 24), True, "cython", world(), [range(2000)])
    assert not dense_steps.applies(softmax, optim.SGD(26), 64, **default)  # scalar losses only


def test_a_diverging_run_raises_on_the_step_the_loop_does():
    X, y = data("squared", seed=6)
    kwargs = {"loss": "squared", "solver": "sgd", "batch_size": 16, "max_iter": 3, "tol": 0,
              "learning_rate": 50.0}
    with pytest.raises(NonFiniteError) as compiled:
        fit(X * 100, y, **kwargs)
    with pytest.raises(NonFiniteError) as reference:
        loop_steps(X * 100, y, **kwargs)
    assert str(compiled.value) == str(reference.value)
    assert re.match(r"the (loss|gradient) became (inf|nan) at step \d+ \(epoch 0, batch \d+\)",
                    str(compiled.value))


def test_chunks_of_gathered_rows_give_bitwise_the_same_steps(monkeypatch):
    """Rows are gathered a chunk of batches at a time; a chunk of one batch and a chunk of all
    take the same arithmetic in the same order."""
    X, y = data("squared", seed=8)
    kwargs = {"loss": "squared", "solver": "sgd", "batch_size": 10, "max_iter": 2, "tol": 0,
              "alpha": 1e-3, "schedule": "invscaling"}
    calls = counting(monkeypatch)
    whole = fit(X, y, **kwargs)
    monkeypatch.setattr(train.Batches, "CHUNK_BYTES", 1)  # one batch a chunk
    pieces = fit(X, y, **kwargs)
    assert calls == [199] * 4  # 200 batches an epoch, the last the loop's
    assert np.array_equal(whole.coef, pieces.coef) and whole.intercept == pieces.intercept
    assert np.array_equal(whole.loss_history, pieces.loss_history)
