"""Checks of one rank's shard, local and cheap; train.py combines their outcomes across ranks.

`check_shard` never raises for bad data: it returns the error message, so every rank can take part
in the collective that decides whether ALL ranks raise (fastdp.comm.raise_if_any).
"""

from __future__ import annotations

from typing import Any

import numpy as np


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


def check_shard(X: Any, y: Any) -> tuple[np.ndarray | None, np.ndarray | None, str | None]:
    """Validate one rank's rows. Returns (X, y, None) ready for the kernels, or (None, None, error).

    X: (m, n) with n >= 1; y: (m,), cast to X's dtype. Neither may hold NaN or inf. Non-contiguous
    input is copied into C order.
    """
    X, error = as_float_array(X, "X")
    if error:
        return None, None, error
    y, error = as_float_array(y, "y")
    if error:
        return None, None, error
    if X.ndim != 2:
        return None, None, f"X must be 2-D (rows, features), got {X.ndim}-D with shape {X.shape}"
    if X.shape[1] == 0:
        return None, None, "X has 0 features (columns); it needs at least 1"
    if y.ndim != 1:
        return None, None, f"y must be 1-D, got {y.ndim}-D with shape {y.shape}"
    if X.shape[0] != y.shape[0]:
        return None, None, f"X has {X.shape[0]} rows but y has {y.shape[0]}"
    for name, arr in (("X", X), ("y", y)):
        if not np.isfinite(arr).all():
            bad = np.argwhere(~np.isfinite(arr))[0]
            where = f"row {bad[0]}" + (f", column {bad[1]}" if arr.ndim == 2 else "")
            kind = "NaN" if np.isnan(arr[tuple(bad)]) else "inf"
            return None, None, f"{name} contains {kind} (first at {where})"
    return X, np.ascontiguousarray(y, dtype=X.dtype), None
