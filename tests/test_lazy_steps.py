"""fastdp.lazy_steps: mini-batch SGD over CSR rows on one rank in O(a batch's non-zeros) a step.

A fit takes lazy steps where `applies` says so; a callback makes it take the dense ones (the
callback must see every parameter after every step), which is how these tests get the dense
model to compare with."""

import re

import numpy as np
import pytest
import scipy.sparse as sp

from fastdp import lazy_steps, optim, train
from fastdp.comm import world
from fastdp.train import NonFiniteError, fit


def hashed(rows=500, n=2000, nnz=12, seed=0, loss="hinge"):
    """Wide CSR rows like hashed text: nnz columns a row out of n, some rows empty."""
    rng = np.random.default_rng(seed)
    counts = rng.integers(0, 2 * nnz, rows)
    indptr = np.concatenate([[0], np.cumsum(counts)])
    indices = np.concatenate([np.sort(rng.choice(n, c, replace=False)) for c in counts])
    X = sp.csr_matrix((rng.standard_normal(indptr[-1]), indices, indptr), shape=(rows, n))
    w = rng.standard_normal(n)
    margin = X @ w
    if loss == "squared":
        return X, margin + 0.1 * rng.standard_normal(rows)
    return X, np.where(margin > 0, 1.0, -1.0)


def dense_too(*args, **kwargs):
    """The same fit taking dense steps."""
    return fit(*args, callback=lambda step, theta, objective: None, **kwargs)


def counting(monkeypatch):
    """A list that gets each lazy step's rate, whether `run` (in bulk) or `step` takes it."""
    calls = []
    step, run = lazy_steps.LazySteps.step, lazy_steps.LazySteps.run

    def counted_run(self, theta, order, batch_size, rates):
        done, weighted = run(self, theta, order, batch_size, rates)
        calls.extend(rates[:done].tolist())
        return done, weighted

    monkeypatch.setattr(lazy_steps.LazySteps, "step",
                        lambda self, theta, lr: calls.append(lr) or step(self, theta, lr))
    monkeypatch.setattr(lazy_steps.LazySteps, "run", counted_run)
    return calls


@pytest.mark.parametrize("loss", ["squared", "logistic", "hinge", "squared_hinge"])
@pytest.mark.parametrize("kwargs", [
    {"batch_size": 32, "alpha": 1e-3},
    {"batch_size": 1, "alpha": 0.0, "max_iter": 2},
    {"batch_size": 37, "alpha": 0.01, "schedule": "invscaling", "fit_intercept": False},
    {"batch_size": 64, "alpha": 0.1, "schedule": "cosine", "learning_rate": 0.5},
    {"batch_size": 1000, "alpha": 1e-3, "max_iter": 3},  # one batch an epoch
    {"batch_size": 32, "alpha": 0.02, "l1_ratio": 0.5},  # elastic net
    {"batch_size": 16, "alpha": 0.01, "l1_ratio": 1.0, "schedule": "invscaling"},  # L1 only
])
def test_lazy_steps_give_the_dense_steps_model(monkeypatch, loss, kwargs):
    X, y = hashed(loss=loss)
    kwargs = {"loss": loss, "solver": "sgd", "max_iter": 4, "tol": 0, "learning_rate": 0.05,
              **kwargs}
    calls = counting(monkeypatch)
    lazy = fit(X, y, **kwargs)
    steps_per_epoch = -(-X.shape[0] // kwargs["batch_size"])
    assert len(calls) == kwargs["max_iter"] * steps_per_epoch
    dense = dense_too(X, y, **kwargs)
    assert len(calls) == kwargs["max_iter"] * steps_per_epoch  # none more
    scale = np.abs(dense.coef).max()
    np.testing.assert_allclose(lazy.coef, dense.coef, rtol=1e-11, atol=1e-12 * scale)
    assert lazy.intercept == pytest.approx(dense.intercept, rel=1e-11, abs=1e-12)
    np.testing.assert_allclose(lazy.loss_history, dense.loss_history, rtol=1e-11)
    assert lazy.grad_norm == pytest.approx(dense.grad_norm, rel=1e-9)
    assert lazy.n_iter == dense.n_iter
    if not kwargs.get("fit_intercept", True):
        assert lazy.intercept == 0.0


def labelled(K, rows=500, n=2000, seed=0):
    """hashed()'s rows with K classes: the argmax of K random linear scores."""
    X, _ = hashed(rows=rows, n=n, seed=seed)
    scores = X @ np.random.default_rng(seed + 1).standard_normal((n, K))
    return X, np.argmax(scores, axis=1).astype(np.int64)


@pytest.mark.parametrize("K", [2, 5])
@pytest.mark.parametrize("kwargs", [
    {"batch_size": 32, "alpha": 1e-3},
    {"batch_size": 7, "alpha": 0.01, "schedule": "invscaling", "fit_intercept": False},
    {"batch_size": 40, "alpha": 0.02, "l1_ratio": 0.5},
    {"batch_size": 1000, "alpha": 1e-3},  # one batch an epoch
])
def test_softmax_lazy_steps_give_the_dense_steps_model(monkeypatch, K, kwargs):
    """Softmax over K classes: each column's K coefficients decay and shrink together."""
    X, y = labelled(K)
    kwargs = {"loss": "softmax", "n_classes": K, "solver": "sgd", "max_iter": 3, "tol": 0,
              "learning_rate": 0.1, **kwargs}
    calls = counting(monkeypatch)
    lazy = fit(X, y, **kwargs)
    assert len(calls) == 3 * -(-X.shape[0] // kwargs["batch_size"])
    dense = dense_too(X, y, **kwargs)
    scale = np.abs(dense.coef).max()
    assert lazy.coef.shape == dense.coef.shape == (X.shape[1], K)
    np.testing.assert_allclose(lazy.coef, dense.coef, rtol=1e-11, atol=1e-12 * scale)
    np.testing.assert_allclose(lazy.intercept, dense.intercept, rtol=1e-11, atol=1e-12)
    np.testing.assert_allclose(lazy.loss_history, dense.loss_history, rtol=1e-11)
    assert lazy.grad_norm == pytest.approx(dense.grad_norm, rel=1e-9)
    if kwargs.get("l1_ratio"):
        assert np.array_equal(lazy.coef == 0.0, dense.coef == 0.0) and np.any(dense.coef == 0.0)


def test_softmax_divergence_raises_on_the_step_the_dense_one_does():
    X, y = labelled(3, seed=6)
    X = sp.csr_matrix(X * 1e160)  # the first steps' coefficients ~1e160: margins overflow
    kwargs = {"loss": "softmax", "n_classes": 3, "solver": "sgd", "batch_size": 16,
              "max_iter": 3, "tol": 0, "learning_rate": 10.0, "alpha": 1e-4}
    with pytest.raises(NonFiniteError) as lazy:
        fit(X, y, **kwargs)
    with pytest.raises(NonFiniteError) as dense:
        dense_too(X, y, **kwargs)
    assert str(lazy.value) == str(dense.value)


@pytest.mark.parametrize("l1_ratio", [0.15, 1.0])
def test_the_l1_threshold_zeroes_the_coefficients_the_dense_steps_zero(l1_ratio):
    """Elastic net on hashed text, lazily: the same coefficients at exactly 0 as the dense
    steps (most columns never touched are shrunk to 0), the others equal up to rounding."""
    X, y = hashed(rows=400, n=5000, seed=8, loss="logistic")
    kwargs = {"loss": "logistic", "solver": "sgd", "batch_size": 20, "max_iter": 3, "tol": 0,
              "alpha": 0.02, "l1_ratio": l1_ratio, "learning_rate": 0.2}
    lazy, dense = fit(X, y, **kwargs), dense_too(X, y, **kwargs)
    zero = dense.coef == 0.0
    assert 0.5 * X.shape[1] < np.count_nonzero(zero) < X.shape[1]
    assert np.array_equal(lazy.coef == 0.0, zero)
    np.testing.assert_allclose(lazy.coef, dense.coef, rtol=1e-10, atol=1e-13)
    np.testing.assert_allclose(lazy.loss_history, dense.loss_history, rtol=1e-11)


def test_the_same_model_from_run_to_run_and_early_stopping_as_dense():
    X, y = hashed(seed=4)
    kwargs = {"loss": "logistic", "solver": "sgd", "batch_size": 50, "max_iter": 50, "tol": 3e-3,
              "n_iter_no_change": 2, "alpha": 1e-3, "learning_rate": 0.1}
    first, second, dense = fit(X, y, **kwargs), fit(X, y, **kwargs), dense_too(X, y, **kwargs)
    assert np.array_equal(first.coef, second.coef) and first.intercept == second.intercept
    assert first.converged and first.n_iter == dense.n_iter < 50
    np.testing.assert_allclose(first.coef, dense.coef, rtol=1e-10, atol=1e-13)


@pytest.mark.parametrize("l1_ratio", [0.0, 0.01])
def test_a_product_too_small_is_folded_into_the_coefficients(l1_ratio):
    """lr * l2 = 0.9 (0.891 with l1_ratio 0.01): the product falls by about 10x a step; 400 steps
    would take it to 1e-400, past the smallest float, were it not folded into the coefficients
    below TINY (with the threshold sum, which starts again from 0)."""
    X, y = hashed(rows=400, seed=5, loss="squared")
    kwargs = {"loss": "squared", "solver": "sgd", "batch_size": 1, "max_iter": 1, "tol": 0,
              "alpha": 9.0, "l1_ratio": l1_ratio, "learning_rate": 0.1}
    lazy, dense = fit(X, y, **kwargs), dense_too(X, y, **kwargs)
    assert np.all(np.isfinite(lazy.coef)) and np.any(lazy.coef != 0)
    np.testing.assert_allclose(lazy.coef, dense.coef, rtol=1e-9, atol=1e-300)


@pytest.mark.parametrize("alpha,learning_rate", [(1e-3, 0.05), (9.0, 0.1)])
def test_the_compiled_loop_takes_bitwise_the_steps_one_at_a_time(monkeypatch, alpha,
                                                                 learning_rate):
    """LazySteps.run steps all batches of an epoch but its last in one call; declining them all
    makes the loop take each with `gradient` and `step`: the same model, bit for bit."""
    X, y = hashed(rows=300, seed=7)
    kwargs = {"loss": "logistic", "solver": "sgd", "batch_size": 7, "max_iter": 3, "tol": 0,
              "alpha": alpha, "learning_rate": learning_rate, "schedule": "invscaling"}
    bulk = fit(X, y, **kwargs)
    monkeypatch.setattr(lazy_steps.LazySteps, "run", lambda self, *args: (0, 0.0))
    single = fit(X, y, **kwargs)
    assert np.array_equal(bulk.coef, single.coef) and bulk.intercept == single.intercept
    assert np.array_equal(bulk.loss_history, single.loss_history)
    assert bulk.grad_norm == single.grad_norm


@pytest.mark.parametrize("change", [
    {"momentum": 0.9},
    {"backend": "cython"}, {"backend": "numpy"}, {"deterministic": True},
    {"rebalance": True}, {"learning_rate": 10.0}, {"solver": "adam"}, {"dense": True},
])
def test_dense_steps_where_lazy_ones_would_differ(monkeypatch, change):
    """Momentum and Adam move every parameter every step, lr * alpha >= 1 would make the
    product 0; the others name their own kernels or reduction."""
    X, y = hashed()
    change = dict(change)
    if change.pop("dense", False):
        X = X.toarray()
    calls = counting(monkeypatch)
    fit(X, y, **{"loss": "hinge", "solver": "sgd", "batch_size": 64, "max_iter": 1,
                 "alpha": 0.1, "learning_rate": 0.05, "tol": 0, **change})
    assert calls == []


def test_applies_to_one_rank_csr_plain_sgd_only():
    X, y = hashed()
    objective = train.Objective(sp.csr_matrix(X), y, "hinge", 1, optim.Penalty(0.1, 0.0, 2000),
                                True, "numba", world(), [range(500)])
    rule = optim.SGD(2001)
    default = {"callback": None, "checkpointing": False}
    assert lazy_steps.applies(objective, rule, 0.5, **default)
    assert not lazy_steps.applies(objective, rule, 10.0, **default)  # lr * l2 = 1
    assert not lazy_steps.applies(objective, rule, 0.5, **{**default, "checkpointing": True})
    assert not lazy_steps.applies(objective, rule, 0.5, **{**default, "callback": print})
    assert not lazy_steps.applies(objective, optim.SGD(2001, momentum=0.5), 0.5, **default)


def test_checkpoints_and_resume_keep_dense_steps(tmp_path, monkeypatch):
    """A resumed run must be bitwise the uninterrupted one: both take dense steps."""
    X, y = hashed()
    calls = counting(monkeypatch)
    kwargs = {"loss": "hinge", "solver": "sgd", "batch_size": 64, "max_iter": 2, "tol": 0}
    fit(X, y, checkpoint=tmp_path / "run.ckpt", checkpoint_every=3, **kwargs)
    fit(X, y, resume=tmp_path / "run.ckpt", **{**kwargs, "max_iter": 3})
    assert calls == []


def test_a_diverging_run_raises_on_the_step_the_dense_one_does():
    X, y = hashed(loss="squared", seed=6)
    X = sp.csr_matrix(X * 1e3)
    kwargs = {"loss": "squared", "solver": "sgd", "batch_size": 16, "max_iter": 3, "tol": 0,
              "learning_rate": 1.0, "alpha": 1e-4}
    with pytest.raises(NonFiniteError) as lazy:
        fit(X, y, **kwargs)
    with pytest.raises(NonFiniteError) as dense:
        dense_too(X, y, **kwargs)
    assert str(lazy.value) == str(dense.value)
    assert re.match(r"the (loss|gradient) became (inf|nan) at step \d+ \(epoch \d+, batch \d+\)",
                    str(lazy.value))


@pytest.mark.parametrize("loss,K,l1_ratio", [("hinge", None, 0.0), ("softmax", 3, 0.0),
                                              ("logistic", None, 0.5), ("softmax", 3, 0.3)])
def test_threaded_margins_give_bitwise_the_serial_model(monkeypatch, loss, K, l1_ratio):
    """Batches formed by the threads (PARALLEL_TERMS 0) or on one (PARALLEL_TERMS above any
    batch), with and without L1: the same model, history and gradient norm, bit for bit."""
    X, y = hashed(rows=400, seed=8)
    if K:
        y = np.random.default_rng(9).integers(0, K, X.shape[0])
    kwargs = {"loss": loss, "n_classes": K, "solver": "sgd", "batch_size": 48, "max_iter": 2,
              "tol": 0, "alpha": 1e-2, "l1_ratio": l1_ratio}
    monkeypatch.setattr(lazy_steps, "PARALLEL_TERMS", 0)
    threaded = fit(X, y, **kwargs)
    monkeypatch.setattr(lazy_steps, "PARALLEL_TERMS", np.inf)
    serial = fit(X, y, **kwargs)
    assert np.array_equal(threaded.coef, serial.coef)
    assert np.array_equal(threaded.intercept, serial.intercept)
    assert np.array_equal(threaded.loss_history, serial.loss_history)
    assert threaded.grad_norm == serial.grad_norm


def test_margin_parts_wake_the_threads_for_large_batches_only(monkeypatch):
    """A batch's expected terms (rows x mean non-zeros x K) against PARALLEL_TERMS; a batch
    larger than the shard counts the shard's rows."""
    monkeypatch.setattr(lazy_steps.numba, "get_num_threads", lambda: 5)
    X = sp.csr_matrix(np.ones((100, 40)))  # 40 non-zeros a row
    monkeypatch.setattr(lazy_steps, "PARALLEL_TERMS", 40 * 50)
    assert lazy_steps.margin_parts(X, 50, 1) == 5
    assert lazy_steps.margin_parts(X, 49, 1) == 1
    assert lazy_steps.margin_parts(X, 25, 2) == 5
    assert lazy_steps.margin_parts(X, 10_000, 1) == 5  # 100 rows a batch at most
    monkeypatch.setattr(lazy_steps, "PARALLEL_TERMS", 40 * 101)
    assert lazy_steps.margin_parts(X, 10_000, 1) == 1
    assert lazy_steps.margin_parts(sp.csr_matrix((0, 40)), 256, 1) == 1
