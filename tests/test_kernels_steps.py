"""kernels.numba_steps: SGD steps over dense rows, many batches in one call."""

import numpy as np
import pytest

from fastdp import optim
from fastdp.kernels import LOSS_CODES, mean_gradient, numba_dense, numba_steps


def problem(loss, dtype=np.float64, rows=50, n=7, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((rows, n)).astype(dtype)
    y = rng.standard_normal(rows) if loss == "squared" else rng.choice([-1.0, 1.0], rows)
    return X, y.astype(dtype), rng.standard_normal(n + 1)


@pytest.mark.parametrize("loss", ["squared", "logistic", "hinge", "squared_hinge"])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_batch_sums_are_the_dense_kernels_over_the_gathered_rows(loss, dtype):
    X, y, theta = problem(loss, dtype)
    rows = np.array([2, 3, 11, 30, 49], dtype=np.int64)
    sums = np.full(X.shape[1] + 2, np.nan)
    numba_steps.dense_batch_sums(LOSS_CODES[loss], X, y, rows, theta[:-1], theta[-1], sums)
    out = np.empty((1, X.shape[1] + 2))
    numba_dense.dense_block_sums(LOSS_CODES[loss], np.ascontiguousarray(X[rows]), y[rows],
                                 theta[:-1], theta[-1], out, 4096)
    np.testing.assert_allclose(sums, out[0], rtol=1e-12 if dtype == np.float64 else 1e-6,
                               atol=1e-12 if dtype == np.float64 else 1e-6)


@pytest.mark.parametrize("fit_intercept", [True, False])
@pytest.mark.parametrize("momentum,nesterov,l1", [(0.0, False, 0.0), (0.9, False, 0.0),
                                                  (0.5, True, 0.02), (0.0, False, 0.02)])
def test_batches_are_the_rule_and_penalty_steps_one_after_another(fit_intercept, momentum,
                                                                  nesterov, l1):
    """Each batch as the training loop steps it: mean_gradient, optim.SGD, Penalty.prox."""
    X, y, theta = problem("logistic", seed=1)
    n, l2, batch = X.shape[1], 0.05, 8
    order = np.random.default_rng(2).permutation(len(X)).astype(np.int64)
    rates = np.array([0.5, 0.25, 0.2, 0.1, 0.05, 0.01])
    expected, weighted = theta.copy(), 0.0
    rule, penalty = optim.SGD(n + 1, momentum, nesterov), optim.Penalty(l2 + l1, l1 / (l2 + l1), n)
    sums, grad = np.empty(n + 2), np.empty(n + 1)
    for b, lr in enumerate(rates):
        rows = order[b * batch:(b + 1) * batch]
        numba_steps.dense_batch_sums(LOSS_CODES["logistic"], X, y, rows, expected[:n],
                                     expected[n], sums)
        mean_gradient(sums, float(len(rows)), expected, grad, l2=penalty.l2, n_coef=n,
                      n_free=n + 1 if fit_intercept else n)
        rule.step(expected, grad, lr)
        penalty.prox(expected, lr)
        weighted += sums[-1] / len(rows) * len(rows)
    got, velocity = theta.copy(), np.zeros(n + 1)
    done, total = numba_steps.dense_batches(LOSS_CODES["logistic"], X, y, order, batch, got,
                                            np.empty(n + 2), np.empty(n + 1), fit_intercept,
                                            rates, penalty.l2, penalty.l1, momentum, nesterov,
                                            velocity, 1.5)
    assert done == len(rates) and total == pytest.approx(1.5 + weighted, rel=1e-14)
    np.testing.assert_allclose(got, expected, rtol=1e-14, atol=1e-15)
    np.testing.assert_allclose(velocity, rule.state()["velocity"], rtol=1e-14, atol=1e-15)
    assert fit_intercept or got[n] == theta[n]


def test_batches_stop_before_a_batch_whose_sums_are_not_finite():
    X, y, theta = problem("squared", seed=3)
    X[5] = 1e300  # the squared loss of that row overflows
    order = np.arange(len(X), dtype=np.int64)
    scratch = (np.empty(X.shape[1] + 2), np.empty(X.shape[1] + 1))

    def run(steps):
        got = theta.copy()
        done, _ = numba_steps.dense_batches(LOSS_CODES["squared"], X, y, order, 2, got, *scratch,
                                            True, np.full(steps, 0.01), 0.0, 0.0, 0.0, False,
                                            np.zeros(len(got)), 0.0)
        return done, got

    done, got = run(5)  # rows 4 and 5 are batch 2
    assert done == 2 and np.array_equal(got, run(2)[1])
