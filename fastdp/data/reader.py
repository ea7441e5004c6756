"""Which rows each rank reads, and reading them: the entry points over the format readers."""

from __future__ import annotations

import os
from typing import Any, Protocol

import numpy as np

from ..partition import contiguous_range
from .csv import CsvSource
from .npy import NpySource
from .parquet import ParquetSource
from .shard import Shard, file_format
from .text import TextSource

PARTITIONS = ("contiguous", "balanced")


class Source(Protocol):
    """An open data file: its row count and column names, and `read(rows)` -> (X, y)."""

    path: str
    format: str
    n_rows: int
    feature_names: tuple[str, ...] | None
    label_name: str | None

    def read(self, rows: range) -> tuple[Any, np.ndarray | None]: ...


def open_source(path: str | os.PathLike[str], *, label_column: int | str | None = None,
                labels: bool = True) -> Source:
    """Open the data file at path (format by extension) and read what its rows need: the .npy
    header, the Parquet footer, or one pass counting the lines of a CSV or text file.

    label_column: the label column of a tabular file, by index (negative counts from the end) or
                  by name (CSV with a header, Parquet); None: the last column
    labels:       False reads a file without labels: every column is a feature, every text line a
                  document (label_column must then be None)
    Raises FileNotFoundError for a missing file and ValueError naming the file, the line or row and
    the problem for a file that cannot be read as its extension says.
    """
    path = os.fspath(path)
    if label_column is not None and not isinstance(label_column, (int, np.integer, str)):
        raise ValueError(f"label_column must be an int, a str or None, got {label_column!r}")
    if not labels and label_column is not None:
        raise ValueError(f"label_column={label_column!r} needs labels=True")
    kind = file_format(path)
    remote = "://" in path
    if remote and kind != "parquet":
        raise ValueError(f"{path}: only Parquet files are read through a URI (pyarrow's "
                         "filesystems: file://, s3://, hdfs://, ...)")
    if not remote and not os.path.isfile(path):
        raise FileNotFoundError(f"{path}: no such file")
    if kind == "text":
        if label_column is not None:
            raise ValueError(f"{path}: label_column does not apply to text files (the label is "
                             "the part of each line before the first TAB)")
        return TextSource(path, labels)
    reader = {"npy": NpySource, "csv": CsvSource, "parquet": ParquetSource}[kind]
    return reader(path, label_column, labels)


def rank_rows(source: Source, rank: int, size: int, partition: str = "contiguous") -> range:
    """The rows rank reads out of size ranks.

    contiguous: near-equal row counts (fastdp.partition.contiguous_range).
    balanced:   near-equal bytes, for line files whose rows differ in cost (documents of very
                different lengths): rank r takes the lines that start in the r-th of `size` equal
                byte ranges of the rows, so max/mean bytes <= 1 + (longest line) / (mean bytes per
                rank). Rows of .npy and Parquet files are all the same width, so there balanced
                is contiguous.
    """
    _check_rank(rank, size, partition)
    if partition == "contiguous" or not hasattr(source, "first_row_from"):
        return contiguous_range(source.n_rows, size, rank)
    first, n_bytes = source.row_bytes_start, source.index.n_bytes - source.row_bytes_start
    start, stop = (source.first_row_from(first + (n_bytes * r) // size) for r in (rank, rank + 1))
    return range(start, source.n_rows if rank == size - 1 else stop)


def stream_chunks(source: Source, chunk_rows: int) -> list[range]:
    """Consecutive row ranges of about chunk_rows rows covering the file, for streaming; for
    Parquet they follow the row groups (a group is never split between chunks)."""
    if isinstance(chunk_rows, bool) or not isinstance(chunk_rows, (int, np.integer)) \
            or chunk_rows < 1:
        raise ValueError(f"chunk_rows must be an int >= 1, got {chunk_rows!r}")
    if hasattr(source, "chunks"):
        return source.chunks(chunk_rows)
    return [range(start, min(start + chunk_rows, source.n_rows))
            for start in range(0, source.n_rows, chunk_rows)]


def _check_rank(rank: int, size: int, partition: str) -> None:
    if isinstance(size, bool) or not isinstance(size, (int, np.integer)) or size < 1:
        raise ValueError(f"size must be an int >= 1, got {size!r}")
    if isinstance(rank, bool) or not isinstance(rank, (int, np.integer)) or not 0 <= rank < size:
        raise ValueError(f"rank must be an int in [0, {size}), got {rank!r}")
    if partition not in PARTITIONS:
        raise ValueError(f"partition must be one of {list(PARTITIONS)}, got {partition!r}")


def read_rows(path: str | os.PathLike[str], *, rank: int = 0, size: int = 1,
              label_column: int | str | None = None, labels: bool = True,
              partition: str = "contiguous") -> Shard:
    """This rank's rows of the data file at path (all of them with the defaults rank=0, size=1);
    see open_source for label_column and labels, rank_rows for partition."""
    _check_rank(rank, size, partition)
    source = open_source(path, label_column=label_column, labels=labels)
    return read_shard(source, rank_rows(source, rank, size, partition))


def read_shard(source: Source, rows: range) -> Shard:
    """The Shard of the given rows of an open source."""
    X, y = source.read(rows)
    return Shard(X, y, rows, source.n_rows, source.feature_names, source.label_name, source.format)
