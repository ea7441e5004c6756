"""Loss-gradient kernels on dense and CSR shards: fused Numba and Cython vs the NumPy/SciPy reference.

Run:

    pytest benchmarks --benchmark-only
    pytest benchmarks --benchmark-only --benchmark-save=NAME    # keep a baseline in .benchmarks/
    pytest benchmarks --benchmark-only --benchmark-compare      # compare with the latest saved one
    pytest benchmarks --benchmark-only -k csr                   # only the CSR cases

Cases (all float64):
- squared, dense 4,000,000 x 32 (1 GB): the long-standing case; its "numpy" is the textbook
  two-pass X.T @ (X @ w + b - y);
- logistic, hinge, squared_hinge, dense 1,000,000 x 32; softmax (K = 10), dense 200,000 x 64;
- every scalar loss on a hashed-text-like CSR shard: 200,000 rows, 50..150 (mean 100) non-zeros per
  row, 2**20 columns, int32 indices; softmax (K = 10) on the same rows hashed into 2**18 columns
  (with 2**20 columns its per-block accumulator alone is 84 MB, over the 64 MiB scratch bound, so
  it would run as one block on one thread).
For every case but the first, "numpy" is fastdp's NumPy/SciPy reference (backend "numpy": margins,
then X.T @ dloss). Each kernel's result is checked against the reference once before it is timed,
so a wrong kernel fails instead of being benchmarked. "numba" and "cython" go through
loss_grad_sums with preallocated out and scratch and validate=False (a training loop validates
once). extra_info records GB/s (bytes of X read per call / min time) and rows/s.
"""

from collections.abc import Callable
from typing import Any, NamedTuple

import numpy as np
import pytest
import scipy.sparse as sp

from fastdp import kernels

RTOL = 1e-10
BACKENDS = ["numba", "cython", "numpy"]  # compiled kernels timed before the reference


class Shard(NamedTuple):
    X: Any  # (m, n) float64 ndarray or CSR
    y: np.ndarray
    coef: np.ndarray
    intercept: Any


class Case(NamedTuple):
    loss: str
    fmt: str  # "dense" or "csr"
    rows: int
    features: int
    rounds: int


CASES = {
    "squared-dense-4e6x32": Case("squared", "dense", 4_000_000, 32, 20),
    "logistic-dense-1e6x32": Case("logistic", "dense", 1_000_000, 32, 20),
    "hinge-dense-1e6x32": Case("hinge", "dense", 1_000_000, 32, 20),
    "squared_hinge-dense-1e6x32": Case("squared_hinge", "dense", 1_000_000, 32, 20),
    "softmax10-dense-2e5x64": Case("softmax", "dense", 200_000, 64, 20),
    "squared-csr-2e5x2^20": Case("squared", "csr", 200_000, 2**20, 10),
    "logistic-csr-2e5x2^20": Case("logistic", "csr", 200_000, 2**20, 10),
    "hinge-csr-2e5x2^20": Case("hinge", "csr", 200_000, 2**20, 10),
    "squared_hinge-csr-2e5x2^20": Case("squared_hinge", "csr", 200_000, 2**20, 10),
    "softmax10-csr-2e5x2^18": Case("softmax", "csr", 200_000, 2**18, 10),
}
CLASSES = 10


def hashed_text(rows: int, features: int, rng: np.random.Generator) -> sp.csr_array:
    """CSR like hashed bag-of-words: 50..150 non-zeros per row at random columns, sorted, int32."""
    lengths = rng.integers(50, 151, rows)
    indptr = np.zeros(rows + 1, dtype=np.int32)
    np.cumsum(lengths, out=indptr[1:])
    row_of = np.repeat(np.arange(rows, dtype=np.int64), lengths)
    indices = np.sort(row_of * features + rng.integers(0, features, indptr[-1])) - row_of * features
    data = rng.random(indptr[-1]) / np.sqrt(lengths.mean())
    return sp.csr_array((data, indices.astype(np.int32), indptr), shape=(rows, features))


def make_shard(case: Case) -> Shard:
    """One float64 shard for the case's loss, with coef away from the fit so gradients are large."""
    rng = np.random.default_rng(0)
    if case.fmt == "dense":
        X = rng.standard_normal((case.rows, case.features))
    else:
        X = hashed_text(case.rows, case.features, rng)
    if case.loss == "softmax":
        W = rng.standard_normal((case.features, CLASSES))
        y = np.argmax(X @ W + rng.gumbel(size=(case.rows, CLASSES)), axis=1)
        return Shard(X, y, 0.5 * rng.standard_normal((case.features, CLASSES)),
                     rng.standard_normal(CLASSES))
    w = rng.standard_normal(case.features)
    z = X @ w + rng.standard_normal(case.rows)
    y = z if case.loss == "squared" else np.where(z > 0, 1.0, -1.0)
    return Shard(X, y, 0.5 * rng.standard_normal(case.features), 0.5)


class Loaded(NamedTuple):
    case_id: str
    shard: Shard
    reference: np.ndarray  # fastdp's ground truth (backend "numpy") on the shard


@pytest.fixture(scope="module")
def loaded() -> list[Loaded]:
    """The shard in use and its reference result: one shard in memory at a time (the first is 1 GB)."""
    return []


def load(case_id: str, loaded: list[Loaded]) -> Loaded:
    """The case's shard and reference, built on first use (tests run case by case)."""
    if not loaded or loaded[0].case_id != case_id:
        loaded.clear()
        loss = CASES[case_id].loss
        shard = make_shard(CASES[case_id])
        kernels.validate_input(loss, *shard)
        ref = kernels.loss_grad_sums(loss, *shard, np.empty(kernels.out_size(loss, shard.coef)),
                                     backend="numpy")
        loaded.append(Loaded(case_id, shard, ref))
    return loaded[0]


def bytes_of_x(X) -> int:
    return X.nbytes if isinstance(X, np.ndarray) else X.data.nbytes + X.indices.nbytes + X.indptr.nbytes


def numpy_two_pass(s: Shard, out: np.ndarray) -> np.ndarray:
    """The textbook squared-loss gradient: margins, then X.T @ residual; out <- [grad, grad_b, loss]."""
    n = s.X.shape[1]
    r = s.X @ s.coef + s.intercept - s.y
    out[:n] = s.X.T @ r
    out[n] = r.sum()
    out[n + 1] = 0.5 * (r @ r)
    return out


def make_kernel(case_id: str, name: str, s: Shard) -> Callable[[], np.ndarray]:
    """A no-argument call of backend `name` on the shard; its output buffers are allocated here, once."""
    loss = CASES[case_id].loss
    out = np.empty(kernels.out_size(loss, s.coef))
    if name == "numpy":
        if case_id == "squared-dense-4e6x32":
            return lambda: numpy_two_pass(s, out)
        return lambda: kernels.loss_grad_sums(loss, *s, out, backend="numpy", validate=False)
    scratch = np.empty(kernels.scratch_shape(loss, s.X, s.coef))
    return lambda: kernels.loss_grad_sums(loss, *s, out, backend=name, scratch=scratch, validate=False)


def assert_matches(out: np.ndarray, ref: np.ndarray) -> None:
    """Gradient (coef and intercept) within RTOL of its norm; loss sum within RTOL."""
    grad_atol = RTOL * np.linalg.norm(ref[:-1])
    np.testing.assert_allclose(out[:-1], ref[:-1], rtol=0, atol=grad_atol, err_msg="gradient")
    np.testing.assert_allclose(out[-1], ref[-1], rtol=RTOL, err_msg="loss sum")


@pytest.mark.parametrize("name", BACKENDS)
@pytest.mark.parametrize("case_id", list(CASES))
def test_loss_grad(benchmark, case_id: str, name: str, loaded: list[Loaded],
                   timings: dict[tuple[str, str], tuple[float, float]]) -> None:
    case = CASES[case_id]
    _, shard, reference = load(case_id, loaded)
    benchmark.group = case_id
    kernel = make_kernel(case_id, name, shard)
    assert_matches(kernel(), reference)
    benchmark.pedantic(kernel, rounds=case.rounds, iterations=1, warmup_rounds=2)
    if not benchmark.enabled:  # --benchmark-disable: checked and run once, no stats
        return
    min_s = benchmark.stats.stats.min
    gb_per_s = bytes_of_x(shard.X) / min_s / 1e9
    benchmark.extra_info["GB/s"] = gb_per_s
    benchmark.extra_info["rows/s"] = case.rows / min_s
    timings[case_id, name] = (min_s, gb_per_s)
