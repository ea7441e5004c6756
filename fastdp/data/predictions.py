"""Predictions out: one value per input row, written atomically, all at once or a block at a time.

    with PredictionWriter("preds.parquet", n_rows=1_000_000, dtype=np.float64) as out:
        for block in blocks:          # in row order
            out.write(block)          # (m,) values
    # on leaving the block without an exception, the file is complete and renamed into place;
    # on an exception, or fewer rows than n_rows, no file is left behind

Formats by extension: `.npy` (a numpy array; string labels as a unicode array, loadable without
pickle), `.csv` / `.txt` (one value per line; floats in their shortest exact form; a label with a
line break is an error), `.parquet` (one column named "prediction"; needs pyarrow).
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from .atomic import atomic_file
from .parquet import _pyarrow_parquet

PREDICTION_FORMATS: tuple[str, ...] = (".npy", ".csv", ".txt", ".parquet")


def prediction_format(path: str | os.PathLike[str]) -> str:
    """The extension of an output path, checked: one of PREDICTION_FORMATS."""
    path = os.fspath(path)
    extension = os.path.splitext(path)[1].lower()
    if extension not in PREDICTION_FORMATS:
        raise ValueError(f"{path}: unknown output extension {extension!r}; expected one of "
                         f"{', '.join(PREDICTION_FORMATS)}")
    return extension


class PredictionWriter:
    """Writes n_rows predictions of one dtype to path, in blocks, atomically (module docstring).
    The temporary file is created (and a .npy header written) when the writer is made, so an
    output path that cannot be written fails there, before any work.

    dtype: of the values; for string labels a numpy unicode dtype wide enough for every label
    (a .npy header is written before the first block).
    """

    def __init__(self, path: str | os.PathLike[str], n_rows: int, dtype: Any) -> None:
        self.path = os.fspath(path)
        self.extension = prediction_format(self.path)
        self.n_rows, self.dtype, self.written = int(n_rows), np.dtype(dtype), 0
        self._atomic = atomic_file(self.path)
        self._parquet: Any = None
        self._file = self._atomic.__enter__()
        if self.extension == ".npy":
            header = {"descr": np.lib.format.dtype_to_descr(self.dtype), "fortran_order": False,
                      "shape": (self.n_rows,)}
            np.lib.format.write_array_header_2_0(self._file, header)
        elif self.extension == ".parquet":
            import pyarrow as pa

            kind = pa.string() if self.dtype.kind == "U" else pa.from_numpy_dtype(self.dtype)
            schema = pa.schema([("prediction", kind)])
            self._parquet = _pyarrow_parquet().ParquetWriter(self._file, schema)

    def __enter__(self) -> "PredictionWriter":
        return self

    def write(self, values: Any) -> None:
        """Append the next block of predictions (m,), in row order."""
        values = np.asarray(values)
        if values.dtype == object or values.dtype.kind == "U":
            values = values.astype(str)
        if self.written + len(values) > self.n_rows:
            raise ValueError(f"{self.path}: more than the {self.n_rows} predictions announced")
        self.written += len(values)
        if self.extension == ".npy":
            self._file.write(np.ascontiguousarray(values, self.dtype).tobytes())
        elif self.extension == ".parquet":
            import pyarrow as pa

            self._parquet.write_table(pa.table({"prediction": values}))
        else:
            text = repr if values.dtype.kind == "f" else str
            lines = [text(v) for v in values.tolist()]
            if values.dtype.kind == "U":  # a label with a line break would read back as two rows
                for i, line in enumerate(lines):
                    if "\n" in line or "\r" in line:
                        raise ValueError(f"{self.path}, row {self.written - len(values) + i}: the "
                                         f"label {line!r} has a line break; a {self.extension} "
                                         "file holds one value per line")
            self._file.write("".join(f"{line}\n" for line in lines).encode("utf-8"))

    def __exit__(self, kind: Any, exc: Any, tb: Any) -> bool:
        """Finish the file (the Parquet footer) and rename it into place; on an exception, or
        when fewer rows than n_rows were written, remove it instead."""
        try:
            if self._parquet is not None:
                self._parquet.close()
            if exc is None and self.written != self.n_rows:
                raise ValueError(f"{self.path}: {self.written} predictions written, "
                                 f"{self.n_rows} expected")
        except BaseException as error:
            self._atomic.__exit__(type(error), error, error.__traceback__)
            raise
        self._atomic.__exit__(kind, exc, tb)
        return False


def write_predictions(path: str | os.PathLike[str], values: Any) -> None:
    """Write predictions (m,) to path in one block, atomically (formats: module docstring)."""
    values = np.asarray(values)
    if values.dtype == object:
        values = values.astype(str)
    with PredictionWriter(path, len(values), values.dtype) as out:
        out.write(values)
