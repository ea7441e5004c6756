"""CSV files of numbers: a header line when none of the first line's fields is a number; the
rows are parsed by pandas, a block of CSV_BLOCK_ROWS lines at a time, from exactly their bytes
(fields are never quoted: a quote cannot join lines into one row, so pandas' rows are the lines
counted, or more of them where a lone \r splits a line, which the row count then catches)."""

from __future__ import annotations

import io
from collections.abc import Sequence
from csv import QUOTE_NONE

import numpy as np

from .columns import feature_columns, label_index, split_label
from .lines import LineIndex

CSV_BLOCK_ROWS = 1 << 16


def _is_number(field: str) -> bool:
    try:
        float(field)
    except ValueError:
        return False
    return True


class CsvSource:
    """The rows of a CSV file (see the module docstring); `read(rows)` returns (X, y)."""

    format = "csv"

    def __init__(self, path: str, label_column: int | str | None, labels: bool) -> None:
        self.path = path
        self.index = LineIndex(path)
        if self.index.n_lines == 0:
            raise ValueError(f"{path}: the file is empty")
        first_line = self.index.read(0, 1)[0]
        if not first_line.strip():
            raise ValueError(f"{path}, line 1: the line is empty; expected a header or values")
        fields = [field.strip() for field in first_line.split(",")]
        self.header = not any(_is_number(field) for field in fields)
        self.names = fields if self.header else None
        self.n_columns = len(fields)
        self.n_rows = self.index.n_lines - self.header
        if self.n_rows == 0:
            raise ValueError(f"{path}: the file has a header line but no data rows")
        self.label = label_index(path, label_column, self.names, len(fields)) if labels else None
        features = feature_columns(path, len(fields), self.label)
        self.feature_names = None if self.names is None else tuple(fields[j] for j in features)
        self.label_name = None if self.names is None or self.label is None else fields[self.label]
        self.row_bytes_start = self.index.offset(int(self.header))

    def read(self, rows: range) -> tuple[np.ndarray, np.ndarray | None]:
        """(X, y) of the rows (0-based, after the header): X (m, features) float64."""
        values = np.empty((len(rows), self.n_columns))
        for start in range(rows.start, rows.stop, CSV_BLOCK_ROWS):
            stop = min(rows.stop, start + CSV_BLOCK_ROWS)
            values[start - rows.start:stop - rows.start] = self._parse(start, stop)
        return split_label(self.path, values, self.label)

    def first_row_from(self, offset: int) -> int:
        """The first data row starting at or after byte offset."""
        return max(0, self.index.first_line_from(offset) - self.header)

    def _parse(self, start: int, stop: int) -> np.ndarray:
        """(stop - start, n_columns) values of data rows start..stop-1."""
        import pandas as pd

        first = start + self.header
        raw = self.index.read_bytes(first, stop + self.header)
        try:
            values = pd.read_csv(io.BytesIO(raw), header=None, dtype=np.float64, engine="c",
                                 skip_blank_lines=False, quoting=QUOTE_NONE).to_numpy()
        except (ValueError, pd.errors.ParserError):
            values = None
        if values is not None and values.shape == (stop - start, self.n_columns):
            suspect = np.flatnonzero(np.isnan(values).any(axis=1))  # empty fields, "NA", "nan"
            if not len(suspect):
                return values
            lines = _lines(raw)
            for i in suspect:
                _check_line(self.path, lines[i], first + i + 1, self.names, self.n_columns)
            return values
        lines = _lines(raw)
        for number, line in enumerate(lines, start=first + 1):
            _check_line(self.path, line, number, self.names, self.n_columns)
        if len(lines) != stop - start:
            raise ValueError(f"{self.path}, lines {first + 1}-{first + len(lines)}: cannot be "
                             "read as numbers")
        # every field is a number to Python (" inf", "1_0") though not to pandas' parser
        return np.array([[float(field) for field in line.split(",")] for line in lines])


def _lines(raw: bytes) -> list[str]:
    """The lines of a block of bytes, without line endings; bytes that are not UTF-8 become
    U+FFFD, which the line checks then report as not a number."""
    lines = raw.decode("utf-8", errors="replace").split("\n")
    if lines[-1] == "":
        lines.pop()
    return [line[:-1] if line.endswith("\r") else line for line in lines]


def _check_line(path: str, line: str, number: int, names: Sequence[str] | None,
                n_columns: int) -> None:
    """A ValueError naming the file, line, column and problem, unless the line is n_columns
    numbers."""
    where = f"{path}, line {number}"
    if not line.strip():
        raise ValueError(f"{where}: the line is empty; expected {n_columns} values")
    fields = line.split(",")
    if len(fields) != n_columns:
        raise ValueError(f"{where}: {len(fields)} values, expected {n_columns} (as on line 1)")
    for j, field in enumerate(fields):
        if not _is_number(field):
            column = f"column {j + 1}" + ("" if names is None else f" ({names[j]!r})")
            hint = " (a header line must have no numeric field)" if number == 1 else ""
            raise ValueError(f"{where}, {column}: {field.strip()!r} is not a number{hint}")
