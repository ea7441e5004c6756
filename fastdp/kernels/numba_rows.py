"""Rows of a dense shard gathered into a buffer, in Numba (prange over chunks of rows): a
mini-batch's rows, picked at random from the shard, copied next to each other for the kernels,
with their targets when asked.

Each row picked at random is a cache miss, often a TLB miss too, and np.take's one thread waits on
about one row at a time (measured: 46-58 ns a row of 256 bytes from a 256 MB shard). Chunks of
ROWS_PER_TASK rows go to the threads, each thread waiting on its own misses: 1.6x np.take with
two threads on 256 rows, 1.8x on 4,096 (benchmarks/test_train_epoch.py times the epoch around it).
Up to SERIAL_ROWS rows, the calling thread copies them: a parallel region costs more than it saves.
The targets come in the same loop, their misses waited on with the row's (np.take of the targets
after the rows waited on them again, one at a time). A copy, so the result does not depend on the
thread count.
"""

from numba import njit, prange

ROWS_PER_TASK = 64  # rows per prange task: 16 KiB of 32 float64 features
SERIAL_ROWS = ROWS_PER_TASK  # up to one task of rows, the calling thread copies them: no parallel region


@njit(inline="always")
def _copy_rows(X, rows, out, y, y_out, first, stop):
    """out[i] <- X[rows[i]] (and y_out[i] <- y[rows[i]] unless y is None) for i in first..stop-1."""
    n = X.shape[1]
    for i in range(first, stop):
        r = rows[i]
        if y is not None:
            y_out[i] = y[r]
        for j in range(n):
            out[i, j] = X[r, j]


@njit(parallel=True, cache=True)
def take_rows(X, rows, out, y, y_out):
    """out[i] <- X[rows[i]] and y_out[i] <- y[rows[i]] for every i; by threads beyond SERIAL_ROWS rows.

    X:     (m, n) C-contiguous float32 or float64
    rows:  (k,) int64, each in 0..m-1 (the caller checks)
    out:   (k, n) C-contiguous, X's dtype, OUT
    y:     (m,) any numeric dtype, or None (then y_out is None too and only X's rows are copied)
    y_out: (k,) y's dtype, OUT
    """
    k = rows.shape[0]
    if k <= SERIAL_ROWS:
        _copy_rows(X, rows, out, y, y_out, 0, k)
    else:  # the loop here, not in a parallel function of its own that this one calls: a cached
        # caller of one crashed in some fresh processes (numba issue #8578, numba_lazy.py)
        for c in prange((k + ROWS_PER_TASK - 1) // ROWS_PER_TASK):
            _copy_rows(X, rows, out, y, y_out, c * ROWS_PER_TASK, min(k, (c + 1) * ROWS_PER_TASK))
