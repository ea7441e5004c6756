"""Data-parallel inference: split the inputs across ranks, predict on each, gather in order.

    labels = fastdp.predict(model, X)                  # X on rank 0; labels on rank 0, None elsewhere
    labels = fastdp.predict(model, X_local, scatter=False, gather_to=None)   # rows already spread

Static schedule (the default): the rows are cut into contiguous parts (fastdp.partition.contiguous: sizes differ
by at most one, empty parts when there are fewer rows than ranks); dense arrays move with
MPI_Scatterv and the results with MPI_Gatherv / MPI_Allgatherv, in the original row order. CSR
matrices and lists of documents are sent as pickled row blocks. Class labels that are not numbers
(strings) travel as their indices in model.classes_. Because each row's margins do not depend on
the other rows (fastdp.kernels.decision_function), the result is bitwise the serial prediction.
An error on any rank (a bad input row, say) raises the same ValueError on every rank.

Dynamic schedule, for inputs of very uneven cost: rank 0 holds the rows and hands out chunks of
chunk_rows rows on request (a work queue over point-to-point messages): every other rank asks
for its next chunk by returning a result, and rank 0 computes chunks itself between requests.
Results are reassembled in row order on rank 0, so they too equal the serial prediction.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import scipy.sparse as sp

from .comm import Comm, raise_if_any, world
from .partition import contiguous

SCHEDULES = ("static", "dynamic")
TASK, RESULT = 1, 2  # message tags of the dynamic schedule's work queue
CHUNKS_PER_RANK = 8  # default dynamic chunk: rows / (ranks * CHUNKS_PER_RANK)


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
    if _rows(X) == 0:
        return None, None
    try:
        return np.asarray(getattr(model, method)(X)), None
    except (ValueError, TypeError) as exc:
        return None, f"{type(exc).__name__}: {exc}"


def _rows(X: Any) -> int:
    return X.shape[0] if sp.issparse(X) or isinstance(X, np.ndarray) else len(X)


def _serve(model: Any, method: str, X: Any, chunk_rows: int, comm: Comm) -> tuple[list, str | None]:
    """Rank 0 of the dynamic schedule: hand out chunks, compute between requests, collect.
    Returns (results in chunk order, the first error of rank 0's own chunks or None); the other
    ranks report their own errors."""
    starts = list(range(0, _rows(X), chunk_rows))
    results: list[Any] = [None] * len(starts)
    pending = iter(range(len(starts)))
    errors = []
    busy = 0

    def hand_out(worker: int) -> bool:
        index = next(pending, None)
        chunk = None if index is None else (index, X[starts[index]:starts[index] + chunk_rows])
        comm.send_obj(chunk, worker, TASK)
        return chunk is not None

    for worker in range(1, comm.size):
        busy += hand_out(worker)
    own = next(pending, None)
    while busy or own is not None:
        if busy and (own is None or comm.iprobe(tag=RESULT)):
            (index, result), worker, _ = comm.recv_obj(tag=RESULT)
            results[index] = result
            busy -= 1
            busy += hand_out(worker)
            continue
        result, error = _local_result(model, method, X[starts[own]:starts[own] + chunk_rows])
        results[own] = result
        errors += [error] if error else []
        own = next(pending, None)
    return results, errors[0] if errors else None


def _work(model: Any, method: str, comm: Comm) -> str | None:
    """The other ranks of the dynamic schedule: compute chunks until rank 0 sends None.
    Returns the first error of this rank's chunks, or None."""
    errors = []
    while True:
        chunk, _, _ = comm.recv_obj(source=0, tag=TASK)
        if chunk is None:
            return errors[0] if errors else None
        index, rows = chunk
        result, error = _local_result(model, method, rows)
        errors += [error] if error else []
        comm.send_obj((index, result), 0, RESULT)


def _predict_dynamic(model: Any, X: Any, comm: Comm, method: str, chunk_rows: int | None,
                     gather_to: int | None) -> np.ndarray | None:
    if comm.rank == 0:
        chunk_rows = chunk_rows or max(1, -(-_rows(X) // (comm.size * CHUNKS_PER_RANK)))
        results, error = _serve(model, method, X, chunk_rows, comm)
    else:
        results, error = [], _work(model, method, comm)
    raise_if_any(comm, error)
    combined = None
    if comm.rank == 0:
        parts = [r for r in results if r is not None]
        combined = np.concatenate(parts) if parts else np.empty(0)
    if gather_to is None:
        return comm.bcast_obj(combined)
    if gather_to != 0:
        raise ValueError("the dynamic schedule gathers on rank 0 (gather_to=0) or on all (None)")
    return combined


def predict(model: Any, X: Any = None, *, comm: Comm | None = None, method: str = "predict",
            schedule: str = "static", scatter: bool = True, root: int = 0,
            gather_to: int | None = 0, chunk_rows: int | None = None) -> np.ndarray | None:
    """model.method(X) computed data-parallel, as one array in the original row order.

    model: a fitted estimator (or Pipeline) with `method` ("predict", "predict_proba",
        "decision_function", ...); the same model on every rank.
    X: with scatter=True, rank `root`'s rows (dense array, CSR matrix or list of documents;
        ignored on other ranks); with scatter=False, the rows this rank holds, rank order being
        row order.
    gather_to: the rank that receives the result (the others get None), or None for every rank.
    schedule: "static" or "dynamic" (X on rank 0, scatter=True; chunk_rows rows per chunk,
        default rows / (ranks * 8)).
    """
    comm = world() if comm is None else comm
    if schedule not in SCHEDULES:
        raise ValueError(f"schedule must be one of {list(SCHEDULES)}, got {schedule!r}")
    if chunk_rows is not None and (int(chunk_rows) != chunk_rows or chunk_rows < 1):
        raise ValueError(f"chunk_rows must be an integer >= 1, got {chunk_rows!r}")
    if schedule == "dynamic" and comm.size > 1:
        if not scatter or root != 0:
            raise ValueError("the dynamic schedule takes X on rank 0 (scatter=True, root=0)")
        return _predict_dynamic(model, X, comm, method, chunk_rows, gather_to)
    local_X = _scatter(X, comm, root) if scatter else X
    result, error = _local_result(model, method, local_X)
    raise_if_any(comm, error)
    return gather_in_order(result, comm, gather_to, getattr(model, "classes_", None))


def gather_in_order(result: np.ndarray | None, comm: Comm, gather_to: int | None = 0,
                    classes: np.ndarray | None = None) -> np.ndarray | None:
    """Every rank's result rows, in rank order, on rank gather_to (None elsewhere) or on every
    rank (gather_to=None). Collective. result: this rank's (m, ...) array, or None for no rows;
    numeric arrays move with Gatherv; labels that are not numbers travel as their indices in the
    sorted array `classes`."""
    metas = comm.allgather_obj(None if result is None else (len(result), result.dtype.str,
                                                             result.shape[1:]))
    known = [m for m in metas if m is not None]
    if not known:
        return None if gather_to not in (None, comm.rank) else np.empty(0)
    _, dtype, tail = known[0]
    dtype = np.dtype(dtype)
    counts = [0 if m is None else m[0] for m in metas]
    codes = dtype.kind not in "biuf"
    if codes and classes is None:
        raise ValueError(f"results of dtype {dtype} need `classes` to travel as indices")
    if result is None:
        result = np.empty((0,) + tuple(tail), np.int64 if codes else dtype)
    elif codes:
        result = np.searchsorted(classes, result).astype(np.int64)
    gathered = comm.gather_rows(result, counts, root=gather_to)
    if gathered is None or not codes:
        return gathered
    return np.asarray(classes)[gathered]
