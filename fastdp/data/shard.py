"""What a reader returns: one rank's rows of a data file, and the file's formats by extension."""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np

FORMATS: dict[str, str] = {".npy": "npy", ".csv": "csv", ".parquet": "parquet", ".pq": "parquet",
                           ".txt": "text", ".tsv": "text"}


@dataclass(frozen=True)
class Shard:
    """One rank's rows of a data file.

    X:             features, (m, n) float32/float64 array; for text files the m documents (str)
    y:             labels (m,): numbers, or str for text files and string Parquet columns;
                   None when read with labels=False
    rows:          the rows of the file this rank holds (0-based, not counting a CSV header)
    n_rows:        the number of rows in the whole file
    feature_names: names of the feature columns (CSV header, Parquet), else None
    label_name:    name of the label column when the file names its columns, else None
    format:        "npy", "csv", "parquet" or "text"
    """

    X: np.ndarray | list[str]
    y: np.ndarray | None
    rows: range
    n_rows: int
    feature_names: tuple[str, ...] | None
    label_name: str | None
    format: str


def file_format(path: str | os.PathLike[str]) -> str:
    """The format of the data file at path, from its extension: "npy", "csv", "parquet" or
    "text"; a ValueError naming the file for any other extension."""
    extension = os.path.splitext(os.fspath(path))[1].lower()
    if extension not in FORMATS:
        raise ValueError(f"{os.fspath(path)}: unknown data file extension {extension!r}; "
                         f"expected one of {', '.join(FORMATS)}")
    return FORMATS[extension]
