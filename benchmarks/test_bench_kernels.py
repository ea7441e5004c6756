"""Squared-loss gradient on one 4,000,000 x 32 float64 shard: fused Numba and Cython vs NumPy.

Run:

    pytest benchmarks --benchmark-only
    pytest benchmarks --benchmark-only --benchmark-save=NAME    # keep a baseline in .benchmarks/
    pytest benchmarks --benchmark-only --benchmark-compare      # compare with the latest saved one

Each kernel writes [grad_coef (n), grad_intercept, loss_sum]; it is checked once against fastdp's
NumPy ground truth before it is timed, so a wrong kernel fails instead of being benchmarked.
"numba" and "cython" go through loss_grad_sums with preallocated out and scratch (nothing is
allocated in the timed call); "numpy" is the textbook two-pass X.T @ (X @ w + b - y), reading X
twice. extra_info records GB/s (bytes of X read per call / min time) and rows/s.
"""

from collections.abc import Callable
from typing import NamedTuple

import numpy as np
import pytest

from fastdp.kernels import loss_grad_sums, n_blocks

ROWS, FEATURES = 4_000_000, 32  # X: 1.02 GB
RTOL = 1e-10


class Shard(NamedTuple):
    X: np.ndarray
    y: np.ndarray
    coef: np.ndarray
    intercept: float


@pytest.fixture(scope="session")
def shard() -> Shard:
    """One float64 regression shard, with coef far from the fit so the gradient is large."""
    rng = np.random.default_rng(0)
    X = rng.standard_normal((ROWS, FEATURES))
    y = X @ rng.standard_normal(FEATURES) + rng.standard_normal(ROWS)
    return Shard(X, y, rng.standard_normal(FEATURES), 0.5)


@pytest.fixture(scope="session")
def reference(shard: Shard) -> np.ndarray:
    """fastdp's ground truth (backend "numpy") on the shard: [grad_coef, grad_intercept, loss_sum]."""
    return loss_grad_sums("squared", *shard, np.empty(FEATURES + 2), backend="numpy")


def numpy_two_pass(s: Shard, out: np.ndarray) -> np.ndarray:
    """The NumPy reference: margins, then X.T @ residual; out <- [grad_coef, grad_intercept, loss]."""
    n = s.X.shape[1]
    r = s.X @ s.coef + s.intercept - s.y
    out[:n] = s.X.T @ r
    out[n] = r.sum()
    out[n + 1] = 0.5 * (r @ r)
    return out


def make_kernel(name: str, s: Shard) -> Callable[[], np.ndarray]:
    """A no-argument call of kernel `name` on the shard; its output buffers are allocated here, once."""
    out = np.empty(s.X.shape[1] + 2)
    if name == "numpy":
        return lambda: numpy_two_pass(s, out)
    scratch = np.empty((n_blocks(s.X.shape[0]), s.X.shape[1] + 2))
    return lambda: loss_grad_sums("squared", *s, out, backend=name, scratch=scratch)


def assert_matches(out: np.ndarray, ref: np.ndarray) -> None:
    """Gradient (coef and intercept) within RTOL of its norm; loss sum within RTOL."""
    grad_atol = RTOL * np.linalg.norm(ref[:-1])
    np.testing.assert_allclose(out[:-1], ref[:-1], rtol=0, atol=grad_atol, err_msg="gradient")
    np.testing.assert_allclose(out[-1], ref[-1], rtol=RTOL, err_msg="loss sum")


@pytest.mark.benchmark(group="squared-loss gradient, 4e6 x 32 float64")
@pytest.mark.parametrize("name", ["numba", "cython", "numpy"])
def test_squared_loss_grad(benchmark, name: str, shard: Shard, reference: np.ndarray,
                           timings: dict[str, tuple[float, float]]) -> None:
    kernel = make_kernel(name, shard)
    assert_matches(kernel(), reference)
    benchmark.pedantic(kernel, rounds=20, iterations=1, warmup_rounds=2)
    if not benchmark.enabled:  # --benchmark-disable: checked and run once, no stats
        return
    min_s = benchmark.stats.stats.min
    gb_per_s = shard.X.nbytes / min_s / 1e9
    benchmark.extra_info["GB/s"] = gb_per_s
    benchmark.extra_info["rows/s"] = ROWS / min_s
    timings[name] = (min_s, gb_per_s)
