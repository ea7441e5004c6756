"""Parquet files (pyarrow, an optional dependency: pip install "fastdp[io]"): only the row groups
that overlap the rows asked for are read. A URI (s3://bucket/data.parquet, hdfs://host/path,
file:///path) is opened through pyarrow's filesystem layer."""

from __future__ import annotations

from typing import Any

import numpy as np

from .columns import feature_columns, label_index


def _pyarrow_parquet() -> Any:
    try:
        import pyarrow.parquet as pq
    except ImportError:
        raise ImportError('reading Parquet files needs pyarrow: pip install "fastdp[io]"') from None
    return pq


def _is_numeric(kind: Any) -> bool:
    import pyarrow as pa

    return pa.types.is_integer(kind) or pa.types.is_floating(kind) or pa.types.is_boolean(kind)


def _is_string(kind: Any) -> bool:
    import pyarrow as pa

    return pa.types.is_string(kind) or pa.types.is_large_string(kind)


def _first_not_utf8(column: Any) -> int:
    """The index of the first value of a string column whose bytes are not UTF-8."""
    import pyarrow as pa

    for i, value in enumerate(column.cast(pa.binary()).to_pylist()):
        try:
            value.decode("utf-8")
        except UnicodeDecodeError:
            return i
    return 0


class ParquetSource:
    """The rows of a Parquet file; `read(rows)` returns (X float64, y numbers or str). The last
    row group read is kept, so consecutive small reads (streaming) decode each group once."""

    format = "parquet"

    def __init__(self, path: str, label_column: int | str | None, labels: bool) -> None:
        pq = _pyarrow_parquet()
        import pyarrow as pa
        import pyarrow.fs  # noqa: F401  (pa.fs)

        self.path = path
        try:
            # pre_buffer (one request per column chunk) pays off on S3/HDFS; on a local file it
            # keeps a row group's raw bytes alive until the next read, for nothing.
            if "://" in path:  # through pyarrow's filesystem layer: S3, HDFS, GCS, file://
                filesystem, inner = pa.fs.FileSystem.from_uri(path)
                self.file = pq.ParquetFile(filesystem.open_input_file(inner), pre_buffer=True)
            else:
                self.file = pq.ParquetFile(path, pre_buffer=False)
            schema = self.file.schema_arrow
        except (pa.ArrowException, OSError, UnicodeDecodeError) as exc:  # column names not UTF-8
            raise ValueError(f"{path}: not a readable Parquet file ({exc})") from None
        names = list(schema.names)
        self.n_rows = self.file.metadata.num_rows
        if self.n_rows == 0 or not names:
            raise ValueError(f"{path}: the file is empty ({self.n_rows} rows, {len(names)} "
                             "columns)")
        self.label = label_index(path, label_column, names, len(names)) if labels else None
        self.features = feature_columns(path, len(names), self.label)
        for j in self.features:
            if not _is_numeric(schema.field(j).type):
                raise ValueError(f"{path}: column {names[j]!r} has type {schema.field(j).type}; "
                                 "feature columns must be numeric")
        if self.label is not None:
            kind = schema.field(self.label).type
            if not (_is_numeric(kind) or _is_string(kind)):
                raise ValueError(f"{path}: label column {names[self.label]!r} has type {kind}; "
                                 "labels must be numbers or strings")
        self.names = names
        self.feature_names = tuple(names[j] for j in self.features)
        self.label_name = None if self.label is None else names[self.label]
        sizes = [self.file.metadata.row_group(g).num_rows
                 for g in range(self.file.metadata.num_row_groups)]
        if min(sizes, default=0) < 0 or sum(sizes) != self.n_rows:
            raise ValueError(f"{path}: not a readable Parquet file (its footer has row groups of "
                             f"{sizes} rows, {self.n_rows} rows in all)")
        self.group_starts = np.concatenate([[0], np.cumsum(sizes)]).astype(int)
        self._cached: tuple[tuple[int, ...], Any] | None = None

    def chunks(self, chunk_rows: int) -> list[range]:
        """Consecutive row ranges for streaming, cut at row-group boundaries: groups are merged
        up to chunk_rows rows, and a larger group is one chunk, so each group is decoded once."""
        chunks, start = [], 0
        for stop in self.group_starts[1:]:
            if stop - start >= chunk_rows or stop == self.n_rows:
                chunks.append(range(start, int(stop)))
                start = int(stop)
        return chunks

    def read(self, rows: range) -> tuple[np.ndarray, np.ndarray | None]:
        """(X (m, features) float64, y (m,) or None) of the rows."""
        import pyarrow as pa

        try:
            table = self._row_range(rows)
        except (pa.ArrowException, OSError) as exc:  # a corrupt page, a cut file
            raise ValueError(f"{self.path}, rows {rows.start}-{rows.stop - 1}: not readable "
                             f"({exc})") from None
        if table.num_rows != len(rows):  # a corrupt page header that decodes to fewer values
            raise ValueError(f"{self.path}, rows {rows.start}-{rows.stop - 1}: not readable (the "
                             f"footer promises {len(rows)} rows here, the pages hold "
                             f"{table.num_rows})")
        X = np.empty((len(rows), len(self.features)))
        for out, j in enumerate(self.features):
            X[:, out] = self._column_values(table.column(j), self.names[j], rows.start)
        y = None if self.label is None else self._column_values(
            table.column(self.label), self.names[self.label], rows.start)
        return X, y

    def _row_range(self, rows: range) -> Any:
        """The table of the rows, from the row groups they overlap only."""
        starts = self.group_starts
        groups = tuple(g for g in range(len(starts) - 1)
                       if starts[g] < rows.stop and rows.start < starts[g + 1])
        if not groups:
            return self.file.schema_arrow.empty_table()
        if self._cached is None or self._cached[0] != groups:
            self._cached = None  # free the old groups before decoding the new ones
            self._cached = groups, self.file.read_row_groups(list(groups))
        return self._cached[1].slice(rows.start - int(starts[groups[0]]), len(rows))

    def _column_values(self, column: Any, name: str, first_row: int) -> np.ndarray:
        """A column as a numpy array (str for string columns); missing values are errors."""
        if column.null_count:
            missing = next(i for i, value in enumerate(column.is_null().to_pylist()) if value)
            raise ValueError(f"{self.path}, row {first_row + missing}: column {name!r} has a "
                             "missing value")
        if _is_string(column.type):
            try:
                values = column.to_pylist()
            except UnicodeDecodeError as exc:  # a corrupt page
                raise ValueError(f"{self.path}, row {first_row + _first_not_utf8(column)}: column "
                                 f"{name!r} has a value that is not UTF-8 ({exc.reason})") from None
            cut = next((i for i, value in enumerate(values) if value.endswith("\x00")), None)
            if cut is not None:  # numpy strings drop trailing NULs: the label would change
                raise ValueError(f"{self.path}, row {first_row + cut}: column {name!r} has a "
                                 f"value ending in a NUL character: {values[cut]!r}")
            return np.array(values, dtype=str)
        return column.to_numpy()
