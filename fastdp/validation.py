"""Checks of one rank's shard, local and cheap; train.py combines their outcomes across ranks.

`check_shard` never raises for bad data: it returns the error message, so every rank can take part
in the collective that decides whether ALL ranks raise (fastdp.comm.raise_if_any).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import scipy.sparse as sp

from . import kernels

def as_float_array(a: Any, name: str) -> tuple[np.ndarray | None, str | None]:
    """`a` as a C-contiguous float32/float64 array (copying only when needed), or an error message.

    float32 and float64 are kept; integer and boolean data become float64; anything else
    (strings, objects, complex numbers) is an error.
    """
    try:
        arr = np.asarray(a)
    except (ValueError, TypeError) as exc:  # ragged nested lists and the like
        return None, f"{name} cannot be converted to an array: {exc}"
    if arr.dtype.kind == "f" and arr.dtype.itemsize in (4, 8):
        dtype = arr.dtype
    elif arr.dtype.kind in "biuf":
        dtype = np.dtype(np.float64)
    else:
        return None, f"{name} must be numeric (float or integer), got dtype {arr.dtype}"
    return np.ascontiguousarray(arr, dtype=dtype), None


def _nonfinite(name: str, arr: np.ndarray, where) -> str | None:
    """Message naming the first NaN/inf of arr (C-contiguous float), located by where(its flat
    index), or None."""
    bad = kernels.first_nonfinite(arr)
    if bad < 0:
        return None
    kind = "NaN" if np.isnan(arr.reshape(-1)[bad]) else "inf"
    return f"{name} contains {kind} (first at {where(bad)})"


def _check_features(X: Any) -> tuple[Any, str | None]:
    """X as C-contiguous float array or canonical-dtype CSR, or an error message."""
    if sp.issparse(X):
        if X.ndim != 2:
            return None, f"X must be 2-D (rows, features), got shape {X.shape}"
        X = X if X.format == "csr" else X.tocsr()
        if X.dtype.kind not in "biuf":
            return None, f"X must be numeric (float or integer), got dtype {X.dtype}"
        if X.dtype not in (np.float32, np.float64):
            X = X.astype(np.float64)
        if X.shape[1] == 0:
            return None, "X has 0 features (columns); it needs at least 1"
        error = _nonfinite("X", np.ascontiguousarray(X.data),
                           lambda b: f"row {np.searchsorted(X.indptr, b, 'right') - 1}")
        return X, error
    X, error = as_float_array(X, "X")
    if error:
        return None, error
    if X.ndim != 2:
        return None, f"X must be 2-D (rows, features), got {X.ndim}-D with shape {X.shape}"
    if X.shape[1] == 0:
        return None, "X has 0 features (columns); it needs at least 1"
    return X, _nonfinite("X", X, lambda b: "row {}, column {}".format(*divmod(b, X.shape[1])))


def _check_targets(y: Any, loss: str, n_classes: int | None, dtype: np.dtype) -> tuple[Any, str | None]:
    """y converted for `loss`, or an error message."""
    y, error = as_float_array(y, "y")
    if error:
        return None, error
    if y.ndim != 1:
        return None, f"y must be 1-D, got {y.ndim}-D with shape {y.shape}"
    error = _nonfinite("y", y, lambda b: f"row {b}")
    if error:
        return None, error
    if loss == "softmax":
        bad = np.flatnonzero(y != np.round(y))
        if bad.size:
            return None, f"y must hold integer class labels for the softmax loss, got {y[bad[0]]!r} at row {bad[0]}"
        return y.astype(np.int64), None
    return np.ascontiguousarray(y, dtype=dtype), None


def check_shard(X: Any, y: Any, loss: str = "squared",
                n_classes: int | None = None) -> tuple[Any, np.ndarray | None, str | None]:
    """Validate one rank's rows for `loss`. Returns (X, y, None) ready for the kernels, or
    (None, None, error): check_features, then check_targets.

    X: (m, n) dense, n >= 1, copied into C order when needed; or scipy.sparse (converted to CSR,
       whose indices must lie in [0, n) and be sorted within each row). No NaN or inf.
    y: (m,), finite. squared: cast to X's dtype; logistic, hinge, squared_hinge: -1 or +1;
       softmax: integer class labels 0..n_classes-1, returned as int64.
    """
    X, error = check_features(X)
    if error is None:
        y, error = check_targets(X, y, loss, n_classes)
    return (None, None, error) if error else (X, y, None)


def check_features(X: Any) -> tuple[Any, str | None]:
    """check_shard's checks of X alone (the same for every loss and target): (X ready for the
    kernels, None) or (None, error)."""
    X, error = _check_features(X)
    if error is None and sp.issparse(X):
        try:
            kernels.validate_csr(X)
        except ValueError as exc:
            error = str(exc)
    return (None, error) if error else (X, None)


def check_targets(X: Any, y: Any, loss: str = "squared",
                  n_classes: int | None = None) -> tuple[np.ndarray | None, str | None]:
    """check_shard's checks of y against X as check_features returned it: (y ready for the
    kernels, None) or (None, error)."""
    y, error = _check_targets(y, loss, n_classes, X.dtype)
    if error is None and X.shape[0] != y.shape[0]:
        error = f"X has {X.shape[0]} rows but y has {y.shape[0]}"
    if error is None:
        error = kernels.labels_error(loss, y, n_classes if loss == "softmax" else 1)
    return (None, error) if error else (y, None)
