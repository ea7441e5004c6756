"""Pure array kernels: the loss and gradient SUMS over one shard's rows.

    loss_grad(loss, X, y, coef, intercept, backend="auto") -> (loss_sum, grad_coef, grad_intercept)
    loss_grad_sums(loss, X, y, coef, intercept, out, backend=..., scratch=..., validate=...,
                   tiles=...) -> out
    tile_csr(X, n_outputs=K) -> ColumnCSR (K = 1) or TiledCSR (softmax), the copy of wide CSR X
                               that loss_grad_sums(tiles=) reads

Sums, never means: the global mean is the Allreduce of the sums divided by the global row count,
whatever the shard sizes. No regularization in the loss kernels: after the reduction,
mean_gradient divides the reduced sums by the row count and adds the L2 penalty's gradient, in
one pass.

Losses (losses.LOSS_CODES): "squared" (regression), "logistic", "hinge", "squared_hinge" (binary,
y in {-1, +1}) take coef (n,) and a float intercept; "softmax" (K classes, integer y in 0..K-1)
takes coef (n, K) and intercept (K,). X is dense (C-contiguous float32/float64) or scipy.sparse CSR
(float32/float64 data, int32/int64 indices).

Backends share one contract: "numba" (numba_dense.py, numba_sparse.py), "cython"
(csrc/dense_loss.pyx, csrc/sparse_loss.pyx, OpenMP) and "numpy" (reference.py, the ground truth
in tests). "auto", the default, picks one of the compiled two by X's format and the loss
(pick_backend). The compiled backends accumulate in float64 over fixed blocks of rows, one private
accumulator per block, summed in block order, so their results do not depend on the number of
threads. Dense blocks have BLOCK_ROWS rows; CSR blocks are sized by `sparse_block_rows`. With
tiles (wide CSR: columns.py, tiles.py) every sum runs in an order fixed by the shape, so those
results do not depend on the thread count either.

This package imports nothing else of fastdp and knows nothing of MPI.
"""

import operator
from collections.abc import Callable
from typing import Any

import numba
import numpy as np
import scipy.sparse as sp

from . import (_cython_dense, _cython_sparse, columns, numba_batches, numba_dense, numba_finite,
               numba_margins, numba_mean, numba_rows, numba_sparse, reference)
from .losses import BINARY_LOSSES, LOSS_CODES, MULTICLASS_LOSSES
from .columns import ColumnCSR, column_csr
from .tiles import (CHUNK_ROWS as TILE_CHUNK_ROWS, MIN_FEATURES as TILE_MIN_FEATURES, TILE_COLS,
                    TiledCSR, tile_csr as _tile_arrays)

WideCSR = ColumnCSR | TiledCSR  # what tile_csr builds and loss_grad_sums(tiles=) reads

BACKENDS: tuple[str, ...] = ("numba", "cython", "numpy")  # the kernels' implementations
BACKEND_CHOICES: tuple[str, ...] = ("auto",) + BACKENDS  # what a caller may pass (pick_backend)
BLOCK_ROWS = 4096
FLOAT_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))  # X's dtypes (as dtypes: faster to test)
PARALLEL_CHECK_VALUES = 1 << 20  # first_nonfinite: smaller arrays are checked on the calling thread
SPARSE_SCRATCH_BYTES = 64 * 2**20  # about the size of a CSR shard's per-block accumulators (see sparse_block_rows)
OPENMP: bool = _cython_dense.HAVE_OPENMP and _cython_sparse.HAVE_OPENMP  # False: Cython runs on one thread

# (backend, X is CSR, loss is multiclass) -> per-block kernel
_BLOCK_KERNELS = {
    ("numba", False, False): numba_dense.dense_block_sums,
    ("numba", False, True): numba_dense.dense_softmax_block_sums,
    ("numba", True, False): numba_sparse.csr_block_sums,
    ("numba", True, True): numba_sparse.csr_softmax_block_sums,
    ("cython", False, False): _cython_dense.dense_block_sums,
    ("cython", False, True): _cython_dense.dense_softmax_block_sums,
    ("cython", True, False): _cython_sparse.csr_block_sums,
    ("cython", True, True): _cython_sparse.csr_softmax_block_sums,
}
# (backend, loss is multiclass) -> kernel over wide CSR and its copy: column-major (columns.py)
# for the scalar losses, column tiles (tiles.py) for softmax
_WIDE_KERNELS = {
    ("numba", False): numba_sparse.column_csr_sums,
    ("numba", True): numba_sparse.tiled_csr_softmax_sums,
    ("cython", False): _cython_sparse.column_csr_sums,
    ("cython", True): _cython_sparse.tiled_csr_softmax_sums,
}


def n_blocks(n_rows: int, block_rows: int = BLOCK_ROWS) -> int:
    """Number of row blocks of `block_rows` rows the compiled kernels cut a shard of n_rows into."""
    return -(-n_rows // block_rows)


def sparse_block_rows(n_rows: int, width: int) -> int:
    """Rows per block of a CSR shard whose per-block accumulator holds `width` float64 values.

    A CSR block accumulates into a dense row of width = coef.size + K + 1 values (2**20 features:
    8 MiB per block), so the number of blocks is capped at about SPARSE_SCRATCH_BYTES of them,
    max_blocks = max(1, round(SPARSE_SCRATCH_BYTES / (8 * width))) (rounded, not floored: 2**20
    features give 8 blocks rather than 7, which 2, 4 or 8 threads share evenly), and blocks grow
    beyond BLOCK_ROWS rows when the shard is long enough to need more:

        block_rows = max(BLOCK_ROWS, ceil(n_rows / max_blocks))

    The rule depends only on the shard's shape, never on the thread count, so results stay
    bitwise independent of the threads (fewer blocks than threads leaves threads idle).
    """
    max_blocks = max(1, round(SPARSE_SCRATCH_BYTES / (8 * width)))
    return max(BLOCK_ROWS, -(-n_rows // max_blocks))


def n_outputs(loss: str, coef: np.ndarray) -> int:
    """K, the margins per row: coef.shape[1] for "softmax", 1 for the scalar losses."""
    return coef.shape[1] if loss in MULTICLASS_LOSSES else 1


def out_size(loss: str, coef: np.ndarray) -> int:
    """Length of loss_grad_sums' `out`: coef.size + K + 1 ([grad_coef, grad_intercept, loss_sum])."""
    return np.size(coef) + n_outputs(loss, coef) + 1


def _is_sparse(X) -> bool:
    """sp.issparse(X), answered without it for an ndarray (its ABC check costs a step of a small
    mini-batch about 0.2 us a call)."""
    return not isinstance(X, np.ndarray) and sp.issparse(X)


def _is_csr(X) -> bool:
    return _is_sparse(X) and X.format == "csr"


def _block_rows(X, width: int) -> int:
    return sparse_block_rows(X.shape[0], width) if _is_csr(X) else BLOCK_ROWS


def scratch_shape(loss: str, X, coef: np.ndarray) -> tuple[int, int]:
    """Shape of the compiled kernels' `scratch`: (blocks, coef.size + K + 1) float64."""
    width = out_size(loss, coef)
    return n_blocks(X.shape[0], _block_rows(X, width)), width


def _row_of(indptr: np.ndarray, p: int) -> int:
    """Row of CSR whose entries include position p."""
    return int(np.searchsorted(indptr, p, side="right")) - 1


def _check_csr_bounds(indices: np.ndarray, indptr: np.ndarray, n_features: int) -> None:
    """O(nnz) checks that keep a CSR product in bounds: indptr non-decreasing, indices in 0..n-1
    (array lengths and end points already checked)."""
    drops = np.flatnonzero(indptr[1:] < indptr[:-1])
    if drops.size:
        r = int(drops[0])
        raise ValueError(f"X (CSR) indptr decreases at row {r} ({indptr[r]} then {indptr[r + 1]}); "
                         "it must be non-decreasing")
    if indices.size == 0:
        return
    if indices.min() < 0 or indices.max() >= n_features:
        p = int(np.flatnonzero((indices < 0) | (indices >= n_features))[0])
        if indices[p] < 0:
            raise ValueError(f"X (CSR) has negative column index {indices[p]} at row {_row_of(indptr, p)}")
        raise ValueError(f"X (CSR) has column index {indices[p]} at row {_row_of(indptr, p)} "
                         f"but only {n_features} features")


def _check_csr_content(indices: np.ndarray, indptr: np.ndarray, n_features: int) -> None:
    """O(nnz) checks of a CSR matrix whose array lengths and end points are already checked."""
    _check_csr_bounds(indices, indptr, n_features)
    if indices.size == 0:
        return
    descending = indices[1:] < indices[:-1]
    starts = indptr[1:-1]
    starts = starts[(starts > 0) & (starts < indices.size)]
    descending[starts - 1] = False  # a row's first index may be below the previous row's last
    if descending.any():
        p = int(np.argmax(descending)) + 1
        raise ValueError(f"X (CSR) indices are not sorted in row {_row_of(indptr, p)}; "
                         "sort them with X.sort_indices()")


def _prepare_csr(X, validate: bool):
    """(data, indices, indptr) of CSR X as contiguous arrays, checked."""
    if X.ndim != 2:
        raise ValueError(f"X (CSR) must be 2-D (rows, features), got shape {X.shape}")
    if X.data.dtype not in (np.float32, np.float64):
        raise ValueError(f"X (CSR) data must be float32 or float64, got {X.data.dtype}; "
                         "convert with X.astype(np.float64)")
    data, indices, indptr = _csr_arrays(X)
    if validate:
        _check_csr_content(indices, indptr, X.shape[1])
    return (np.ascontiguousarray(data), np.ascontiguousarray(indices), np.ascontiguousarray(indptr))


def _csr_arrays(X):
    """(data, indices, indptr) of 2-D CSR X, indices and indptr of one integer dtype, their
    lengths and end points checked (O(1))."""
    data, indices, indptr = X.data, X.indices, X.indptr
    if indices.dtype not in (np.int32, np.int64) or indptr.dtype not in (np.int32, np.int64):
        raise ValueError(f"X (CSR) indices and indptr must be int32 or int64, got "
                         f"{indices.dtype} and {indptr.dtype}")
    if indices.dtype != indptr.dtype:
        indices, indptr = indices.astype(np.int64), indptr.astype(np.int64)
    m = X.shape[0]
    if indptr.shape != (m + 1,):
        raise ValueError(f"X (CSR) has {m} rows but indptr has shape {indptr.shape} (needs {m + 1})")
    if indices.shape != data.shape or data.ndim != 1:
        raise ValueError(f"X (CSR) indices {indices.shape} and data {data.shape} must be 1-D "
                         "of the same length")
    if indptr[0] != 0 or indptr[-1] != data.size:
        raise ValueError(f"X (CSR) indptr must start at 0 and end at nnz = {data.size}, "
                         f"got {indptr[0]} .. {indptr[-1]}")
    return data, indices, indptr


def _check_writable(a, name: str) -> None:
    """An output argument must be a writable NumPy array."""
    if not isinstance(a, np.ndarray):
        raise ValueError(f"{name} must be a NumPy array, got {type(a).__name__}")
    if not a.flags.writeable:
        raise ValueError(f"{name} is read-only")


def _real(a, name: str) -> np.ndarray:
    """a as an array, which must hold real numbers (bool, integer or float): a complex value
    would lose its imaginary part silently and None would become NaN in a float64 cast."""
    a = np.asarray(a)
    if a.dtype.kind not in "biuf":
        raise ValueError(f"{name} must hold real numbers, got dtype {a.dtype}")
    return a


def backend_error(backend) -> str | None:
    """The message naming a bad `backend` (not one of BACKEND_CHOICES), or None if it is good."""
    if not isinstance(backend, str) or backend not in BACKEND_CHOICES:
        return f"backend must be one of {list(BACKEND_CHOICES)}, got {backend!r}"
    return None


def pick_backend(loss: str, X, backend: str = "auto") -> str:
    """The backend that runs `loss` over X: `backend` itself, unless it is "auto".

    "auto" picks "cython" for dense X (any loss) when the Cython dense kernels were built with
    AVX-512 (_cython_dense.SIMD_ROWS: csrc/simd_rows.h) and OpenMP (OPENMP), and "numba"
    otherwise (CSR X, or a build without them: a Cython build without OpenMP runs on one
    thread): the faster of the two on most shapes of each path in benchmarks/bench_backends.py
    and `fastdp bench kernels` (README, Measured). The choice depends on the build and X's format
    only (the rule does not use `loss` today), never on timings, so every rank of one
    installation makes the same one.
    Raises ValueError for a backend not in BACKEND_CHOICES.
    """
    error = backend_error(backend)
    if error is not None:
        raise ValueError(error)
    if backend != "auto":
        return backend
    return "cython" if not _is_sparse(X) and _cython_dense.SIMD_ROWS and OPENMP else "numba"


def _prepare(loss: str, X, y, coef, intercept, validate: bool):
    """Check the arguments; return (X parts, y, coef, intercept, K) in the kernels' dtypes.

    X parts: (X,) for dense X, (data, indices, indptr) for CSR. validate=False skips the checks
    that read whole arrays (CSR structure, label values); the O(1) shape and dtype checks always run.
    """
    if not isinstance(loss, str) or loss not in LOSS_CODES:
        raise ValueError(f"loss must be one of {sorted(LOSS_CODES)}, got {loss!r}")
    if _is_csr(X):
        parts = _prepare_csr(X, validate)
        dtype = parts[0].dtype
    elif _is_sparse(X):
        raise ValueError(f"X is a sparse matrix in {X.format.upper()} format; the kernels take CSR "
                         "(convert with X.tocsr()) or a dense array")
    elif not isinstance(X, np.ndarray):
        raise ValueError(f"X must be a NumPy array or a scipy.sparse CSR matrix, got {type(X).__name__}")
    elif X.ndim != 2:
        raise ValueError(f"X must be 2-D (rows, features), got {X.ndim}-D with shape {X.shape}")
    elif X.dtype not in FLOAT_DTYPES or not X.flags.c_contiguous:
        raise ValueError(f"X must be C-contiguous float32 or float64, got {X.dtype} "
                         f"(C-contiguous: {X.flags.c_contiguous}); see fastdp.validation.check_shard")
    else:
        parts = (X,)
        dtype = X.dtype
    m, n = X.shape
    if n == 0:
        raise ValueError("X has 0 features")
    y = np.asarray(y)
    if y.shape != (m,):
        raise ValueError(f"X has {m} rows but y has shape {y.shape}")
    coef = np.ascontiguousarray(_real(coef, "coef"), dtype=np.float64)
    intercept = _real(intercept, "intercept")
    if loss in MULTICLASS_LOSSES:
        if coef.ndim != 2 or coef.shape[1] < 2:
            raise ValueError(f"coef must be 2-D (n_features, n_classes) with n_classes >= 2 for loss "
                             f"{loss!r}, got shape {coef.shape}")
        K = coef.shape[1]
        if coef.shape[0] != n:
            raise ValueError(f"X has {n} features but coef has shape {coef.shape} (needs ({n}, {K}))")
        if intercept.shape != (K,):
            raise ValueError(f"intercept must have shape ({K},) to match coef's {K} classes, "
                             f"got shape {intercept.shape}")
        intercept = np.ascontiguousarray(intercept, dtype=np.float64)
        if y.dtype.kind not in "iu":
            raise ValueError(f"y must hold integer class labels for loss {loss!r}, got dtype {y.dtype}")
        error = labels_error(loss, y, K) if validate else None
        if error:
            raise ValueError(error)
        y = np.ascontiguousarray(y, dtype=np.intp)
    else:
        K = 1
        if coef.shape != (n,):
            raise ValueError(f"X has {n} features but coef has shape {coef.shape}")
        if intercept.ndim != 0:
            raise ValueError(f"intercept must be a number for loss {loss!r}, got shape {intercept.shape}")
        intercept = float(intercept)
        if y.dtype.kind not in "biuf":
            raise ValueError(f"y must be numeric, got dtype {y.dtype}")
        y = np.ascontiguousarray(y, dtype=dtype)
        error = labels_error(loss, y, K) if validate else None
        if error:
            raise ValueError(error)
    return parts, y, coef, intercept, K


def labels_error(loss: str, y: np.ndarray, n_outputs: int) -> str | None:
    """The message naming y's first label the loss cannot take, or None: softmax labels must lie
    in 0..n_outputs-1, the binary losses' targets be -1 or +1 (the squared loss takes any).

    y: (m,) numeric, integer labels for softmax.
    """
    if loss in MULTICLASS_LOSSES:
        if y.size and (y.min() < 0 or y.max() >= n_outputs):
            bad = y.min() if y.min() < 0 else y.max()
            return (f"y has label {bad} but coef has {n_outputs} classes "
                    f"(labels must be 0..{n_outputs - 1})")
    elif loss in BINARY_LOSSES and not np.all((y == 1) | (y == -1)):
        p = int(np.flatnonzero((y != 1) & (y != -1))[0])
        return f"y must be -1 or +1 for loss {loss!r}, got {y[p]} at row {p}"
    return None


def validate_csr(X) -> None:
    """validate_input's checks of a CSR X alone, whatever the loss and y: its dtypes, array
    lengths, indptr non-decreasing, column indices in range and sorted within each row (O(nnz)).
    Raises ValueError as validate_input does."""
    _prepare_csr(X, validate=True)


def validate_input(loss: str, X, y, coef, intercept) -> None:
    """Every check loss_grad_sums(validate=True) makes, including those that read whole arrays.

    Raises ValueError naming the argument and the problem, e.g. "X (CSR) has column index 70000
    at row 12 but only 65536 features", "X (CSR) indices are not sorted in row 3", "y has label 7
    but coef has 5 classes (labels must be 0..4)". A training loop calls this once, then
    loss_grad_sums(..., validate=False) at every step.
    """
    _prepare(loss, X, y, coef, intercept, validate=True)


def tiles_pay_off(loss: str, X, n_outputs: int = 1) -> bool:
    """True when a copy of X (tile_csr) speeds up loss_grad_sums at a bounded memory cost: X is
    CSR whose coef, features x n_outputs (K classes for "softmax", else 1) values, holds at least
    TILE_MIN_FEATURES values, so coef and the gradient no longer fit in a core's L2. The copy
    holds X's data and indices again, plus
    - for the scalar losses' column-major copy (columns.py), 8 bytes per feature: no more than
      the per-block gradients of the plain CSR kernel, which it replaces;
    - for softmax's tiles (tiles.py), 8 bytes per row and tile, which must come to no more than
      X's data and indices (many classes over few non-zeros per row would make it larger)."""
    if not (_is_csr(X) and loss in LOSS_CODES and X.shape[1] * n_outputs >= TILE_MIN_FEATURES):
        return False
    if n_outputs == 1:
        return True
    n_tiles = -(-X.shape[1] // max(1, TILE_COLS // n_outputs))
    return 8 * n_tiles * X.shape[0] <= X.nnz * (X.data.itemsize + X.indices.itemsize)


def _positive_int(value, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
    return int(value)


def tile_csr(X, n_outputs: int = 1, tile_cols: int | None = None) -> WideCSR:
    """The copy of CSR X that loss_grad_sums(..., tiles=) reads, built once (one pass over X,
    about X's data and indices in memory again), for a loss with n_outputs margins per row:
    - n_outputs = 1 (the scalar losses): a ColumnCSR, X column by column; the kernels form the
      margins from X's rows and the gradient from the copy's columns (fastdp/kernels/columns.py);
    - n_outputs = K >= 2 (softmax): a TiledCSR, X in column tiles; the kernels read it instead
      of X (fastdp/kernels/tiles.py).
    X is validated as loss_grad_sums' validate=True does (bounds, indptr, sorted indices).

    n_outputs: K, the margins per row of the loss it serves (coef's columns for "softmax", else 1)
    tile_cols: the widest tile, in columns. ColumnCSR: default columns.TILE_COLS = 2**14, the
               unit of work of the gradient pass's threads. TiledCSR: default TILE_COLS // K,
               TILE_COLS = 2**17: a tile's float64 coef takes 1 MiB, a core's L2 on the machine
               fastdp was tuned on, where the width was measured (tiles.py).
    """
    if not _is_csr(X):
        raise ValueError(f"X must be a scipy.sparse CSR matrix to be tiled, got {type(X).__name__}")
    K = _positive_int(n_outputs, "n_outputs")
    if tile_cols is not None:
        tile_cols = _positive_int(tile_cols, "tile_cols")
    data, indices, indptr = _prepare_csr(X, validate=True)
    n = X.shape[1]
    if n == 0:
        raise ValueError("X has 0 features")
    if K == 1:
        return column_csr(data, indices, indptr, n, columns.CHUNK_ROWS, tile_cols or columns.TILE_COLS)
    return _tile_arrays(data, indices, indptr, n, TILE_CHUNK_ROWS, tile_cols or max(1, TILE_COLS // K),
                        K)


def _check_tiles(tiles, X, parts: tuple, K: int) -> None:
    """O(1) checks that `tiles` is tile_csr(X, n_outputs=K); parts: X's arrays as _prepare gave
    them (a ColumnCSR's kernels read X's (data, indices, indptr) too, in the copy's dtypes)."""
    dtype = parts[0].dtype
    if not isinstance(tiles, (ColumnCSR, TiledCSR)):
        raise ValueError(f"tiles must be a ColumnCSR or TiledCSR from fastdp.kernels.tile_csr(X), "
                         f"got {type(tiles).__name__}")
    if tiles.n_outputs != K or isinstance(tiles, TiledCSR) != (K > 1):
        raise ValueError(f"tiles were built for {tiles.n_outputs} margin(s) per row "
                         f"({type(tiles).__name__}) but the loss has {K}: build them with "
                         f"tile_csr(X, n_outputs={K})")
    if not _is_csr(X) or tiles.shape != X.shape or tiles.nnz != X.nnz or tiles.data.dtype != dtype:
        raise ValueError(f"tiles were built from another X: tiles {tiles.shape} with {tiles.nnz} "
                         f"non-zeros of {tiles.data.dtype}, X {X.shape}"
                         + (f" with {X.nnz} non-zeros of {dtype}" if _is_csr(X) else " (dense)"))
    if isinstance(tiles, ColumnCSR) and tiles.rows.dtype != parts[1].dtype:
        raise ValueError(f"tiles were built from another X: their indices are {tiles.rows.dtype}, "
                         f"X's {parts[1].dtype}")


def loss_grad_sums(loss: str, X, y, coef, intercept, out: np.ndarray, *, backend: str = "auto",
                   scratch: np.ndarray | None = None, validate: bool = True,
                   tiles: WideCSR | None = None) -> np.ndarray:
    """Write the shard's gradient and loss sums into `out`; the allocation-free form of loss_grad.

    X:         (m, n) C-contiguous float32/float64 ndarray, or scipy.sparse CSR (float32/float64
               data, int32/int64 indices)
    y:         (m,) targets, cast to X's dtype (scalar losses; binary losses: -1 or +1), or integer
               labels 0..K-1 ("softmax"; any integer dtype, cast to intp); a loop that passes y
               already in that dtype is not copied
    coef:      (n,) (scalar losses) or (n, K) ("softmax"); cast to float64
    intercept: float (scalar losses) or (K,) ("softmax")
    out:       (coef.size + K + 1,) float64, OUT <- [grad_coef (coef.size, row-major), grad_intercept
               (K), loss_sum]; K = 1 for the scalar losses, which gives the (n + 2,) layout
    backend:   "auto" (pick_backend chooses by X's format and the loss), "numba", "cython" or
               "numpy"
    scratch:   optional scratch_shape(loss, X, coef) float64 for the compiled backends' per-block
               sums (allocated when None; ignored by "numpy")
    validate:  True runs every check (validate_input); False only the O(1) shape and dtype checks,
               for a loop that validated its input once
    tiles:     optional tile_csr(X, n_outputs=K), for CSR X: the compiled backends read it (and,
               for the scalar losses, X's rows) instead of X alone (faster when
               tiles_pay_off(loss, X, K)); it must be rebuilt when X changes (shape, nnz and
               dtype are checked, not the values). "numpy" ignores it.
    Returns out. An empty shard (m = 0) gives zeros.
    """
    backend = pick_backend(loss, X, backend)
    parts, y, coef, intercept, K = _prepare(loss, X, y, coef, intercept, validate)
    size = coef.size + K + 1
    _check_writable(out, "out")
    if out.shape != (size,) or out.dtype != np.float64:
        raise ValueError(f"out must be float64 of shape ({size},), got {out.dtype} {out.shape}")
    if tiles is not None:
        _check_tiles(tiles, X, parts, K)
    if backend == "numpy":
        return reference.sums(loss, X, y, coef, intercept, out)
    if tiles is not None:
        sums = out if out.flags.c_contiguous else np.empty(size)
        if loss in MULTICLASS_LOSSES:
            _WIDE_KERNELS[backend, True](tiles.data, tiles.indices, tiles.seg, tiles.bounds, y, coef,
                                         intercept, sums, tiles.work, tiles.chunk_rows,
                                         get_num_threads()[backend])
        else:
            _WIDE_KERNELS[backend, False](LOSS_CODES[loss], *parts, tiles.data, tiles.rows,
                                          tiles.colptr, tiles.bounds, y, coef, intercept, sums,
                                          tiles.work, tiles.chunk_rows)
        if sums is not out:
            out[:] = sums
        return out
    csr = len(parts) == 3
    block_rows = _block_rows(X, size)
    shape = (n_blocks(X.shape[0], block_rows), size)
    if scratch is not None:
        _check_writable(scratch, "scratch")
        if scratch.shape != shape or scratch.dtype != np.float64 or not scratch.flags.c_contiguous:
            raise ValueError(f"scratch must be float64 of shape {shape}, C-contiguous, got "
                             f"{scratch.dtype} {scratch.shape}")
    direct = shape[0] <= 1 and out.flags.c_contiguous  # one block (or none): sums go straight to out
    if direct:
        sums = out.reshape(1, size)
    else:
        sums = np.empty(shape) if scratch is None else scratch
    multiclass = loss in MULTICLASS_LOSSES
    kernel = _BLOCK_KERNELS[backend, csr, multiclass]
    if multiclass:
        kernel(*parts, y, coef, intercept, sums, block_rows)
    else:
        kernel(LOSS_CODES[loss], *parts, y, coef, intercept, sums, block_rows)
    if shape[0] == 0:
        out[:] = 0.0
    elif not direct:
        np.sum(sums, axis=0, out=out)
    return out


def bind_batch_sums(loss: str, X, y, coef, intercept, out: np.ndarray,
                    backend: str = "auto") -> Callable[[np.ndarray, np.ndarray, Any, Any], None] | None:
    """loss_grad_sums for a training loop's mini-batches of dense rows, checked once here: returns
    sums(Xb, yb, coef, intercept), which writes what loss_grad_sums(loss, Xb, yb, coef, intercept,
    out) would by calling the compiled kernel at once (no Python checks: about 3 us a call less
    than loss_grad_sums(validate=False), most of a 32-row step's kernel time). None where there is
    no such path (CSR X, backend "numpy", or arrays loss_grad_sums would convert): call
    loss_grad_sums.

    X, y, coef, intercept: arrays of the kinds the loop will pass (X: a shard or a batch of it);
               checked here as loss_grad_sums(validate=False) checks them
    out:       (out_size(loss, coef),) float64, C-contiguous, OUT at every call
    At each call the loop guarantees what these checks found: Xb (k, n) C-contiguous, X's dtype
    and features, 1 <= k <= BLOCK_ROWS (one block, whose sums go straight to out); yb (k,), y's
    dtype; coef and intercept of the same shapes and dtypes. An array of another dtype or layout
    raises from the kernel's own type check; a wrong size is not caught.
    """
    backend = pick_backend(loss, X, backend)
    if _is_sparse(X) or backend == "numpy":
        return None
    _, y_k, coef_k, intercept_k, K = _prepare(loss, X, y, coef, intercept, validate=False)
    if y_k is not y or coef_k is not coef or (K > 1 and intercept_k is not intercept):
        return None  # loss_grad_sums would convert them at every call
    _check_writable(out, "out")
    size = coef.size + K + 1
    if out.shape != (size,) or out.dtype != np.float64 or not out.flags.c_contiguous:
        raise ValueError(f"out must be C-contiguous float64 of shape ({size},), got {out.dtype} "
                         f"{out.shape}")
    sums = out.reshape(1, size)
    if loss in MULTICLASS_LOSSES:
        kernel = _BLOCK_KERNELS[backend, False, True]
        return lambda Xb, yb, coef, intercept: kernel(Xb, yb, coef, intercept, sums, BLOCK_ROWS)
    kernel, code = _BLOCK_KERNELS[backend, False, False], LOSS_CODES[loss]
    return lambda Xb, yb, coef, intercept: kernel(code, Xb, yb, coef, intercept, sums, BLOCK_ROWS)


def loss_grad(loss: str, X, y, coef, intercept, *, backend: str = "auto"):
    """Loss sum and gradient sums over the rows of one shard (validated; see loss_grad_sums).

    Returns (loss_sum: float, grad_coef: float64 shaped like coef, grad_intercept: float for the
    scalar losses or (K,) float64 for "softmax"). An empty shard (m = 0) gives zeros.
    """
    coef_shape = np.shape(coef)
    size = int(np.prod(coef_shape))
    multiclass = isinstance(loss, str) and loss in MULTICLASS_LOSSES  # a bad loss is named below
    K = coef_shape[1] if multiclass and len(coef_shape) == 2 else 1
    out = loss_grad_sums(loss, X, y, coef, intercept, np.empty(size + K + 1), backend=backend)
    grad_intercept = out[size:-1].copy() if multiclass else float(out[size])
    return float(out[-1]), out[:size].reshape(coef_shape), grad_intercept


def decision_function(X, coef: np.ndarray, intercept) -> np.ndarray:
    """Margins X @ coef + intercept of dense or CSR X, float64: (m,) for coef (n,), (m, K) for (n, K).

    Each row's margins are computed on their own, in an order that does not depend on the other
    rows (numba_margins.py for dense X; SciPy's row-by-row CSR product), so they are bitwise the
    same however the rows are split across ranks.
    """
    coef = np.asarray(_real(coef, "coef"), dtype=np.float64)
    if not (_is_csr(X) or isinstance(X, np.ndarray)) or X.ndim != 2:
        raise ValueError(f"X must be a 2-D NumPy array or scipy.sparse CSR matrix, got {type(X).__name__}")
    if X.dtype.kind not in "biuf":
        raise ValueError(f"X must hold real numbers, got dtype {X.dtype}")
    if coef.ndim not in (1, 2) or coef.shape[0] != X.shape[1]:
        raise ValueError(f"X has {X.shape[1]} features but coef has shape {coef.shape}")
    K = 1 if coef.ndim == 1 else coef.shape[1]
    intercept = np.asarray(_real(intercept, "intercept"), dtype=np.float64)
    if intercept.shape not in ((), (1,), (K,)):
        raise ValueError(f"intercept must be a number or have shape ({K},), got shape {intercept.shape}")
    intercept = np.broadcast_to(intercept, (K,))
    if _is_csr(X):
        _check_csr_bounds(*_csr_arrays(X)[1:], X.shape[1])  # SciPy's product does not check them
        return np.asarray(X @ coef, dtype=np.float64) + (intercept if coef.ndim == 2 else intercept[0])
    if X.dtype not in (np.float32, np.float64):
        X = X.astype(np.float64)
    out = np.empty((X.shape[0], K))
    numba_margins.dense_margins(np.ascontiguousarray(X), np.ascontiguousarray(coef.reshape(X.shape[1], K).T),
                                np.ascontiguousarray(intercept), out)
    return out[:, 0] if coef.ndim == 1 else out


def take_rows(X: np.ndarray, rows: np.ndarray, out: np.ndarray, *, y: np.ndarray | None = None,
              y_out: np.ndarray | None = None, validate: bool = True) -> np.ndarray:
    """out <- X[rows] (and y_out <- y[rows]), the rows gathered by threads (numba_rows.py): a
    mini-batch's rows of a dense shard and their targets, into buffers reused from batch to batch.

    X:        (m, n) C-contiguous float32 or float64
    rows:     (k,) integer row numbers in 0..m-1 (any order, repeats allowed)
    out:      (k, n) C-contiguous, X's dtype, OUT
    y:        optional (m,) numeric targets, gathered in the same pass; y_out: (k,) y's dtype, OUT
    validate: False skips the O(k) check that every row is in 0..m-1, for a caller that made them
    Returns out.
    """
    if not (isinstance(X, np.ndarray) and X.ndim == 2 and X.dtype in FLOAT_DTYPES
            and X.flags.c_contiguous):
        raise ValueError("X must be a 2-D C-contiguous float32 or float64 array")
    rows = np.asarray(rows)
    if rows.ndim != 1 or rows.dtype.kind not in "iu":
        raise ValueError(f"rows must be a 1-D array of integers, got {rows.dtype} {rows.shape}")
    _check_writable(out, "out")
    if out.shape != (rows.size, X.shape[1]) or out.dtype != X.dtype or not out.flags.c_contiguous:
        raise ValueError(f"out must be C-contiguous {X.dtype} of shape {(rows.size, X.shape[1])}, "
                         f"got {out.dtype} {out.shape}")
    if (y is None) != (y_out is None):
        raise ValueError("y and y_out go together: pass both or neither")
    if y is not None:
        if not (isinstance(y, np.ndarray) and y.shape == (X.shape[0],) and y.dtype.kind in "biuf"):
            got = f"{y.dtype} {y.shape}" if isinstance(y, np.ndarray) else type(y).__name__
            raise ValueError(f"y must be a numeric array of shape ({X.shape[0]},) (X's rows), got {got}")
        _check_writable(y_out, "y_out")
        if y_out.shape != (rows.size,) or y_out.dtype != y.dtype:
            raise ValueError(f"y_out must be {y.dtype} of shape ({rows.size},), got {y_out.dtype} "
                             f"{y_out.shape}")
    if validate and rows.size and (rows.min() < 0 or rows.max() >= X.shape[0]):
        bad = int(rows[(rows < 0) | (rows >= X.shape[0])][0])
        raise ValueError(f"rows has row {bad} but X has {X.shape[0]} rows")
    numba_rows.take_rows(X, rows.astype(np.int64, copy=False), out, y, y_out)
    return out


def first_nonfinite(a: np.ndarray) -> int:
    """The position of a's first NaN or +-inf in C order (a flat index), or -1 when every value
    is finite: one read of a by threads when it is (numba_finite.py, no temporary array), and
    NumPy's search for the position when it is not. Below PARALLEL_CHECK_VALUES values NumPy
    checks on the calling thread: waking idle threads cost 5-7 ms on this project's VM, more
    than a parallel check of a million values saves (np.isfinite reads them in about 0.2 ms).

    a: any shape, C-contiguous float32 or float64
    """
    if not (isinstance(a, np.ndarray) and a.dtype in FLOAT_DTYPES and a.flags.c_contiguous):
        got = f"{a.dtype} {a.shape}" if isinstance(a, np.ndarray) else type(a).__name__
        raise ValueError(f"a must be a C-contiguous float32 or float64 array, got {got}")
    flat = a.reshape(-1)
    if (numba_finite.all_finite(flat) if flat.size >= PARALLEL_CHECK_VALUES
            else np.isfinite(flat).all()):
        return -1
    return int(np.flatnonzero(~np.isfinite(flat))[0])


def sort_batches(order: np.ndarray, batch_size: int) -> np.ndarray:
    """Sort each mini-batch of an epoch's permutation in place, in O(m) (numba_batches.py):
    every run order[b*batch_size : (b+1)*batch_size] (the last may be shorter) gets its own
    values in increasing order, as np.sort of each run would give them.

    order:      (m,) int64, C-contiguous, a permutation of 0..m-1, IN/OUT
    batch_size: >= 1
    Returns order. Uses m int32 values of scratch (int64 beyond 2**31 - 1 batches).
    """
    if not (isinstance(order, np.ndarray) and order.ndim == 1 and order.dtype == np.int64
            and order.flags.c_contiguous):
        got = f"{order.dtype} {order.shape}" if isinstance(order, np.ndarray) else type(order).__name__
        raise ValueError(f"order must be a 1-D C-contiguous int64 array, got {got}")
    _check_writable(order, "order")
    batch_size = _positive_int(batch_size, "batch_size")
    m = order.size
    if m and (order.min() < 0 or order.max() >= m):
        bad = int(order[(order < 0) | (order >= m)][0])
        raise ValueError(f"order has row {bad} but only {m} rows (it must be a permutation of 0..{m - 1})")
    n_batches = -(-m // batch_size)
    batch_of = np.empty(m, np.int32 if n_batches <= np.iinfo(np.int32).max else np.int64)
    missing = numba_batches.sort_batches(order, batch_size, batch_of)
    if missing >= 0:
        raise ValueError(f"order is not a permutation of 0..{m - 1}: row {missing} is missing")
    return order


def mean_gradient(sums: np.ndarray, count: float, theta: np.ndarray, grad: np.ndarray, *,
                  l2: float = 0.0, n_coef: int | None = None, n_free: int | None = None,
                  validate: bool = True) -> float:
    """grad <- a step's mean gradient from its reduced sums, in one pass
    (numba_mean.py); returns the sum of all the sums, for the non-finite guard.

    sums:   (p + 1,) float64, [gradient sums (p), loss sum], as loss_grad_sums writes them
    count:  the number of rows summed, > 0
    theta:  (p,) float64, the parameters the sums were taken at
    grad:   (p,) float64, C-contiguous, OUT <- sums[:p] / count, plus l2 * theta on the first
            n_coef values (the L2 penalty's gradient), and 0 from n_free on (intercepts that are
            not fitted)
    n_coef: 0 <= n_coef <= n_free (default p); n_free: n_free <= p (default p)
    validate: False skips every check (about 1 us of a step's), for a loop that passes the arrays
            it checked once (fastdp.train.Objective: its own buffers); a wrong array or value is
            then not caught
    Returns the sum of the p + 1 sums: NaN or +-inf when one of them is; it can also overflow
    when none is, so a non-finite total means "look at each sum".
    """
    if not validate:
        p = grad.shape[0]
        return numba_mean.mean_gradient(sums, count, theta, l2, p if n_coef is None else n_coef,
                                        p if n_free is None else n_free, grad)

    def got(a: object) -> str:
        return f"{a.dtype} {a.shape}" if isinstance(a, np.ndarray) else type(a).__name__

    if not (isinstance(grad, np.ndarray) and grad.ndim == 1 and grad.dtype == np.float64
            and grad.flags.c_contiguous):
        raise ValueError(f"grad must be a 1-D C-contiguous float64 array, got {got(grad)}")
    _check_writable(grad, "grad")
    p = grad.shape[0]
    n_coef = p if n_coef is None else n_coef
    n_free = p if n_free is None else n_free
    for name, a, size in (("sums", sums, p + 1), ("theta", theta, p)):
        if not (isinstance(a, np.ndarray) and a.dtype == np.float64 and a.shape == (size,)
                and a.flags.c_contiguous):
            raise ValueError(f"{name} must be a C-contiguous float64 array of shape ({size},) "
                             f"(grad has p = {p} values), got {got(a)}")
    if not count > 0:
        raise ValueError(f"count must be > 0, got {count!r}")
    if not 0 <= n_coef <= n_free <= p:
        raise ValueError(f"need 0 <= n_coef <= n_free <= p = {p}, got n_coef={n_coef}, "
                         f"n_free={n_free}")
    return numba_mean.mean_gradient(sums, float(count), theta, float(l2), n_coef, n_free, grad)


def set_cython_threads(n: int) -> None:
    """OpenMP threads the Cython kernels use from now on in this process (n >= 1)."""
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    _cython_dense.set_num_threads(n)
    _cython_sparse.set_num_threads(n)


def get_num_threads() -> dict[str, int]:
    """Threads each compiled backend will use: {'numba': ..., 'cython': ...}."""
    return {"numba": numba.get_num_threads(), "cython": _cython_dense.get_num_threads()}


def block_sums(loss: str, X, y, coef, intercept, out: np.ndarray, block_rows: int, *,
               start: int = 0, stop: int | None = None, backend: str = "auto",
               validate: bool = True) -> np.ndarray:
    """Per-block sums over rows start..stop of X, one row of `out` per block, never added together.

    Block b holds rows start + b*block_rows .. min(start + (b+1)*block_rows, stop); out has shape
    (n_blocks(stop - start, block_rows), coef.size + K + 1) float64 and gets, in row b, block b's
    [grad_coef, grad_intercept, loss_sum] (loss_grad_sums' layout). One call of the compiled
    kernel (prange over the blocks): block b's row is the same bits whatever the thread count and
    whatever rows come before start or after stop, which is what fastdp.deterministic needs (it
    sums the rows itself, in a fixed order). "numpy" runs the reference once per block.
    CSR rows are passed to the kernel as a view (indptr[start:stop + 1], not copied).
    Returns out.
    """
    backend = pick_backend(loss, X, backend)
    parts, y, coef, intercept, K = _prepare(loss, X, y, coef, intercept, validate)
    stop = X.shape[0] if stop is None else stop
    try:
        start, stop = operator.index(start), operator.index(stop)
    except TypeError:
        raise TypeError(f"start and stop must be integers, got {start!r} and {stop!r}") from None
    if not (0 <= start <= stop <= X.shape[0]):
        raise ValueError(f"rows start..stop = {start}..{stop} are not within X's {X.shape[0]} rows")
    try:
        whole = int(block_rows) == block_rows
    except (TypeError, ValueError, OverflowError):  # None, NaN, inf
        whole = False
    if not whole or block_rows < 1:
        raise ValueError(f"block_rows must be an integer >= 1, got {block_rows!r}")
    block_rows = int(min(block_rows, max(1, stop - start)))  # longer blocks are the same one block
    size = coef.size + K + 1
    shape = (n_blocks(stop - start, block_rows), size)
    _check_writable(out, "out")
    if out.shape != shape or out.dtype != np.float64 or not out.flags.c_contiguous:
        raise ValueError(f"out must be C-contiguous float64 of shape {shape}, got {out.dtype} {out.shape}")
    if shape[0] == 0:
        return out
    if backend == "numpy":
        for b in range(shape[0]):
            a = start + b * block_rows
            e = min(a + block_rows, stop)
            reference.sums(loss, X[a:e], y[a:e], coef, intercept, out[b])
        return out
    if len(parts) == 3:
        data, indices, indptr = parts
        parts = (data, indices, indptr[start:stop + 1])
    else:
        parts = (parts[0][start:stop],)
    y = y[start:stop]
    if loss in MULTICLASS_LOSSES:
        _BLOCK_KERNELS[backend, len(parts) == 3, True](*parts, y, coef, intercept, out, int(block_rows))
    else:
        _BLOCK_KERNELS[backend, len(parts) == 3, False](LOSS_CODES[loss], *parts, y, coef, intercept,
                                                        out, int(block_rows))
    return out
