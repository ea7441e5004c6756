"""Benchmark cases of the loss-gradient kernels: data, the contenders, and the correctness check.

    case = CASES["logistic-dense-4e6x32"]
    shard = make_shard(case)                      # X, y, coef, intercept (seeded)
    ref = reference(case, shard)                  # the NumPy/SciPy result: the ground truth
    run = make_kernel(case, "numba", shard)       # a no-argument call, buffers allocated once
    assert_matches(run(), ref)                    # checked before anything is timed

The contenders are "numba" and "cython" (fastdp's fused one-pass kernels through
loss_grad_sums, with preallocated out and scratch and validate=False, as in a training loop; on
wide CSR, reading the column-tiled copy kernels.tile_csr built once, as a full-batch fit does)
and "numpy": the textbook two passes, margins then X.T @ dloss (NumPy for dense X, SciPy for
CSR).
Shared by `fastdp bench kernels`, the pytest-benchmark suite and the asv suite.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import numpy as np
import scipy.sparse as sp

from .. import kernels

CONTENDERS = ("numba", "cython", "numpy")
CLASSES = 10
RTOL = {np.float64: 1e-10, np.float32: 2e-4}


class Case(NamedTuple):
    """One benchmark case: loss, "dense" or "csr", rows x features, dtype of X."""

    loss: str
    fmt: str
    rows: int
    features: int
    dtype: type = np.float64


class Shard(NamedTuple):
    X: Any  # (m, n) ndarray or CSR
    y: np.ndarray
    coef: np.ndarray
    intercept: Any


CASES: dict[str, Case] = {
    "squared-dense-4e6x32": Case("squared", "dense", 4_000_000, 32),
    "squared-dense-4e6x32-f32": Case("squared", "dense", 4_000_000, 32, np.float32),
    "logistic-dense-4e6x32": Case("logistic", "dense", 4_000_000, 32),
    "logistic-dense-4e6x32-f32": Case("logistic", "dense", 4_000_000, 32, np.float32),
    "hinge-dense-1e6x32": Case("hinge", "dense", 1_000_000, 32),
    "softmax10-dense-1e6x64": Case("softmax", "dense", 1_000_000, 64),
    "logistic-csr-2e5x2^20": Case("logistic", "csr", 200_000, 2**20),
    "squared-csr-2e5x2^20": Case("squared", "csr", 200_000, 2**20),
    "softmax10-csr-2e5x2^18": Case("softmax", "csr", 200_000, 2**18),
}


def hashed_text(rows: int, features: int, rng: np.random.Generator,
                dtype: type = np.float64) -> sp.csr_array:
    """CSR like hashed bag-of-words: 50..150 (mean 100) non-zeros per row at random columns,
    sorted, int32 indices."""
    lengths = rng.integers(50, 151, rows)
    indptr = np.zeros(rows + 1, dtype=np.int32)
    np.cumsum(lengths, out=indptr[1:])
    row_of = np.repeat(np.arange(rows, dtype=np.int64), lengths)
    indices = np.sort(row_of * features + rng.integers(0, features, indptr[-1])) - row_of * features
    data = (rng.random(indptr[-1]) / np.sqrt(lengths.mean())).astype(dtype)
    return sp.csr_array((data, indices.astype(np.int32), indptr), shape=(rows, features))


def make_shard(case: Case, seed: int = 0) -> Shard:
    """The case's shard (X of case.dtype), with coef away from the fit so gradients are large."""
    rng = np.random.default_rng(seed)
    if case.fmt == "dense":
        X = np.empty((case.rows, case.features), case.dtype)
        for start in range(0, case.rows, 1 << 18):  # in blocks: no float64 copy of a float32 X
            stop = min(case.rows, start + (1 << 18))
            X[start:stop] = rng.standard_normal((stop - start, case.features))
    else:
        X = hashed_text(case.rows, case.features, rng, case.dtype)
    if case.loss == "softmax":
        W = rng.standard_normal((case.features, CLASSES))
        y = np.argmax(X @ W + rng.gumbel(size=(case.rows, CLASSES)), axis=1)
        return Shard(X, y, (0.5 * rng.standard_normal((case.features, CLASSES))).astype(case.dtype),
                     rng.standard_normal(CLASSES).astype(case.dtype))
    w = rng.standard_normal(case.features)
    z = X @ w + rng.standard_normal(case.rows)
    y = z if case.loss == "squared" else np.where(z > 0, 1.0, -1.0)
    return Shard(X, y.astype(case.dtype), (0.5 * rng.standard_normal(case.features)).astype(
        case.dtype), case.dtype(0.5))


def bytes_of_x(X: Any) -> int:
    """Bytes a kernel reads of X: the array, or CSR data + indices + indptr."""
    if isinstance(X, np.ndarray):
        return X.nbytes
    return X.data.nbytes + X.indices.nbytes + X.indptr.nbytes


def _two_pass_squared(s: Shard, out: np.ndarray) -> np.ndarray:
    """The textbook squared-loss gradient: r = X w + b - y, then X.T r; out <- [grad, grad_b, loss]."""
    n = s.X.shape[1]
    r = s.X @ s.coef + s.intercept - s.y
    out[:n] = s.X.T @ r
    out[n] = r.sum()
    out[n + 1] = 0.5 * (r @ r)
    return out


def make_kernel(case: Case, name: str, s: Shard) -> Callable[[], np.ndarray]:
    """A no-argument call of contender `name` on the shard; its buffers are allocated here, once."""
    out = np.empty(kernels.out_size(case.loss, s.coef))
    if name == "numpy":
        if case.loss == "squared" and case.fmt == "dense":
            return lambda: _two_pass_squared(s, out)
        return lambda: kernels.loss_grad_sums(case.loss, *s, out, backend="numpy", validate=False)
    if name not in CONTENDERS:
        raise ValueError(f"name must be one of {list(CONTENDERS)}, got {name!r}")
    K = kernels.n_outputs(case.loss, s.coef)
    if kernels.tiles_pay_off(case.loss, s.X, K):
        tiles = kernels.tile_csr(s.X, n_outputs=K)
        return lambda: kernels.loss_grad_sums(case.loss, *s, out, backend=name, tiles=tiles,
                                              validate=False)
    scratch = np.empty(kernels.scratch_shape(case.loss, s.X, s.coef))
    return lambda: kernels.loss_grad_sums(case.loss, *s, out, backend=name, scratch=scratch,
                                          validate=False)


def reference(case: Case, s: Shard) -> np.ndarray:
    """The NumPy/SciPy result on the shard, in float64 (the ground truth of every contender)."""
    kernels.validate_input(case.loss, *s)
    if case.dtype == np.float64:
        exact = s
    else:
        X = s.X.astype(np.float64)
        exact = Shard(X, s.y.astype(np.float64) if case.loss != "softmax" else s.y,
                      s.coef.astype(np.float64), np.float64(s.intercept) if case.loss != "softmax"
                      else s.intercept.astype(np.float64))
    out = np.empty(kernels.out_size(case.loss, s.coef))
    return kernels.loss_grad_sums(case.loss, *exact, out, backend="numpy")


def assert_matches(case: Case, out: np.ndarray, ref: np.ndarray) -> None:
    """Gradient (coef and intercept) within the dtype's tolerance of its norm; loss sum likewise."""
    rtol = RTOL[case.dtype]
    grad_atol = rtol * np.linalg.norm(ref[:-1])
    np.testing.assert_allclose(out[:-1], ref[:-1], rtol=0, atol=grad_atol, err_msg="gradient")
    np.testing.assert_allclose(out[-1], ref[-1], rtol=rtol, err_msg="loss sum")
