"""Files in and out: each rank reads only its rows of a data file; results are written atomically.

    shard = fastdp.io.read_rows("train.parquet", rank=comm.rank, size=comm.size)
    shard.X, shard.y          # this rank's rows: features (m, n) and labels (m,)
    shard.rows, shard.n_rows  # which rows of the file those are, and how many the file has

The rows of rank r out of size are fastdp.partition.contiguous_range(n_rows, size, r). The format
comes from the file name's extension:

- `.npy`: a 2-D numeric array, memory-mapped; only this rank's rows are copied out of it.
- `.csv`: numbers separated by commas, one row per line. The first line is a header of column
  names when none of its fields is a number. Lines are counted first, then only this rank's lines
  are read and parsed.
- `.parquet` / `.pq`: only the row groups that overlap this rank's rows are read (pyarrow, an
  optional dependency: `pip install "fastdp[io]"`). Features must be numeric columns; the label
  column may hold numbers or strings. A URI (s3://bucket/data.parquet, hdfs://host/path,
  file:///path) is opened through pyarrow's filesystem layer, so the same code reads from S3 or
  HDFS where pyarrow is configured for them (AWS credentials in the environment; libhdfs with
  HADOOP_HOME and CLASSPATH set).
- `.txt` / `.tsv`: text, one row per line. With labels, each line is `label<TAB>text` (the label is
  everything before the first TAB, the text everything after it; labels are strings); without,
  each whole line is a document. X is then the list of documents, which
  fastdp.text.HashingFeaturizer turns into features.

The label column (tabular formats) is label_column, by index or (CSV with a header, Parquet) by
name; by default the last column. Errors are ValueErrors that name the file, the line or row, and
the problem. Nothing here is collective: combine the ranks' outcomes before the next collective.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import IO, Any

import numpy as np

from .partition import contiguous_range

FORMATS: dict[str, str] = {".npy": "npy", ".csv": "csv", ".parquet": "parquet", ".pq": "parquet",
                           ".txt": "text", ".tsv": "text"}
PREDICTION_FORMATS: tuple[str, ...] = (".npy", ".csv", ".txt")
CHUNK_BYTES = 1 << 20
NPY_BLOCK_BYTES = 64 << 20  # rows of a .npy file are copied this much at a time
NUMERIC_KINDS = "biuf"


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
    """The format read_rows uses for path, from its extension: "npy", "csv", "parquet" or "text"."""
    extension = os.path.splitext(os.fspath(path))[1].lower()
    if extension not in FORMATS:
        raise ValueError(f"{os.fspath(path)}: unknown data file extension {extension!r}; "
                         f"expected one of {', '.join(FORMATS)}")
    return FORMATS[extension]


def read_rows(path: str | os.PathLike[str], *, rank: int = 0, size: int = 1,
              label_column: int | str | None = None, labels: bool = True) -> Shard:
    """This rank's rows of the data file at path (all of them with the defaults rank=0, size=1).

    rank, size:   this process's rank and the number of ranks sharing the file
    label_column: the label column of a tabular file, by index (negative counts from the end) or
                  by name (CSV with a header, Parquet); None: the last column
    labels:       False reads a file without labels: every column is a feature, every text line a
                  document (label_column must then be None)
    Raises FileNotFoundError for a missing file and ValueError naming the file, the line or row and
    the problem for a file that cannot be read as its extension says.
    """
    path = os.fspath(path)
    if isinstance(size, bool) or not isinstance(size, (int, np.integer)) or size < 1:
        raise ValueError(f"size must be an int >= 1, got {size!r}")
    if isinstance(rank, bool) or not isinstance(rank, (int, np.integer)) or not 0 <= rank < size:
        raise ValueError(f"rank must be an int in [0, {size}), got {rank!r}")
    if label_column is not None and not isinstance(label_column, (int, np.integer, str)):
        raise ValueError(f"label_column must be an int, a str or None, got {label_column!r}")
    if not labels and label_column is not None:
        raise ValueError(f"label_column={label_column!r} needs labels=True")
    kind = file_format(path)
    remote = "://" in os.fspath(path)
    if remote and kind != "parquet":
        raise ValueError(f"{path}: only Parquet files are read through a URI (pyarrow's "
                         "filesystems: file://, s3://, hdfs://, ...)")
    if not remote and not os.path.isfile(path):
        raise FileNotFoundError(f"{path}: no such file")
    if kind == "text":
        if label_column is not None:
            raise ValueError(f"{path}: label_column does not apply to text files (the label is "
                             "the part of each line before the first TAB)")
        return _read_text(path, rank, size, labels)
    reader = {"npy": _read_npy, "csv": _read_csv, "parquet": _read_parquet}[kind]
    return reader(path, rank, size, label_column, labels)


def _label_index(path: str, label_column: int | str | None, names: Sequence[str] | None,
                 n_columns: int) -> int:
    """Index of the label column among n_columns columns (named `names`, if the file names them)."""
    if label_column is None:
        return n_columns - 1
    if isinstance(label_column, str):
        if names is None:
            raise ValueError(f"{path}: label_column {label_column!r} is a name, but the file has "
                             "no column names; give the column's index")
        if label_column not in names:
            raise ValueError(f"{path}: no column named {label_column!r} for the labels; "
                             f"columns: {', '.join(names)}")
        return list(names).index(label_column)
    if not -n_columns <= label_column < n_columns:
        raise ValueError(f"{path}: label_column {label_column} is out of range for a file with "
                         f"{n_columns} columns")
    return int(label_column) % n_columns


def _feature_columns(path: str, n_columns: int, label: int | None) -> list[int]:
    """Indices of the feature columns: every column but the label's (there must be one)."""
    features = [j for j in range(n_columns) if j != label]
    if not features:
        raise ValueError(f"{path}: the file has only the label column, no feature columns")
    return features


def _split_label(path: str, values: np.ndarray, label: int | None,
                 names: Sequence[str] | None) -> tuple[np.ndarray, np.ndarray | None,
                                                       tuple[str, ...] | None, str | None]:
    """(X, y, feature_names, label_name) from a block of rows and the label column's index."""
    if label is None:
        return values, None, None if names is None else tuple(names), None
    features = _feature_columns(path, values.shape[1], label)
    X = np.ascontiguousarray(values[:, features])
    y = np.array(values[:, label])
    if names is None:
        return X, y, None, None
    return X, y, tuple(names[j] for j in features), names[label]


# --- .npy ----------------------------------------------------------------------------------------

def _read_npy(path: str, rank: int, size: int, label_column: int | str | None,
              labels: bool) -> Shard:
    try:
        data = np.load(path, mmap_mode="r", allow_pickle=False)
    except (ValueError, EOFError, OSError) as exc:
        raise ValueError(f"{path}: not a readable .npy file ({exc})") from None
    if not isinstance(data, np.ndarray) or data.ndim != 2:
        raise ValueError(f"{path}: expected a 2-D array (rows x columns), got "
                         f"{getattr(data, 'ndim', '?')} dimension(s)")
    if data.dtype.kind not in NUMERIC_KINDS:
        raise ValueError(f"{path}: expected a numeric array, got dtype {data.dtype}")
    n_rows, n_columns = data.shape
    if n_rows == 0 or n_columns == 0:
        raise ValueError(f"{path}: the array is empty (shape {data.shape})")
    if isinstance(label_column, str):
        raise ValueError(f"{path}: a .npy file has no column names; give label_column as an index, "
                         f"got {label_column!r}")
    label = _label_index(path, label_column, None, n_columns) if labels else None
    rows = contiguous_range(n_rows, size, rank)
    dtype = data.dtype if data.dtype in (np.float32, np.float64) else np.float64
    features = _feature_columns(path, n_columns, label)
    X = np.empty((len(rows), len(features)), dtype)
    y = None if label is None else np.empty(len(rows), data.dtype)
    for start, block in _npy_row_blocks(path, data, rows):
        X[start:start + len(block)] = block[:, features]
        if y is not None:
            y[start:start + len(block)] = block[:, label]
    return Shard(X, y, rows, n_rows, None, None, "npy")


def _npy_row_blocks(path: str, data: np.ndarray, rows: range) -> Iterator[tuple[int, np.ndarray]]:
    """(offset within rows, block) for consecutive blocks of about NPY_BLOCK_BYTES of the rows.

    A C-ordered file maps one block at a time and unmaps it before the next, so the pages read
    from the file never pile up in this process's memory next to the copy: peak memory stays near
    the rank's share of the file. A Fortran-ordered file is read through its one memory map."""
    row_bytes = data.dtype.itemsize * data.shape[1]
    step = max(1, NPY_BLOCK_BYTES // row_bytes)
    for start in range(0, len(rows), step):
        stop = min(len(rows), start + step)
        if not data.flags.c_contiguous:
            yield start, data[rows.start + start:rows.start + stop]
            continue
        block = np.memmap(path, data.dtype, mode="r", shape=(stop - start, data.shape[1]),
                          offset=data.offset + (rows.start + start) * row_bytes)
        yield start, block
        del block  # munmap: these pages leave the resident set


# --- lines of a file -----------------------------------------------------------------------------

def _count_lines(path: str) -> int:
    """Lines in the file: its newlines, plus one for a last line without a newline."""
    count, last = 0, b"\n"
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK_BYTES):
            count += chunk.count(b"\n")
            last = chunk[-1:]
    return count + (last != b"\n")


def _line_offset(f: IO[bytes], target: int, pos: int = 0, line: int = 0) -> int:
    """Byte offset where line `target` (0-based) starts, scanning f from byte pos, the start of
    line `line`; the file's size when target is past its last line."""
    f.seek(pos)
    while line < target:
        chunk = f.read(CHUNK_BYTES)
        if not chunk:
            break
        newlines = chunk.count(b"\n")
        if line + newlines < target:
            line += newlines
            pos += len(chunk)
            continue
        i = -1
        for _ in range(target - line):
            i = chunk.find(b"\n", i + 1)
        return pos + i + 1
    return pos


def _read_lines(path: str, start: int, stop: int) -> list[str]:
    """Lines start..stop-1 (0-based) of the file, decoded as UTF-8, without their line endings;
    only the bytes up to the end of line stop-1 are read."""
    if stop <= start:
        return []
    with open(path, "rb") as f:
        begin = _line_offset(f, start)
        end = _line_offset(f, stop, begin, start)
        f.seek(begin)
        block = f.read(end - begin)
    try:
        text = block.decode("utf-8")
    except UnicodeDecodeError as exc:
        number = start + block.count(b"\n", 0, exc.start) + 1
        raise ValueError(f"{path}, line {number}: not valid UTF-8 ({exc.reason})") from None
    lines = text.split("\n")
    if text.endswith("\n"):
        lines.pop()
    return [line[:-1] if line.endswith("\r") else line for line in lines]


# --- .csv ----------------------------------------------------------------------------------------

def _is_number(field: str) -> bool:
    try:
        float(field)
    except ValueError:
        return False
    return True


def _read_csv(path: str, rank: int, size: int, label_column: int | str | None,
              labels: bool) -> Shard:
    n_lines = _count_lines(path)
    if n_lines == 0:
        raise ValueError(f"{path}: the file is empty")
    first_line = _read_lines(path, 0, 1)[0]
    if not first_line.strip():
        raise ValueError(f"{path}, line 1: the line is empty; expected a header or values")
    fields = [field.strip() for field in first_line.split(",")]
    header = not any(_is_number(field) for field in fields)
    names = fields if header else None
    n_rows = n_lines - header
    if n_rows == 0:
        raise ValueError(f"{path}: the file has a header line but no data rows")
    label = _label_index(path, label_column, names, len(fields)) if labels else None
    rows = contiguous_range(n_rows, size, rank)
    first = header + rows.start
    values = _parse_csv(path, _read_lines(path, first, header + rows.stop), first + 1, names,
                        len(fields))
    X, y, feature_names, label_name = _split_label(path, values, label, names)
    return Shard(X, y, rows, n_rows, feature_names, label_name, "csv")


def _parse_csv(path: str, lines: list[str], first_line: int, names: Sequence[str] | None,
               n_columns: int) -> np.ndarray:
    """(len(lines), n_columns) float64 values of the CSV lines, numbered from first_line."""
    if not lines:
        return np.empty((0, n_columns))
    try:
        values = np.loadtxt(lines, delimiter=",", dtype=np.float64, ndmin=2, comments=None)
    except ValueError as exc:
        values, problem = None, str(exc)
    else:
        problem = None
        if values.shape == (len(lines), n_columns):
            return values
    for number, line in enumerate(lines, start=first_line):
        where = f"{path}, line {number}"
        if not line.strip():
            raise ValueError(f"{where}: the line is empty; expected {n_columns} values")
        fields = line.split(",")
        if len(fields) != n_columns:
            raise ValueError(f"{where}: {len(fields)} values, expected {n_columns} "
                             f"(as on line 1)")
        for j, field in enumerate(fields):
            if not _is_number(field):
                column = f"column {j + 1}" + ("" if names is None else f" ({names[j]!r})")
                hint = " (a header line must have no numeric field)" if number == 1 else ""
                raise ValueError(f"{where}, {column}: {field.strip()!r} is not a number{hint}")
    raise ValueError(f"{path}, lines {first_line}-{first_line + len(lines) - 1}: "
                     f"cannot be read as numbers ({problem})")


# --- .parquet ------------------------------------------------------------------------------------

def _pyarrow_parquet() -> Any:
    try:
        import pyarrow.parquet as pq
    except ImportError:
        raise ImportError('reading Parquet files needs pyarrow: pip install "fastdp[io]"') from None
    return pq


def _read_parquet(path: str, rank: int, size: int, label_column: int | str | None,
                  labels: bool) -> Shard:
    pq = _pyarrow_parquet()
    import pyarrow as pa
    import pyarrow.fs  # noqa: F401  (pa.fs)

    try:
        if "://" in path:  # through pyarrow's filesystem layer: S3, HDFS, GCS, file://
            filesystem, inner = pa.fs.FileSystem.from_uri(path)
            parquet = pq.ParquetFile(filesystem.open_input_file(inner))
        else:
            parquet = pq.ParquetFile(path)
    except (pa.ArrowException, OSError) as exc:
        raise ValueError(f"{path}: not a readable Parquet file ({exc})") from None
    schema = parquet.schema_arrow
    names = list(schema.names)
    n_rows = parquet.metadata.num_rows
    if n_rows == 0 or not names:
        raise ValueError(f"{path}: the file is empty ({n_rows} rows, {len(names)} columns)")
    label = _label_index(path, label_column, names, len(names)) if labels else None
    features = _feature_columns(path, len(names), label)
    for j in features:
        if not _is_numeric(schema.field(j).type):
            raise ValueError(f"{path}: column {names[j]!r} has type {schema.field(j).type}; "
                             "feature columns must be numeric")
    if label is not None:
        kind = schema.field(label).type
        if not (_is_numeric(kind) or _is_string(kind)):
            raise ValueError(f"{path}: label column {names[label]!r} has type {kind}; labels must "
                             "be numbers or strings")
    rows = contiguous_range(n_rows, size, rank)
    table = _read_row_range(parquet, rows)
    X = np.empty((len(rows), len(features)))
    for out, j in enumerate(features):
        X[:, out] = _column_values(path, table.column(j), names[j], rows.start)
    y = None if label is None else _column_values(path, table.column(label), names[label],
                                                  rows.start)
    return Shard(X, y, rows, n_rows, tuple(names[j] for j in features),
                 None if label is None else names[label], "parquet")


def _is_numeric(kind: Any) -> bool:
    import pyarrow as pa

    return pa.types.is_integer(kind) or pa.types.is_floating(kind) or pa.types.is_boolean(kind)


def _is_string(kind: Any) -> bool:
    import pyarrow as pa

    return pa.types.is_string(kind) or pa.types.is_large_string(kind)


def _read_row_range(parquet: Any, rows: range) -> Any:
    """The table of rows `rows` of the ParquetFile, reading only the row groups they overlap."""
    groups, first_row, start = [], None, 0
    for group in range(parquet.metadata.num_row_groups):
        stop = start + parquet.metadata.row_group(group).num_rows
        if start < rows.stop and rows.start < stop and stop > start:
            groups.append(group)
            first_row = start if first_row is None else first_row
        start = stop
    if not groups:
        return parquet.schema_arrow.empty_table()
    return parquet.read_row_groups(groups).slice(rows.start - first_row, len(rows))


def _column_values(path: str, column: Any, name: str, first_row: int) -> np.ndarray:
    """A Parquet column as a numpy array (str for string columns); missing values are errors."""
    if column.null_count:
        missing = next(i for i, value in enumerate(column.is_null().to_pylist()) if value)
        raise ValueError(f"{path}, row {first_row + missing}: column {name!r} has a missing value")
    if _is_string(column.type):
        return np.array(column.to_pylist(), dtype=str)
    return column.to_numpy()


# --- text ----------------------------------------------------------------------------------------

def _read_text(path: str, rank: int, size: int, labels: bool) -> Shard:
    n_lines = _count_lines(path)
    if n_lines == 0:
        raise ValueError(f"{path}: the file is empty")
    rows = contiguous_range(n_lines, size, rank)
    lines = _read_lines(path, rows.start, rows.stop)
    if not labels:
        return Shard(lines, None, rows, n_lines, None, None, "text")
    texts, label_values = [], []
    for number, line in enumerate(lines, start=rows.start + 1):
        label, tab, text = line.partition("\t")
        if not tab or not label:
            problem = "no TAB after a label" if not tab else "an empty label"
            shown = f"{line[:40]!r}{'...' if len(line) > 40 else ''}"
            raise ValueError(f"{path}, line {number}: {problem}; expected 'label<TAB>text', "
                             f"got {shown}")
        label_values.append(label)
        texts.append(text)
    return Shard(texts, np.array(label_values, dtype=str), rows, n_lines, None, None, "text")


# --- writing -------------------------------------------------------------------------------------

@contextmanager
def atomic_file(path: str | os.PathLike[str]) -> Iterator[IO[bytes]]:
    """Open a temporary file beside path for writing (binary); on success it is flushed, synced
    and renamed onto path (os.replace), so path holds either its old contents or all the new
    ones, never a part. On an exception the temporary file is removed and path is untouched."""
    path = os.fspath(path)
    directory, name = os.path.split(os.path.abspath(path))
    temporary = os.path.join(directory, f".{name}.{secrets.token_hex(6)}.tmp")
    try:
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    except OSError as exc:
        raise type(exc)(f"cannot write {path}: {exc.strerror} ({directory})") from None
    try:
        with os.fdopen(fd, "wb") as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(temporary, path)
    except BaseException:
        if os.path.exists(temporary):
            os.unlink(temporary)
        raise
    _sync_directory(directory)


def _sync_directory(directory: str) -> None:
    """fsync a directory, so a rename in it survives a crash (where the OS allows it)."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def write_predictions(path: str | os.PathLike[str], values: np.ndarray) -> None:
    """Write predictions (m,) to path, atomically: `.npy` (a numpy array; string labels as a
    unicode array, loadable without pickle), or `.csv` / `.txt` (one value per line; floats in
    their shortest exact form)."""
    path = os.fspath(path)
    extension = os.path.splitext(path)[1].lower()
    if extension not in PREDICTION_FORMATS:
        raise ValueError(f"{path}: unknown output extension {extension!r}; expected one of "
                         f"{', '.join(PREDICTION_FORMATS)}")
    values = np.asarray(values)
    if values.dtype == object:
        values = values.astype(str)
    with atomic_file(path) as f:
        if extension == ".npy":
            np.save(f, values, allow_pickle=False)
        else:
            text = repr if values.dtype.kind == "f" else str
            f.write("".join(f"{text(value)}\n" for value in values.tolist()).encode("utf-8"))
