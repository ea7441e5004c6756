"""NumPy .npy files: a 2-D numeric array, memory-mapped; rows are copied out a block at a time."""

from __future__ import annotations

from collections.abc import Iterator
from tokenize import TokenError

import numpy as np

from .columns import feature_columns, label_index

NPY_BLOCK_BYTES = 64 << 20  # rows of a .npy file are copied this much at a time
NUMERIC_KINDS = "biuf"


class NpySource:
    """The rows of a .npy file; `read(rows)` returns (X, y) with X float32 (kept) or float64."""

    format = "npy"
    feature_names = None
    label_name = None

    def __init__(self, path: str, label_column: int | str | None, labels: bool) -> None:
        self.path = path
        try:
            data = np.load(path, mmap_mode="r", allow_pickle=False)
        except (ValueError, EOFError, OSError, OverflowError, TokenError) as exc:
            # TokenError: numpy re-reads a header that is not a dict literal token by token;
            # OverflowError: a negative or huge shape
            raise ValueError(f"{path}: not a readable .npy file ({exc})") from None
        if not isinstance(data, np.ndarray) or data.ndim != 2:
            raise ValueError(f"{path}: expected a 2-D array (rows x columns), got "
                             f"{getattr(data, 'ndim', '?')} dimension(s)")
        if data.dtype.kind not in NUMERIC_KINDS:
            raise ValueError(f"{path}: expected a numeric array, got dtype {data.dtype}")
        self.n_rows, n_columns = data.shape
        if self.n_rows == 0 or n_columns == 0:
            raise ValueError(f"{path}: the array is empty (shape {data.shape})")
        if isinstance(label_column, str):
            raise ValueError(f"{path}: a .npy file has no column names; give label_column as an "
                             f"index, got {label_column!r}")
        self.data = data
        self.label = label_index(path, label_column, None, n_columns) if labels else None
        self.features = feature_columns(path, n_columns, self.label)

    def read(self, rows: range) -> tuple[np.ndarray, np.ndarray | None]:
        """(X (m, features), y (m,) or None) of the rows."""
        data = self.data
        dtype = data.dtype if data.dtype in (np.float32, np.float64) else np.float64
        X = np.empty((len(rows), len(self.features)), dtype)
        y = None if self.label is None else np.empty(len(rows), data.dtype)
        for start, block in self._row_blocks(rows):
            X[start:start + len(block)] = block[:, self.features]
            if y is not None:
                y[start:start + len(block)] = block[:, self.label]
        return X, y

    def _row_blocks(self, rows: range) -> Iterator[tuple[int, np.ndarray]]:
        """(offset within rows, block) for consecutive blocks of about NPY_BLOCK_BYTES of the rows.

        A C-ordered file maps one block at a time and unmaps it before the next, so the pages read
        from the file never pile up in this process's memory next to the copy: peak memory stays
        near the rank's share of the file. A Fortran-ordered file is read through its one map."""
        data = self.data
        row_bytes = data.dtype.itemsize * data.shape[1]
        step = max(1, NPY_BLOCK_BYTES // row_bytes)
        for start in range(0, len(rows), step):
            stop = min(len(rows), start + step)
            if not data.flags.c_contiguous:
                yield start, data[rows.start + start:rows.start + stop]
                continue
            block = np.memmap(self.path, data.dtype, mode="r", shape=(stop - start, data.shape[1]),
                              offset=data.offset + (rows.start + start) * row_bytes)
            yield start, block
            del block  # munmap: these pages leave the resident set
