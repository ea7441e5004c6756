"""Generated data sets whose rows any rank can make on its own.

Rows are generated in fixed chunks of CHUNK_ROWS, each from its own seeded stream, so the rows a
rank generates for its range are exactly the same rows a single process generates for the whole
set: no rank ever needs the full data set, and data-parallel runs see the serial data.
"""

from __future__ import annotations

import numpy as np

CHUNK_ROWS = 8192


def linear_regression(n_rows: int, n_features: int, rows: range | None = None, *, seed: int = 0,
                      noise: float = 0.1, dtype: type = np.float64) -> tuple[np.ndarray, np.ndarray]:
    """The worked example: X ~ N(0, 1), y = 2 * x0 + 3 + noise * N(0, 1).

    rows: the rows to make (a sub-range of range(n_rows)); all of them when None.
    Returns X (len(rows), n_features) and y (len(rows),), C-contiguous, of the given dtype.
    """
    if n_rows < 0 or n_features < 1:
        raise ValueError(f"need n_rows >= 0 and n_features >= 1, got {n_rows} and {n_features}")
    rows = range(n_rows) if rows is None else rows
    if rows.step != 1 or rows.start < 0 or rows.stop > n_rows or len(rows) < 0:
        raise ValueError(f"rows must be a contiguous sub-range of range({n_rows}), got {rows}")
    X = np.empty((len(rows), n_features), dtype=dtype)
    y = np.empty(len(rows), dtype=dtype)
    if len(rows) == 0:
        return X, y
    for chunk in range(rows.start // CHUNK_ROWS, (rows.stop - 1) // CHUNK_ROWS + 1):
        lo = chunk * CHUNK_ROWS
        size = min(CHUNK_ROWS, n_rows - lo)
        rng = np.random.default_rng([seed, chunk])
        Xc = rng.standard_normal((size, n_features))
        yc = 2.0 * Xc[:, 0] + 3.0 + noise * rng.standard_normal(size)
        a, b = max(rows.start, lo), min(rows.stop, lo + size)
        X[a - rows.start:b - rows.start] = Xc[a - lo:b - lo]
        y[a - rows.start:b - rows.start] = yc[a - lo:b - lo]
    return X, y
