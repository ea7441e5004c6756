import re

import numpy as np
import pytest
import scipy.sparse as sp

from fastdp import kernels, synthetic, train
from fastdp.train import fit, fit_gd


def lstsq(X, y):
    return np.linalg.lstsq(np.column_stack([X, np.ones(len(X))]), y, rcond=None)[0]


@pytest.mark.parametrize("backend", kernels.BACKENDS)
def test_converges_to_closed_form_least_squares(backend):
    X, y = synthetic.linear_regression(20_000, 5, seed=1)
    result = fit_gd(X, y, learning_rate=0.5, tol=1e-10, backend=backend)
    assert result.converged and result.n_iter < 1000
    theta = np.append(result.coef, result.intercept)
    np.testing.assert_allclose(theta, lstsq(X, y), rtol=0, atol=1e-6)
    assert abs(result.intercept - 3) < 0.01 and abs(result.coef[0] - 2) < 0.01
    assert np.all(np.diff(result.loss_history) <= 1e-15)  # GD on a convex quadratic descends


def test_float32_data_trains_in_float64_parameters():
    X, y = synthetic.linear_regression(20_000, 3, seed=2, dtype=np.float32)
    result = fit_gd(X, y, learning_rate=0.5, tol=1e-8)
    np.testing.assert_allclose(np.append(result.coef, result.intercept),
                               lstsq(X.astype(np.float64), y.astype(np.float64)), atol=1e-5)


def test_ridge_penalty_is_added_once_and_matches_closed_form():
    X, y = synthetic.linear_regression(5_000, 3, seed=4)
    alpha = 0.3
    result = fit_gd(X, y, learning_rate=0.5, tol=1e-12, alpha=alpha, max_iter=5000)
    # minimize (1/2m)|Xw + b - y|^2 + alpha/2 |w|^2 (intercept unpenalized)
    m = len(X)
    A = np.column_stack([X, np.ones(m)])
    P = np.diag([alpha] * 3 + [0.0])
    exact = np.linalg.solve(A.T @ A / m + P, A.T @ y / m)
    np.testing.assert_allclose(np.append(result.coef, result.intercept), exact, atol=1e-9)


def test_no_intercept_and_max_iter_stop():
    X, y = synthetic.linear_regression(2_000, 2, seed=5)
    result = fit_gd(X, y, learning_rate=0.1, max_iter=3, fit_intercept=False, tol=0)
    assert result.intercept == 0.0 and result.n_iter == 3 and not result.converged
    assert len(result.loss_history) == 4


def test_callback_sees_every_step_read_only():
    X, y = synthetic.linear_regression(1_000, 2)
    seen = []

    def callback(step, theta, objective):
        seen.append((step, theta.copy(), objective))
        with pytest.raises(ValueError):
            theta[0] = 1.0

    result = fit_gd(X, y, learning_rate=0.5, max_iter=5, tol=0, callback=callback)
    assert [s for s, _, _ in seen] == list(range(6))
    assert np.array_equal(seen[-1][1], np.append(result.coef, result.intercept))
    assert [o for _, _, o in seen] == list(result.loss_history)


def shard_sums(X, y, theta):
    out = np.empty(X.shape[1] + 2)
    return kernels.loss_grad_sums("squared", X, y, theta[:-1], theta[-1], out, backend="numba")


def test_unequal_shards_give_the_serial_update_and_textbook_averaging_does_not():
    """The textbook code averages the shards' mean gradients with equal weights; fastdp sums the
    shards' gradient sums and divides by the global row count, which is the serial gradient."""
    X, y = synthetic.linear_regression(10_000, 4, seed=6)
    theta = np.array([0.5, -1.0, 0.25, 2.0, 1.0])
    lr = 0.5
    n = X.shape[1]
    bounds = [0, 37, 9_000, 10_000]  # shards of 37, 8963 and 1000 rows
    shards = [(X[a:b], y[a:b]) for a, b in zip(bounds, bounds[1:])]

    serial = theta - lr * shard_sums(X, y, theta)[:n + 1] / len(X)
    summed = sum(shard_sums(Xs, ys, theta) for Xs, ys in shards)
    fastdp_step = theta - lr * summed[:n + 1] / sum(len(ys) for _, ys in shards)
    textbook = theta - lr * np.mean([shard_sums(Xs, ys, theta)[:n + 1] / len(ys)
                                     for Xs, ys in shards], axis=0)
    np.testing.assert_allclose(fastdp_step, serial, rtol=1e-14, atol=1e-15)
    assert np.abs(textbook - serial).max() > 1e-3


def test_one_step_is_the_textbook_serial_update():
    X, y = synthetic.linear_regression(10_000, 4, seed=6)
    lr = 0.5
    first = fit_gd(X, y, learning_rate=lr, max_iter=1, tol=0)
    # theta starts at zero, so the residual X @ theta - y is -y
    expected = -lr * np.append(X.T @ -y, -y.sum()) / len(X)
    np.testing.assert_allclose(np.append(first.coef, first.intercept), expected, rtol=1e-13)


@pytest.mark.parametrize("kwargs,message", [
    ({"learning_rate": 0.0}, "learning_rate must be a finite number > 0, got 0.0"),
    ({"learning_rate": -0.1}, "learning_rate must be a finite number > 0"),
    ({"learning_rate": float("nan")}, "learning_rate must be a finite number > 0"),
    ({"max_iter": 0}, "max_iter must be an integer >= 1"),
    ({"tol": -1.0}, "tol must be >= 0"),
    ({"alpha": -1.0}, "alpha must be a finite number >= 0"),
    ({"backend": "gpu"}, "backend must be one of"),
    ({"loss": "cubic"}, "loss must be one of"),
])
def test_bad_parameters(kwargs, message):
    X, y = synthetic.linear_regression(10, 2)
    with pytest.raises(ValueError, match=message):
        fit_gd(X, y, **kwargs)


@pytest.mark.parametrize("X,y,message", [
    (np.ones((3, 2)), np.ones(4), "X has 3 rows but y has 4"),
    (np.ones(3), np.ones(3), "X must be 2-D"),
    (np.array([[np.nan, 1.0]]), np.ones(1), "X contains NaN"),
    (np.ones((2, 2)), np.array([0.0, np.inf]), "y contains inf"),
    (np.array([["a"]]), np.ones(1), "X must be numeric"),
    (np.ones((0, 2)), np.ones(0), "X has 0 rows on every rank"),
])
def test_bad_data(X, y, message):
    with pytest.raises(ValueError, match=message):
        fit_gd(X, y)


def test_non_contiguous_input_is_copied_and_fits_the_same():
    X, y = synthetic.linear_regression(3_000, 3, seed=7)
    wide = np.zeros((3_000, 6))
    wide[:, ::2] = X
    strided = fit_gd(wide[:, ::2], y[::-1][::-1], learning_rate=0.5, max_iter=20)
    plain = fit_gd(X, y, learning_rate=0.5, max_iter=20)
    assert np.array_equal(strided.coef, plain.coef)


def ridge_exact(X, y, alpha):
    m = len(X)
    A = np.column_stack([X, np.ones(m)])
    P = np.diag([alpha] * X.shape[1] + [0.0])
    return np.linalg.solve(A.T @ A / m + P, A.T @ y / m)


@pytest.mark.parametrize("kwargs,atol", [
    ({"solver": "gd", "momentum": 0.9, "learning_rate": 0.1}, 1e-6),
    ({"solver": "gd", "momentum": 0.9, "nesterov": True, "learning_rate": 0.1}, 1e-6),
    ({"solver": "adam", "learning_rate": 0.05}, 5e-3),  # a constant step keeps Adam circling
    ({"solver": "adam", "learning_rate": 0.05, "schedule": "cosine"}, 1e-6),
    ({"solver": "sgd", "batch_size": 100, "learning_rate": 0.2, "schedule": "invscaling",
      "power_t": 0.25, "max_iter": 200}, 5e-3),
    ({"solver": "lbfgs"}, 1e-6),
])
def test_every_solver_reaches_the_ridge_solution(kwargs, atol):
    X, y = synthetic.linear_regression(3_000, 4, seed=8)
    result = fit(X, y, alpha=0.1, tol=0 if kwargs["solver"] != "lbfgs" else 1e-12,
                 **{"max_iter": 1500, **kwargs})
    np.testing.assert_allclose(np.append(result.coef, result.intercept),
                               ridge_exact(X, y, 0.1), atol=atol)


def test_adamw_decays_the_coefficients_not_the_intercept():
    X, y = synthetic.linear_regression(2_000, 3, seed=9)
    plain = fit(X, y, solver="adam", learning_rate=0.05, max_iter=800, tol=0)
    decayed = fit(X, y, solver="adamw", weight_decay=0.5, learning_rate=0.05, max_iter=800, tol=0)
    assert np.abs(decayed.coef).sum() < 0.9 * np.abs(plain.coef).sum()
    assert abs(decayed.intercept - plain.intercept) < 0.5


def test_lasso_by_proximal_gradient_zeroes_irrelevant_features():
    rng = np.random.default_rng(3)
    X = rng.normal(size=(2_000, 6))
    y = 3 * X[:, 0] - 2 * X[:, 1] + 0.1 * rng.normal(size=2_000)
    result = fit(X, y, solver="gd", learning_rate=0.2, alpha=0.05, l1_ratio=1.0, max_iter=2000,
                 tol=1e-10)
    assert result.converged
    assert np.all(result.coef[2:] == 0) and np.all(result.coef[:2] != 0)
    # optimality of the lasso: |X_j.r / m| <= alpha on the zeroed features
    r = y - X @ result.coef - result.intercept
    assert np.all(np.abs(X[:, 2:].T @ r / len(y)) <= 0.05 + 1e-8)


def test_softmax_on_csr_matches_dense():
    import scipy.sparse as sp
    rng = np.random.default_rng(4)
    X = rng.normal(size=(600, 5)) * (rng.random((600, 5)) < 0.5)
    y = np.argmax(X @ rng.normal(size=(5, 3)), axis=1)
    dense = fit(X, y, loss="softmax", n_classes=3, solver="lbfgs", alpha=1e-2, tol=1e-12)
    sparse = fit(sp.csr_matrix(X), y, loss="softmax", n_classes=3, solver="lbfgs", alpha=1e-2,
                 tol=1e-12)
    assert dense.coef.shape == (5, 3) and dense.intercept.shape == (3,)
    np.testing.assert_allclose(sparse.coef, dense.coef, atol=1e-9)


@pytest.mark.parametrize("backend", ["auto", "numpy", "cython"])
@pytest.mark.parametrize("sparse", [False, True])
def test_fit_reports_the_backend_that_ran(backend, sparse):
    import scipy.sparse as sp
    X, y = synthetic.linear_regression(200, 3, seed=2)
    X = sp.csr_matrix(X) if sparse else X
    result = fit(X, y, solver="gd", max_iter=3, backend=backend)
    assert result.backend == kernels.pick_backend("squared", X, backend) != "auto"
    named = fit(X, y, solver="gd", max_iter=3, backend=result.backend)
    np.testing.assert_array_equal(result.coef, named.coef)  # "auto" ran that backend's kernels


@pytest.mark.parametrize("kwargs,message", [
    ({"solver": "newton"}, "solver must be one of"),
    ({"solver": "lbfgs", "alpha": 1.0, "l1_ratio": 0.5}, "solver='lbfgs' needs a smooth objective"),
    ({"solver": "lbfgs", "loss": "hinge"}, "the hinge loss is not"),
    ({"solver": "gd", "batch_size": 10}, "solver='gd' is full-batch"),
    ({"solver": "sgd", "batch_size": 0}, "batch_size must be an integer >= 1"),
    ({"l1_ratio": 2.0}, "l1_ratio must be in"),
    ({"loss": "softmax"}, "n_classes must be an integer >= 2"),
    ({"loss": "logistic"}, r"y must be -1 or \+1"),
])
def test_bad_solver_parameters(kwargs, message):
    X, y = synthetic.linear_regression(10, 2)
    with pytest.raises(ValueError, match=message):
        fit(X, y, **kwargs)


def test_training_report_counts_rows_evaluations_and_times():
    X, y = synthetic.linear_regression(5_000, 3, seed=10)
    result = fit(X, y, solver="gd", learning_rate=0.5, max_iter=7, tol=0)
    report = result.report
    assert report["evaluations"] == 8  # steps 0..7
    (rank,) = report["ranks"]
    assert rank["rank"] == 0 and rank["rows"] == 5_000
    assert rank["compute_s"] > 0 and rank["wait_s"] >= 0
    assert report["imbalance"] == 1.0


def test_combined_report_adds_times_per_rank():
    one = {"ranks": [{"rank": 0, "rows": 5, "compute_s": 1.0, "wait_s": 0.5},
                     {"rank": 1, "rows": 4, "compute_s": 3.0, "wait_s": 0.0}],
           "imbalance": 1.5, "evaluations": 2, "partition": [[0, 5], [5, 9]], "rebalances": 1,
           "csr_tiles": [0, 0]}
    both = train.combine_reports([one, dict(one, csr_tiles=[8, 7])])
    assert both["ranks"][1] == {"rank": 1, "rows": 4, "compute_s": 6.0, "wait_s": 0.0}
    assert both["imbalance"] == 1.5 and both["evaluations"] == 4 and both["rebalances"] == 2
    assert both["csr_tiles"] == [8, 7]


def trajectory(X, y, **kwargs):
    """Every step's theta (callback) and the fit."""
    steps = []
    result = fit(X, y, tol=0, callback=lambda t, theta, f: steps.append(theta.copy()), **kwargs)
    return np.array(steps), result


MINI_BATCH = {
    "sgd-momentum": {"solver": "sgd", "batch_size": 100, "max_iter": 4, "momentum": 0.5,
                     "learning_rate": 0.05},
    "adam": {"solver": "adam", "batch_size": 37, "max_iter": 2, "learning_rate": 0.05},
    "adamw-softmax": {"solver": "adamw", "batch_size": 64, "max_iter": 2, "learning_rate": 0.05,
                      "loss": "softmax", "n_classes": 3},
}


def mini_batch_data(sparse: bool, softmax: bool = False):
    import scipy.sparse as sp
    X, y = synthetic.linear_regression(2_000, 4, seed=12)
    if softmax:
        y = np.digitize(y, np.quantile(y, [1 / 3, 2 / 3]))
    if sparse:
        X = sp.csr_matrix(X * (np.random.default_rng(0).random(X.shape) < 0.5))
    return X, y


@pytest.mark.parametrize("name", sorted(MINI_BATCH))
@pytest.mark.parametrize("sparse", [False, True])
def test_overlap_takes_bitwise_the_same_steps(name, sparse):
    """Preparing the next batch while the reduction is in flight changes no arithmetic."""
    kwargs = MINI_BATCH[name]
    X, y = mini_batch_data(sparse, softmax=kwargs.get("loss") == "softmax")
    plain, plain_fit = trajectory(X, y, alpha=0.01, **kwargs)
    steps, result = trajectory(X, y, alpha=0.01, overlap=True, **kwargs)
    assert steps.shape == plain.shape and steps.shape[0] > 40
    assert np.array_equal(steps, plain)
    assert np.array_equal(result.loss_history, plain_fit.loss_history)
    assert np.array_equal(result.coef, plain_fit.coef)
    assert np.array_equal(result.intercept, plain_fit.intercept)
    assert result.n_iter == plain_fit.n_iter and result.grad_norm == plain_fit.grad_norm
    assert result.report["evaluations"] == plain_fit.report["evaluations"]
    (rank,) = result.report["ranks"]
    assert rank["compute_s"] > 0 and rank["wait_s"] >= 0


def test_overlap_stops_early_with_the_same_epochs():
    """Converged before max_iter: the batch prepared for the next epoch is left unused."""
    X, y = synthetic.linear_regression(3_000, 3, seed=14)
    kwargs = dict(solver="sgd", batch_size=256, learning_rate=0.05, max_iter=200, tol=1e-3,
                  n_iter_no_change=2)
    plain = fit(X, y, **kwargs)
    overlapped = fit(X, y, overlap=True, **kwargs)
    assert plain.converged and plain.n_iter < 200
    assert overlapped.n_iter == plain.n_iter and overlapped.converged
    assert np.array_equal(overlapped.coef, plain.coef)
    assert np.array_equal(overlapped.loss_history, plain.loss_history)


@pytest.mark.parametrize("sparse", [False, True])
def test_batches_gather_the_rows_of_the_permutation(sparse):
    """Batches.prepare gives X[rows], y[rows] of the sorted rows of the epoch's permutation, in
    reused buffers for dense X, whatever the pieces the gather is cut into."""
    X, y = mini_batch_data(sparse)
    objective = train.Objective(X, y, "squared", 1, train.optim.Penalty(0.0, 0.0, 4), True,
                                "numba", train.world(), [range(0, 2_000)])
    batches = train.Batches(objective, 2_000, 300, random_state=3)
    batches.CHUNK_BYTES = 1  # a batch a chunk: every prepare gathers
    batches.GATHER_BYTES = 5 * 4 * 8  # 5 rows a piece, when a request is in flight

    class Pending:  # a request that never completes before the wait: every piece tests it
        tests = 0

        def test(self):
            Pending.tests += 1
            return False

    for epoch in (0, 1):
        order = np.random.default_rng([3, epoch]).permutation(2_000)
        for start in (0, 1_800):
            rows = np.sort(order[start:start + 300])
            batch = batches.prepare(epoch, start, Pending() if start else None)
            dense = batch.X.toarray() if sparse else batch.X
            assert np.array_equal(dense, X[rows].toarray() if sparse else X[rows])
            assert np.array_equal(batch.y, y[rows]) and batch.seconds >= 0
    assert Pending.tests == (2 * 2 if sparse else 2 * (1 + 200 // 5))
    if not sparse:
        assert batch.X.base is batches._X and len(batches._X) == 300  # one buffer, reused


@pytest.mark.parametrize("sparse", [False, True])
def test_batches_gather_a_chunk_of_batches_at_once(sparse):
    """A chunk of consecutive batches is gathered at its first prepare; the other batches of the
    chunk are views of it (dense: of the one reused buffer), in any order of the calls."""
    X, y = mini_batch_data(sparse)
    objective = train.Objective(X, y, "squared", 1, train.optim.Penalty(0.0, 0.0, 4), True,
                                "numba", train.world(), [range(0, 2_000)])
    batches = train.Batches(objective, 2_000, 300, random_state=3)
    row_bytes = 4 * 8 if not sparse else (8 + X.indices.itemsize) * X.nnz // 2_000
    batches.CHUNK_BYTES = 3 * 300 * row_bytes + 1  # 3 batches a chunk: [0, 3), [3, 6), [6, 7)
    gathered = []
    gather = batches._gather
    batches._gather = lambda first, stop, request: (gathered.append((first, stop)),
                                                    gather(first, stop, request))
    for epoch in (0, 1):
        order = np.random.default_rng([3, epoch]).permutation(2_000)
        for start in (1_800, 0, 300, 600, 1_500, 900, 1_200):
            rows = np.sort(order[start:start + 300])
            batch = batches.prepare(epoch, start)
            dense = batch.X.toarray() if sparse else batch.X
            assert np.array_equal(dense, X[rows].toarray() if sparse else X[rows])
            assert np.array_equal(batch.y, y[rows])
            if not sparse:
                assert batch.X.base is batches._X and len(batches._X) == 900
    assert gathered == [(6, 7), (0, 3), (3, 6)] * 2


@pytest.mark.parametrize("sparse", [False, True])
def test_batches_give_a_rank_its_run_of_each_sorted_batch(sparse):
    """On a rank holding global rows 700..1999, a batch is the rows of the epoch's sorted batch in
    that range, as shard rows (minus 700), in increasing order."""
    X, y = mini_batch_data(sparse)

    class Rank1:  # what Objective and Batches read of a communicator
        rank, size = 1, 2

    objective = train.Objective(X[700:], y[700:], "squared", 1, train.optim.Penalty(0.0, 0.0, 4),
                                True, "numba", Rank1(), [range(0, 700), range(700, 2_000)])
    batches = train.Batches(objective, 2_000, 300, random_state=5)
    for epoch in (0, 1):
        order = np.random.default_rng([5, epoch]).permutation(2_000)
        for start in range(0, 2_000, 300):
            rows = np.sort(order[start:start + 300])
            rows = rows[rows >= 700]
            batch = batches.prepare(epoch, start)
            dense = batch.X.toarray() if sparse else batch.X
            assert np.array_equal(dense, X[rows].toarray() if sparse else X[rows])
            assert np.array_equal(batch.y, y[rows])


@pytest.mark.parametrize("solver", ["gd", "adam", "lbfgs"])
def test_overlap_needs_mini_batch_training(solver):
    X, y = synthetic.linear_regression(10, 2)
    with pytest.raises(ValueError, match=r"overlap=True needs mini-batch training .*"
                                         rf"solver='{solver}' is full-batch"):
        fit(X, y, solver=solver, overlap=True)


@pytest.mark.parametrize("value", [1, 0, "yes", None])
def test_bad_overlap(value):
    X, y = synthetic.linear_regression(10, 2)
    with pytest.raises(ValueError, match=r"overlap must be True or False, got "):
        fit(X, y, solver="sgd", overlap=value)


def test_a_diverging_run_stops_with_the_step_and_a_smaller_learning_rate():
    X, y = synthetic.linear_regression(1_000, 4, seed=3)
    seen = []
    with pytest.raises(train.NonFiniteError) as info:
        fit(X, y, solver="gd", learning_rate=10.0, max_iter=1000, tol=0,
            callback=lambda t, theta, f: seen.append(t))
    assert str(info.value) == (f"the loss became inf at step {len(seen)}; try a smaller "
                               "learning_rate than 10.0")
    assert isinstance(info.value, FloatingPointError) and isinstance(info.value, ValueError)


@pytest.mark.parametrize("kwargs,where", [
    ({"solver": "gd"}, "step 0"),
    ({"solver": "adam", "batch_size": 10}, "step 0 (epoch 0, batch 0)"),
])
def test_an_infinite_gradient_with_a_finite_loss_is_caught(kwargs, where):
    X = np.full((20, 2), 1e308)  # finite data whose gradient sums overflow; the loss stays 50
    message = rf"^the gradient became inf at {re.escape(where)}; try a smaller learning_rate"
    with pytest.raises(train.NonFiniteError, match=message + r" than 0\.1$"):
        fit(X, np.full(20, 10.0), **kwargs)


def test_lbfgs_is_guarded_too_and_advised_about_the_data():
    X, y = synthetic.linear_regression(100, 2, seed=3)
    with pytest.raises(train.NonFiniteError, match=r"^the loss became inf at evaluation 0; "
                                                   r"solver 'lbfgs' has no learning rate: look "
                                                   r"for extreme values in the data, or scale "
                                                   r"it$"):
        fit(X, y * 1e160, solver="lbfgs")


@pytest.mark.parametrize("mini_batch", [False, True])
def test_the_balancer_times_every_step_but_the_first_on_a_shard(mini_batch):
    """The first step after the shard changes (the fit's start, or rows moved) pays one-off costs
    (loading kernels, starting threads); the balancer's window leaves it out, rows and seconds."""
    X, y = synthetic.linear_regression(50, 3, seed=1)
    windows = []

    class Recorder:  # records its windows; its first answer moves the rows (to where they are)
        def propose(self, rows, processed, seconds):
            windows.append((rows, processed, seconds))
            return [range(0, 50)] if len(windows) == 1 else None

    objective = train.Objective(X, y, "squared", 1, train.optim.Penalty(0.0, 0.0, 3), True,
                                "numba", train.world(), [range(0, 50)], balancer=Recorder(),
                                rebalance_every=3)
    batch = train.Batch(X[:20], y[:20], 0.5) if mini_batch else None
    for _ in range(9):  # full batch: the window is checked before a step, mini-batch after an epoch
        objective.gradient(np.zeros(4), batch)
        if mini_batch:
            objective.end_epoch()
    if not mini_batch:
        objective.gradient(np.zeros(4))
    rows = 20 if mini_batch else 50
    assert objective.rebalances == 1 and len(windows) == 2
    assert windows[0][:2] == (50, 2 * rows)  # 3 steps, the first untimed
    assert windows[1][:2] == (50, 5 * rows)  # after the move: 6 steps (the interval doubled)
    if mini_batch:
        assert windows[0][2] >= 2 * 0.5 and windows[1][2] >= 5 * 0.5  # with the preparations


def test_nonfinite_reads_the_reduced_sums():
    X, y = synthetic.linear_regression(10, 2)
    objective = train.Objective(X, y, "squared", 1, train.optim.Penalty(0.0, 0.0, 2), True,
                                "numba", train.world(), [range(0, 10)])
    theta = np.zeros(3)
    objective.buf[:] = [1.0, 2.0, 3.0, 4.0, 10.0, 0.0]  # [grad sums (3), loss, rows, signal]
    objective.finish(theta)  # what a gradient does after its reduction
    assert objective.nonfinite() is None
    for slot, value, found in [(3, np.inf, "the loss became inf"),
                               (3, np.nan, "the loss became nan"),
                               (0, -np.inf, "the gradient became inf"),
                               (2, np.nan, "the gradient became nan")]:
        buf = objective.buf.copy()
        objective.buf[slot] = value
        objective.finish(theta)
        assert objective.nonfinite() == found
        objective.buf[:] = buf
    objective.buf[:2] = [1e308, 1e308]  # finite sums whose total overflows: not an error
    objective.finish(theta)
    assert objective.sums_total == np.inf and objective.nonfinite() is None


@pytest.mark.parametrize("backend", ["numba", "cython"])
def test_wide_csr_trains_on_column_tiles_built_once(backend, monkeypatch):
    """Full-batch solvers on wide CSR read a column-major copy (kernels.tile_csr), built once per
    fit, and end where the plain CSR kernels end; mini-batch steps use the plain kernels."""
    import scipy.sparse as sp
    rng = np.random.default_rng(7)
    X = sp.csr_matrix(rng.normal(size=(3000, 40)) * (rng.random((3000, 40)) < 0.2))
    y = np.where(X @ rng.normal(size=40) + 0.1 * rng.normal(size=3000) > 0, 1.0, -1.0)
    built = []
    tile_csr = kernels.tile_csr
    monkeypatch.setattr(kernels, "tile_csr", lambda X, **kw: built.append(X) or tile_csr(X, **kw))
    kwargs = dict(loss="logistic", alpha=1e-3, tol=1e-12, max_iter=200, backend=backend)
    plain = fit(X, y, solver="lbfgs", **kwargs)
    assert built == [] and plain.report["csr_tiles"] == [0]  # 40 features: below TILE_MIN_FEATURES
    monkeypatch.setattr(kernels, "TILE_MIN_FEATURES", 10)
    tiled = fit(X, y, solver="lbfgs", **kwargs)
    assert len(built) == 1 and built[0] is X
    assert tiled.report["csr_tiles"] == [1]  # 40 columns: one tile (columns.TILE_COLS is 2**14)
    np.testing.assert_allclose(tiled.coef, plain.coef, rtol=0, atol=1e-9)
    assert tiled.intercept == pytest.approx(plain.intercept, abs=1e-9)
    fit(X, y, solver="sgd", batch_size=100, **dict(kwargs, tol=0.0, max_iter=2))
    assert len(built) == 1
    monkeypatch.setenv("FASTDP_CSR_TILES", "0")  # the user's opt-out: no copy of X
    assert fit(X, y, solver="lbfgs", **kwargs).report["csr_tiles"] == [0] and len(built) == 1
    monkeypatch.setenv("FASTDP_CSR_TILES", "yes")
    with pytest.raises(ValueError, match=re.escape("FASTDP_CSR_TILES must be 0 (never) or 1 ")):
        fit(X, y, solver="lbfgs", **kwargs)


@pytest.mark.parametrize("backend", ["numba", "cython"])
def test_softmax_on_wide_csr_trains_on_column_tiles(backend, monkeypatch):
    """Softmax over K classes tiles when features x K reach TILE_MIN_FEATURES, and ends where the
    plain CSR kernels end."""
    import scipy.sparse as sp
    rng = np.random.default_rng(8)
    X = sp.csr_matrix(rng.normal(size=(2000, 30)) * (rng.random((2000, 30)) < 0.3))
    y = np.argmax(X @ rng.normal(size=(30, 3)) + 0.1 * rng.normal(size=(2000, 3)), axis=1)
    kwargs = dict(loss="softmax", n_classes=3, solver="lbfgs", alpha=1e-3, tol=1e-12, max_iter=200,
                  backend=backend)
    plain = fit(X, y, **kwargs)
    monkeypatch.setattr(kernels, "TILE_MIN_FEATURES", 90)  # 30 features x 3 classes
    tiled = fit(X, y, **kwargs)
    assert plain.report["csr_tiles"] == [0] and tiled.report["csr_tiles"] == [1]
    np.testing.assert_allclose(tiled.coef, plain.coef, rtol=0, atol=1e-9)
    np.testing.assert_allclose(tiled.intercept, plain.intercept, rtol=0, atol=1e-9)


def one_vs_rest_data(rows=300, n=400, classes=3, seed=21):
    """Wide CSR rows and labels 0..classes-1, and each class's -1/+1 targets."""
    rng = np.random.default_rng(seed)
    X = sp.random(rows, n, density=0.03, format="csr", random_state=rng)
    labels = rng.integers(0, classes, rows)
    return X, [np.where(labels == c, 1.0, -1.0) for c in range(classes)]


@pytest.mark.parametrize("options", [
    {"loss": "hinge", "solver": "sgd", "batch_size": 32, "max_iter": 3, "tol": 0, "alpha": 1e-3},
    {"loss": "logistic", "solver": "sgd", "batch_size": 50, "max_iter": 2, "alpha": 1e-2,
     "l1_ratio": 0.5, "callback": lambda step, theta, value: None},
    {"loss": "squared_hinge", "solver": "lbfgs", "max_iter": 20, "alpha": 1e-2},
])
def test_fit_each_gives_bitwise_the_models_of_separate_fits(options):
    X, targets = one_vs_rest_data()
    each = list(train.fit_each(X, iter(targets), **options))
    assert len(each) == len(targets)
    for result, y in zip(each, targets):
        alone = fit(X, y, **options)
        assert np.array_equal(result.coef, alone.coef) and result.intercept == alone.intercept
        assert np.array_equal(result.loss_history, alone.loss_history)
        assert result.n_iter == alone.n_iter and result.grad_norm == alone.grad_norm


def test_fit_each_checks_x_once_and_draws_each_epoch_once(monkeypatch):
    """X's checks run at the first target only (never check_shard's); each epoch's order is
    drawn for the first target and read by the others."""
    X, targets = one_vs_rest_data()
    checked, drawn = [], []
    check_features, sort_batches = train.check_features, kernels.sort_batches
    monkeypatch.setattr(train, "check_features", lambda X: checked.append(1) or check_features(X))
    monkeypatch.setattr(train, "check_shard", None)
    monkeypatch.setattr(kernels, "sort_batches",
                        lambda order, size: drawn.append(size) or sort_batches(order, size))
    results = list(train.fit_each(X, targets, loss="hinge", solver="sgd", batch_size=64,
                                  max_iter=4, tol=0))
    assert len(results) == 3 and checked == [1] and drawn == [64] * 4


def test_fit_each_draws_the_orders_past_its_budget_again(monkeypatch):
    X, targets = one_vs_rest_data()
    options = {"loss": "hinge", "solver": "sgd", "batch_size": 64, "max_iter": 3, "tol": 0}
    kept = list(train.fit_each(X, targets, **options))
    monkeypatch.setattr(train.Orders, "ORDERS_BYTES", 300 * 8)  # one epoch's order
    drawn = []
    sort_batches = kernels.sort_batches
    monkeypatch.setattr(kernels, "sort_batches",
                        lambda order, size: drawn.append(size) or sort_batches(order, size))
    tight = list(train.fit_each(X, targets, **options))
    assert len(drawn) == 1 + 2 * 3  # epoch 0 kept, epochs 1 and 2 drawn by every fit
    for a, b in zip(kept, tight):
        assert np.array_equal(a.coef, b.coef) and a.intercept == b.intercept


def test_fit_each_names_bad_data_as_fit_does():
    X, targets = one_vs_rest_data()
    bad = X.copy()
    bad.data[5] = np.nan
    with pytest.raises(ValueError, match=r"X contains NaN \(first at row \d+\)"):
        next(train.fit_each(bad, targets, loss="hinge", solver="sgd"))
    wrong = [targets[0], np.where(targets[1] > 0, 2.0, -1.0)]
    results = train.fit_each(X, wrong, loss="hinge", solver="sgd", max_iter=1)
    assert next(results).coef.shape == (400,)
    with pytest.raises(ValueError, match="y must be -1 or \\+1 for loss 'hinge', got 2.0 at row"):
        next(results)
    with pytest.raises(ValueError, match="X has 300 rows but y has 299"):
        next(train.fit_each(X, [targets[0][:-1]], loss="hinge"))
    with pytest.raises(ValueError, match="learning_rate"):
        next(train.fit_each(X, targets, loss="hinge", learning_rate=-1.0))
