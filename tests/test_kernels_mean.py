"""kernels.mean_gradient (numba_mean.py): a step's mean gradient from its reduced sums, with the
L2 penalty's gradient, in one threaded pass, and the sums' total for the non-finite guard."""

import numpy as np
import pytest

from fastdp import kernels

CHUNK = 64  # sizes that exercise the vectorized loops' bodies and tails


def reference(sums, count, theta, l2, n_coef, n_free):
    """The NumPy passes mean_gradient replaces: divide, penalty, unfitted intercepts."""
    grad = sums[:-1] / count
    grad[:n_coef] += l2 * theta[:n_coef]
    grad[n_free:] = 0.0
    return grad


@pytest.mark.parametrize("p,n_coef,n_free", [
    (1, 0, 1), (1, 1, 1), (2, 1, 1), (2, 1, 2),  # a scalar model, with and without intercept
    (3 * CHUNK + 5, 3 * CHUNK + 4, 3 * CHUNK + 5),  # one intercept after many coefficients
    (3 * CHUNK, CHUNK, 2 * CHUNK),  # each part a multiple of the vector width
    (2 * CHUNK + 7, CHUNK + 3, CHUNK + 3),  # softmax-like tails, intercepts not fitted
    (40, 0, 0),  # nothing but zeros
])
@pytest.mark.parametrize("l2", [0.0, 0.25])
def test_mean_gradient_equals_the_numpy_passes(p, n_coef, n_free, l2):
    rng = np.random.default_rng(p + n_coef)
    sums, theta = rng.standard_normal(p + 1), rng.standard_normal(p)
    grad = np.full(p, np.nan)
    total = kernels.mean_gradient(sums, 37.0, theta, grad, l2=l2, n_coef=n_coef, n_free=n_free)
    want = reference(sums, 37.0, theta, l2, n_coef, n_free)
    np.testing.assert_allclose(grad, want, rtol=1e-15, atol=0)
    unchecked = np.full(p, np.nan)  # validate=False: the same kernel, no checks before it
    unchecked_total = kernels.mean_gradient(sums, 37.0, theta, unchecked, l2=l2, n_coef=n_coef,
                                            n_free=n_free, validate=False)
    np.testing.assert_array_equal(unchecked, grad)
    # the total may be added in another order (its vector loop may start where grad is aligned)
    assert unchecked_total == pytest.approx(total, rel=1e-14, abs=1e-14)
    # a true division where there is no penalty: exactly what np.divide gives
    np.testing.assert_array_equal(grad[n_coef:n_free], sums[n_coef:n_free] / 37.0)
    assert total == pytest.approx(sums.sum(), rel=1e-12, abs=1e-12)


def test_mean_gradient_defaults_to_every_value_fitted_and_no_penalty():
    sums = np.array([2.0, 4.0, 6.0, 1.0])
    grad = np.empty(3)
    assert kernels.mean_gradient(sums, 2.0, np.full(3, 1e9), grad) == 13.0
    np.testing.assert_array_equal(grad, [1.0, 2.0, 3.0])


@pytest.mark.parametrize("slot,value,want", [
    (0, np.nan, np.nan), (CHUNK + 1, np.inf, np.inf), (2 * CHUNK, -np.inf, -np.inf),
    (2 * CHUNK + 2, np.nan, np.nan),  # the loss sum (the last slot)
])
def test_mean_gradient_total_is_non_finite_when_a_sum_is(slot, value, want):
    p = 2 * CHUNK + 2
    sums = np.ones(p + 1)
    sums[slot] = value
    total = kernels.mean_gradient(sums, 1.0, np.zeros(p), np.empty(p))
    np.testing.assert_equal(total, want)


def test_mean_gradient_total_overflows_when_finite_sums_add_past_the_largest_float():
    sums = np.array([1e308, 1e308, 0.0])
    grad = np.empty(2)
    assert kernels.mean_gradient(sums, 2.0, np.zeros(2), grad) == np.inf
    np.testing.assert_array_equal(grad, [5e307, 5e307])


GOOD = {"sums": np.zeros(4), "count": 2.0, "theta": np.zeros(3), "grad": np.empty(3)}


@pytest.mark.parametrize("change,message", [
    ({"sums": np.zeros(3)}, r"sums must be a C-contiguous float64 array of shape \(4,\) "
                            r"\(grad has p = 3 values\), got float64 \(3,\)"),
    ({"sums": np.zeros(4, dtype=np.float32)}, r"sums must be .* got float32 \(4,\)"),
    ({"theta": np.zeros(6)[::2]}, r"theta must be a C-contiguous float64 array of shape \(3,\)"),
    ({"theta": [0.0, 0.0, 0.0]}, r"theta must be .* got list"),
    ({"grad": np.empty((3, 1))}, r"grad must be a 1-D C-contiguous float64 array, got float64 \(3, 1\)"),
    ({"grad": np.empty(3, dtype=np.float32)}, r"grad must be .* got float32 \(3,\)"),
    ({"count": 0.0}, "count must be > 0, got 0.0"),
    ({"count": np.nan}, "count must be > 0, got nan"),
    ({"n_coef": 4}, r"need 0 <= n_coef <= n_free <= p = 3, got n_coef=4, n_free=3"),
    ({"n_coef": 2, "n_free": 1}, r"got n_coef=2, n_free=1"),
    ({"n_coef": -1}, r"got n_coef=-1"),
])
def test_mean_gradient_names_the_bad_argument(change, message):
    args = {**GOOD, **change}
    kwargs = {k: args.pop(k) for k in ("n_coef", "n_free") if k in args}
    with pytest.raises(ValueError, match=message):
        kernels.mean_gradient(args["sums"], args["count"], args["theta"], args["grad"], **kwargs)


def test_mean_gradient_refuses_a_read_only_grad():
    grad = np.empty(3)
    grad.flags.writeable = False
    with pytest.raises(ValueError, match="grad"):
        kernels.mean_gradient(np.zeros(4), 1.0, np.zeros(3), grad)
