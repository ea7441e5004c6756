"""Data, timing and checking helpers shared by the asv benchmarks (no benchmarks here).

Shards mirror benchmarks/test_bench_kernels.py: X ~ N(0, 1) (dense) or hashed-text-like CSR,
labels from a random linear model plus noise, and coef away from the fit so gradients are large.
"""

import time

import numpy as np
import scipy.sparse as sp

from fastdp import kernels

DENSE_ROWS = 1_000_000
DENSE_FEATURES = 32
CLASSES = 10                  # K of the softmax cases
CSR_ROWS = 100_000
CSR_FEATURES = 2**20
CSR_NNZ = (50, 150)           # non-zeros per row: uniform in [50, 150], mean 100
RTOL = {"float64": 1e-10, "float32": 1e-6}  # compiled kernel vs NumPy reference (see assert_matches)


def dense_shard(loss: str, dtype: str, rows: int = DENSE_ROWS, features: int = DENSE_FEATURES, seed: int = 0):
    """(X, y, coef, intercept) for `loss` with C-contiguous X of `dtype`; y already in the kernels'
    dtype (X's dtype for the scalar losses, intp labels for softmax) so no call copies it."""
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((rows, features), dtype=np.dtype(dtype).type)
    if loss == "softmax":
        W = rng.standard_normal((features, CLASSES))
        y = np.argmax(X @ W + rng.gumbel(size=(rows, CLASSES)), axis=1).astype(np.intp)
        return X, y, 0.5 * rng.standard_normal((features, CLASSES)), rng.standard_normal(CLASSES)
    w = rng.standard_normal(features)
    z = X @ w + rng.standard_normal(rows)
    y = z if loss == "squared" else np.where(z > 0, 1.0, -1.0)
    return X, y.astype(X.dtype), 0.5 * rng.standard_normal(features), 0.5


def hashed_text(rows: int = CSR_ROWS, features: int = CSR_FEATURES, seed: int = 0) -> sp.csr_matrix:
    """CSR like HashingFeaturizer's output: 50..150 non-zeros per row at random columns, indices
    sorted per row (int32), values +-1/sqrt(row length) (alternate signs, l2-normalized rows)."""
    rng = np.random.default_rng(seed)
    lo, hi = CSR_NNZ
    lengths = rng.integers(lo, hi + 1, rows)
    cols = rng.integers(0, features, (rows, hi), dtype=np.int32)
    cols[np.arange(hi) >= lengths[:, None]] = features  # drop the draws past each row's length...
    cols.sort(axis=1)                                      # ...which sort to the end of the row
    indices = cols[cols < features]
    indptr = np.zeros(rows + 1, dtype=np.int32)
    np.cumsum(lengths, out=indptr[1:])
    data = rng.choice([-1.0, 1.0], indices.size) / np.sqrt(np.repeat(lengths, lengths))
    return sp.csr_matrix((data, indices, indptr), shape=(rows, features))


def logistic_csr_shard(seed: int = 0):
    rng = np.random.default_rng(seed + 1)
    X = hashed_text(seed=seed)
    z = X @ rng.standard_normal(X.shape[1]) + 0.1 * rng.standard_normal(X.shape[0])
    return X, np.where(z > 0, 1.0, -1.0), 0.5 * rng.standard_normal(X.shape[1]), 0.5


def bytes_of_x(X) -> int:
    """Bytes of X one kernel call reads: the array, or CSR's data + indices + indptr."""
    return X.nbytes if isinstance(X, np.ndarray) else X.data.nbytes + X.indices.nbytes + X.indptr.nbytes


def kernel_call(loss: str, shard, backend: str):
    """A no-argument call of loss_grad_sums on the shard, its out and scratch allocated once here
    (validate=False: a training loop validates once, then calls the kernel every step)."""
    X, y, coef, intercept = shard
    out = np.empty(kernels.out_size(loss, coef))
    scratch = None if backend == "numpy" else np.empty(kernels.scratch_shape(loss, X, coef))
    return lambda: kernels.loss_grad_sums(loss, X, y, coef, intercept, out, backend=backend,
                                          scratch=scratch, validate=False)


def reference(loss: str, shard) -> np.ndarray:
    """fastdp's ground truth on the shard: the NumPy/SciPy two-pass kernel, validated input."""
    return kernels.loss_grad_sums(loss, *shard, np.empty(kernels.out_size(loss, shard[2])),
                                  backend="numpy", validate=True)


def assert_matches(out: np.ndarray, ref: np.ndarray, rtol: float) -> None:
    """Gradient (coef and intercept) within rtol of its norm; loss sum within rtol."""
    np.testing.assert_allclose(out[:-1], ref[:-1], rtol=0, atol=rtol * np.linalg.norm(ref[:-1]),
                               err_msg="gradient differs from the NumPy reference")
    np.testing.assert_allclose(out[-1], ref[-1], rtol=rtol, err_msg="loss sum differs from the NumPy reference")


def best_time(fn, repeat: int, warmup: int = 1) -> float:
    """Minimum wall seconds of fn() over `repeat` calls, after `warmup` untimed calls."""
    for _ in range(warmup):
        fn()
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best
