"""Data-parallel inference: split the inputs across ranks, predict on each, gather in order.

    labels = fastdp.predict(model, X)                  # X on rank 0; labels on rank 0, None elsewhere
    labels = fastdp.predict(model, X_local, scatter=False, gather_to=None)   # rows already spread

Static schedule: the rows are cut into contiguous parts (fastdp.partition.contiguous: sizes differ
by at most one, empty parts when there are fewer rows than ranks); dense arrays move with
MPI_Scatterv and the results with MPI_Gatherv / MPI_Allgatherv, in the original row order. CSR
matrices and lists of documents are sent as pickled row blocks. Class labels that are not numbers
(strings) travel as their indices in model.classes_. Because each row's margins do not depend on
the other rows (fastdp.kernels.decision_function), the result is bitwise the serial prediction.
An error on any rank (a bad input row, say) raises the same ValueError on every rank.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import scipy.sparse as sp

from .comm import Comm, raise_if_any, world
from .partition import contiguous

SCHEDULES = ("static",)


def _scatter(X: Any, comm: Comm, root: int) -> Any:
    """This rank's contiguous part of root's rows."""
    kind = comm.bcast_obj(("dense" if isinstance(X, np.ndarray) and X.dtype.kind in "biuf"
                           else "objects", len(X) if not sp.issparse(X) else X.shape[0])
                          if comm.rank == root else None, root=root)
    parts = contiguous(kind[1], comm.size)
    if kind[0] == "dense":
        return comm.scatter_rows(X, [len(p) for p in parts], root=root)
    blocks = [X[p.start:p.stop] for p in parts] if comm.rank == root else None
    return comm.scatter_obj(blocks, root=root)


def _local_result(model: Any, method: str, X: Any) -> tuple[np.ndarray | None, str | None]:
    """(model.method(X) as an array, or None for no rows; error message or None)."""
    n = X.shape[0] if sp.issparse(X) or isinstance(X, np.ndarray) else len(X)
    if n == 0:
        return None, None
    try:
        return np.asarray(getattr(model, method)(X)), None
    except (ValueError, TypeError) as exc:
        return None, f"{type(exc).__name__}: {exc}"


def predict(model: Any, X: Any = None, *, comm: Comm | None = None, method: str = "predict",
            schedule: str = "static", scatter: bool = True, root: int = 0,
            gather_to: int | None = 0) -> np.ndarray | None:
    """model.method(X) computed data-parallel, as one array in the original row order.

    model: a fitted estimator (or Pipeline) with `method` ("predict", "predict_proba",
        "decision_function", ...); the same model on every rank.
    X: with scatter=True, rank `root`'s rows (dense array, CSR matrix or list of documents;
        ignored on other ranks); with scatter=False, the rows this rank holds, rank order being
        row order.
    gather_to: the rank that receives the result (the others get None), or None for every rank.
    """
    comm = world() if comm is None else comm
    if schedule not in SCHEDULES:
        raise ValueError(f"schedule must be one of {list(SCHEDULES)}, got {schedule!r}")
    local_X = _scatter(X, comm, root) if scatter else X
    result, error = _local_result(model, method, local_X)
    raise_if_any(comm, error)
    metas = comm.allgather_obj(None if result is None else (len(result), result.dtype.str,
                                                             result.shape[1:]))
    known = [m for m in metas if m is not None]
    if not known:
        return None if gather_to not in (None, comm.rank) else np.empty(0)
    _, dtype, tail = known[0]
    dtype = np.dtype(dtype)
    counts = [0 if m is None else m[0] for m in metas]
    codes = dtype.kind not in "biuf"
    if result is None:
        result = np.empty((0,) + tuple(tail), np.int64 if codes else dtype)
    elif codes:  # labels that are not numbers travel as indices into classes_
        result = np.searchsorted(model.classes_, result).astype(np.int64)
    gathered = comm.gather_rows(result, counts, root=gather_to)
    if gathered is None or not codes:
        return gathered
    return np.asarray(model.classes_)[gathered]
