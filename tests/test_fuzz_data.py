"""Property tests of fastdp.data's loaders and writers on random and corrupted bytes: every input
gives the result its bytes say, or a ValueError whose message starts with the file's path; never
another exception, a hang, or rows that are silently wrong.

The references here are brute-force readings of what the module docstrings promise: lines are the
bytes between b"\\n" (one trailing b"\\r" dropped), CSV fields are the line split at commas, a
number is what Python's float() reads, a text line is `label<TAB>text`."""

import base64
import contextlib
import os
import re
import tempfile

import numpy as np
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from fastdp import data as io
from fastdp.data import csv as csv_module
from fastdp.data import lines as line_index
from fastdp.data import npy as npy_module
from fastdp.data.lines import LineIndex
from fastdp.partition import contiguous_range

FUZZ = settings(max_examples=60, deadline=None)  # round trips
CORRUPT = settings(max_examples=200, deadline=None)  # corrupted inputs: more ways to go wrong


@contextlib.contextmanager
def patched(module, name, value):
    """module.name = value for the block (function-scoped monkeypatch does not reset between
    hypothesis examples)."""
    old = getattr(module, name)
    setattr(module, name, value)
    try:
        yield
    finally:
        setattr(module, name, old)


@contextlib.contextmanager
def data_file(name, content):
    """The path of a fresh file holding content, removed after the block."""
    with tempfile.TemporaryDirectory() as directory:
        path = os.path.join(directory, name)
        with open(path, "wb") as f:
            f.write(content)
        yield path


def outcome(read, path):
    """read()'s result, or the ValueError it raised when that names the file first; any other
    exception (a parser's, a decoder's, an IndexError, ...) fails the test."""
    try:
        return read()
    except Exception as exc:
        if type(exc) is ValueError and str(exc).startswith(path):
            return exc
        raise AssertionError(f"not a clear error: {type(exc).__name__}: {exc}") from exc


def read_ranks(path, size, partition="contiguous", **kwargs):
    """What each of size ranks gets, as read_rows does it (each rank opens the file itself):
    (the opened source or its ValueError, [(rows, shard or ValueError) per rank])."""
    source = outcome(lambda: io.open_source(path, **kwargs), path)
    if isinstance(source, ValueError):
        return source, []
    ranks = []
    for rank in range(size):
        rows = io.rank_rows(source, rank, size, partition)
        own = outcome(lambda: io.open_source(path, **kwargs), path)
        assert not isinstance(own, ValueError) and own.n_rows == source.n_rows
        ranks.append((rows, outcome(lambda: io.read_shard(own, rows), path)))
    check_partition([rows for rows, _ in ranks], source.n_rows, size, partition)
    for rows, shard in ranks:
        if not isinstance(shard, ValueError):
            assert shard.rows == rows and shard.n_rows == source.n_rows
            assert len(shard.X) == len(rows) and (shard.y is None or len(shard.y) == len(rows))
    return source, ranks


def check_partition(ranges, n_rows, size, partition):
    """The ranks' rows cover every row once, in order."""
    assert ranges[0].start == 0 and ranges[-1].stop == n_rows
    assert all(r.step == 1 and r.start <= r.stop for r in ranges)
    assert all(a.stop == b.start for a, b in zip(ranges, ranges[1:]))
    if partition == "contiguous":
        assert ranges == [contiguous_range(n_rows, size, rank) for rank in range(size)]


def assert_same(actual, expected):
    """Equal arrays: the same shape, NaN where NaN, and the sign of every zero."""
    actual, expected = np.asarray(actual), np.asarray(expected)
    assert actual.shape == expected.shape
    numeric = actual.dtype.kind in "fc" and expected.dtype.kind in "fc"
    assert np.array_equal(actual, expected, equal_nan=numeric), (actual, expected)
    if actual.dtype.kind == "f":
        numbers = ~np.isnan(actual)
        assert np.array_equal(np.signbit(actual[numbers]), np.signbit(expected[numbers]))


def split_lines(content):
    """The lines of a file as LineIndex defines them: bytes between newlines, one trailing \\r
    dropped; a last line without a newline counts."""
    lines = content.split(b"\n")
    if lines[-1] == b"":
        lines.pop()
    return [line[:-1] if line.endswith(b"\r") else line for line in lines]


def decoded(line):
    try:
        return line.decode("utf-8")
    except UnicodeDecodeError:
        return None


def mutate(draw, content, alphabet):
    """content with 1-4 random insertions, deletions or replacements of bytes from alphabet (or any
    bytes), then perhaps cut at a random byte."""
    pieces = st.one_of(st.sampled_from(alphabet), st.binary(min_size=1, max_size=3))
    edits = draw(st.lists(st.tuples(st.sampled_from(["insert", "delete", "replace"]),
                                    st.integers(0, 1 << 16), pieces), min_size=1, max_size=4))
    for op, at, piece in edits:
        at %= len(content) + 1
        if op == "insert":
            content = content[:at] + piece + content[at:]
        elif op == "delete":
            content = content[:at] + content[at + len(piece):]
        else:
            content = content[:at] + piece + content[at + len(piece):]
    if draw(st.booleans()):
        content = content[:draw(st.integers(0, len(content)))]
    return content


# -- CSV ---------------------------------------------------------------------------------------

def _float_texts():
    finite = st.floats(allow_nan=False, allow_infinity=False)
    return st.one_of(
        finite.map(repr), finite.map(lambda v: f"{v:.17g}"), finite.map(lambda v: repr(v).upper()),
        st.integers(-(1 << 64), 1 << 64).map(str),
        st.sampled_from(["nan", "NaN", "-nan", "inf", "-inf", "+inf", "Infinity", "-Infinity",
                         "INF", "-0.0", "-0", "1e-300", "-1e300", "5e-324", "1e400", "1e-400",
                         "2.2250738585072014e-308", "1.7976931348623157e308", ".5", "5.", "+1",
                         "007", " 1", "2 "]))


NAMES = st.text(st.sampled_from("abcxyz_ "), min_size=1, max_size=5).filter(
    lambda name: name.strip() != "")


@st.composite
def csv_files(draw, max_rows=12):
    """(content bytes, header names or None, the table's fields as text (rows x columns))."""
    n_columns = draw(st.integers(1, 4))
    fields = draw(st.lists(st.lists(_float_texts(), min_size=n_columns, max_size=n_columns),
                           min_size=1, max_size=max_rows))
    names = draw(st.none() | st.lists(NAMES, min_size=n_columns, max_size=n_columns))
    eol = draw(st.sampled_from(["\n", "\r\n"]))
    lines = ([",".join(names)] if names else []) + [",".join(row) for row in fields]
    content = eol.join(lines) + (eol if draw(st.booleans()) else "")
    return content.encode(), names, fields


def labels_choice(n_columns):
    """(labels, label_column) keyword arguments for a file of n_columns columns."""
    choices = [st.just((False, None))]
    if n_columns > 1:
        choices.append(st.tuples(st.just(True), st.none() | st.integers(-n_columns,
                                                                      n_columns - 1)))
    return st.one_of(choices)


@FUZZ
@given(csv=csv_files(), size=st.integers(1, 4), partition=st.sampled_from(io.PARTITIONS),
       chunk=st.integers(1, 64), block=st.integers(1, 5), data=st.data())
def test_csv_tables_round_trip_over_any_ranks(csv, size, partition, chunk, block, data):
    content, names, fields = csv
    n_columns = len(fields[0])
    labels, label_column = data.draw(labels_choice(n_columns))
    values = np.array([[float(field) for field in row] for row in fields]).reshape(-1, n_columns)
    label = None if not labels else (n_columns - 1 if label_column is None
                                     else label_column % n_columns)
    features = [j for j in range(n_columns) if j != label]
    with data_file("t.csv", content) as path, patched(line_index, "CHUNK_BYTES", chunk), \
            patched(csv_module, "CSV_BLOCK_ROWS", block):
        source, ranks = read_ranks(path, size, partition, labels=labels, label_column=label_column)
    assert not isinstance(source, ValueError), source
    assert source.n_rows == len(fields)
    shards = [shard for _, shard in ranks]
    assert not any(isinstance(shard, ValueError) for shard in shards), shards
    assert_same(np.concatenate([shard.X for shard in shards]), values[:, features])
    if labels:
        assert_same(np.concatenate([shard.y for shard in shards]), values[:, label])
    expected_names = None if names is None else tuple(names[j].strip() for j in features)
    assert shards[0].feature_names == expected_names


STRICT_NUMBER = re.compile(r"[ \t]*(?:[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?"
                           r"|[+-]?[iI][nN][fF](?:[iI][nN][iI][tT][yY])?)[ \t]*|-?(?:nan|NaN)")


def csv_row(line, n_columns):
    """A reference reading of a CSV line: ("ok", values) when its fields are plainly numbers,
    ("maybe", values) when only Python's float() reads them (underscores, other spaces: the reader
    may refuse these), ("bad", None) when the line is not n_columns numbers."""
    text = decoded(line)
    if text is None or len(text.split(",")) != n_columns:
        return "bad", None
    try:
        values = [float(field) for field in text.split(",")]
    except ValueError:
        return "bad", None
    plain = all(STRICT_NUMBER.fullmatch(field) for field in text.split(","))
    return "ok" if plain else "maybe", values


CSV_BYTES = [b",", b"\n", b"\r", b"\r\n", b'"', b"\x00", b"\xff", b"\xc3", b"\xe2\x82", b" ",
             b"\t", b"#", b"e", b".", b"-", b"NA", b"nan", b"1", b"0", b"x"]


@CORRUPT
@given(csv=csv_files(max_rows=6), size=st.integers(1, 3), partition=st.sampled_from(io.PARTITIONS),
       chunk=st.integers(1, 32), block=st.integers(1, 4), data=st.data())
def test_corrupted_csv_gives_what_its_bytes_say_or_a_clear_error(csv, size, partition, chunk,
                                                                  block, data):
    content = mutate(data.draw, csv[0], CSV_BYTES)
    with data_file("t.csv", content) as path, patched(line_index, "CHUNK_BYTES", chunk), \
            patched(csv_module, "CSV_BLOCK_ROWS", block):
        source, ranks = read_ranks(path, size, partition, labels=False)
    if isinstance(source, ValueError):
        return
    lines = split_lines(content)
    first = decoded(lines[0]).split(",")
    header = not any(csv_module._is_number(field.strip()) for field in first)
    assert source.n_rows == len(lines) - header and source.n_columns == len(first)
    for rows, shard in ranks:
        reference = [csv_row(lines[header + i], len(first)) for i in rows]
        if isinstance(shard, ValueError):
            assert any(kind != "ok" for kind, _ in reference), shard
            continue
        assert all(kind != "bad" for kind, _ in reference), (reference, shard.X)
        assert_same(shard.X, np.array([v for _, v in reference]).reshape(len(rows), len(first)))


def test_quotes_and_lone_carriage_returns_cannot_shift_csv_rows(tmp_path):
    """pandas read a quoted field across a newline as one row, and a lone \\r as a line break: the
    two together gave the right number of rows, each holding another line's values."""
    path = tmp_path / "shifted.csv"
    path.write_bytes(b'0,0\n"1\n",5\n2,3\r4,5\n')
    with pytest.raises(ValueError, match=r"shifted\.csv, line 2: 1 values, expected 2"):
        io.read_rows(path)
    path.write_bytes(b'"1",2\n3,4\n')
    with pytest.raises(ValueError, match=r"shifted\.csv, line 1, column 1: '\"1\"' is not a num"):
        io.read_rows(path)


# -- text --------------------------------------------------------------------------------------

LABELS = st.text(st.characters(blacklist_characters="\t\n\r", blacklist_categories=("Cs",)),
                 min_size=1, max_size=6).filter(lambda label: not label.endswith("\x00"))
DOCUMENTS = st.text(st.characters(blacklist_characters="\n\r", blacklist_categories=("Cs",)),
                    max_size=20)


@FUZZ
@given(rows=st.lists(st.tuples(LABELS, DOCUMENTS), min_size=1, max_size=12),
       eol=st.sampled_from(["\n", "\r\n"]), final=st.booleans(), size=st.integers(1, 4),
       partition=st.sampled_from(io.PARTITIONS), chunk=st.integers(1, 32))
def test_labelled_text_round_trips_over_any_ranks(rows, eol, final, size, partition, chunk):
    content = eol.join(f"{label}\t{doc}" for label, doc in rows) + (eol if final else "")
    with data_file("t.tsv", content.encode()) as path, patched(line_index, "CHUNK_BYTES", chunk):
        source, ranks = read_ranks(path, size, partition)
    shards = [shard for _, shard in ranks]
    assert not any(isinstance(shard, ValueError) for shard in shards), shards
    assert sum((shard.X for shard in shards), []) == [doc for _, doc in rows]
    assert np.concatenate([shard.y for shard in shards]).tolist() == [label for label, _ in rows]


TEXT_BYTES = [b"\t", b"\n", b"\r", b"\r\n", b"\x00", b"\xff", b"\xc3", b"\xe2\x82", b"\xed\xa0\x80",
              b"\xf4\x90\x80\x80", b"\xc3\xa9", b"a"]


@CORRUPT
@given(rows=st.lists(st.tuples(LABELS, DOCUMENTS), min_size=1, max_size=8), labels=st.booleans(),
       size=st.integers(1, 3), partition=st.sampled_from(io.PARTITIONS), chunk=st.integers(1, 16),
       data=st.data())
def test_corrupted_text_round_trips_or_names_the_first_bad_line(rows, labels, size, partition,
                                                               chunk, data):
    content = "".join(f"{label}\t{doc}\n" for label, doc in rows).encode()
    content = mutate(data.draw, content, TEXT_BYTES)
    with data_file("t.txt", content) as path, patched(line_index, "CHUNK_BYTES", chunk):
        source, ranks = read_ranks(path, size, partition, labels=labels)
        if not content:
            assert str(source) == f"{path}: the file is empty"
            return
        lines = split_lines(content)
        assert source.n_rows == len(lines)
        for rows_read, shard in ranks:
            texts = [decoded(lines[i]) for i in rows_read]
            bad = [i for i, text in zip(rows_read, texts) if text is None]
            if labels and not bad:  # no TAB, an empty label, or one numpy would cut short
                split = [(i, *text.partition("\t")) for i, text in zip(rows_read, texts)]
                bad = [i for i, label, tab, _ in split
                       if not tab or not label or label.endswith("\x00")]
            if bad:
                assert isinstance(shard, ValueError) and str(shard).startswith(
                    f"{path}, line {bad[0] + 1}: "), shard
            elif labels:
                assert shard.X == [text.partition("\t")[2] for text in texts]
                assert shard.y.tolist() == [text.partition("\t")[0] for text in texts]
            else:
                assert shard.X == texts and shard.y is None


# -- LineIndex ---------------------------------------------------------------------------------

LINE_BYTES = st.lists(st.sampled_from([b"\n", b"\r", b"\r\n", b"\x00", b"a", b"\xff", b"\xc3",
                                       b"\xa9", b"\t"]), max_size=40).map(b"".join)


@settings(max_examples=100, deadline=None)
@given(content=LINE_BYTES | st.binary(max_size=40), chunk=st.integers(1, 9), data=st.data())
def test_line_reads_of_binary_content_match_a_brute_force_split(content, chunk, data):
    """\\r and NUL bytes are part of lines (only a \\r before a newline is dropped), bytes that are
    not UTF-8 name their line; offsets themselves: tests/test_data_lines.py."""
    with data_file("f.txt", content) as path:
        with patched(line_index, "CHUNK_BYTES", chunk):
            index = LineIndex(path)
        starts = [0] + [i + 1 for i, b in enumerate(content) if b == ord("\n")]
        starts = starts[:-1] if content.endswith(b"\n") or not content else starts
        lines = split_lines(content)
        assert index.n_lines == len(lines) == len(starts)
        bounds = starts + [len(content)]
        for _ in range(3):
            start = data.draw(st.integers(0, len(lines)))
            stop = data.draw(st.integers(start, len(lines)))
            assert index.read_bytes(start, stop) == content[bounds[start]:bounds[stop]]
            texts = [decoded(line) for line in lines[start:stop]]
            result = outcome(lambda: index.read(start, stop), path)
            if None in texts:
                assert str(result).startswith(f"{path}, line {start + texts.index(None) + 1}: "
                                              "not valid UTF-8"), result
            else:
                assert result == texts


# -- .npy --------------------------------------------------------------------------------------

NPY_DTYPES = ["<f8", "<f4", ">f8", "<f2", "<i8", ">i4", "|i1", "<u2", "|u1", "|b1"]


@st.composite
def npy_arrays(draw):
    """A 2-D array of random bytes: a numeric dtype of either byte order, C or Fortran order."""
    dtype = np.dtype(draw(st.sampled_from(NPY_DTYPES)))
    shape = (draw(st.integers(1, 9)), draw(st.integers(1, 4)))
    raw = draw(st.binary(min_size=dtype.itemsize * shape[0] * shape[1],
                         max_size=dtype.itemsize * shape[0] * shape[1]))
    array = np.frombuffer(raw, dtype).reshape(shape)
    if dtype.kind == "b":
        array = array.view(np.uint8).astype(bool)
    return np.asfortranarray(array) if draw(st.booleans()) else array.copy()


def npy_bytes(array, version):
    with tempfile.TemporaryFile() as f:
        np.lib.format.write_array(f, array, version=version)
        f.seek(0)
        return f.read()


@FUZZ
@given(array=npy_arrays(), version=st.sampled_from([(1, 0), (2, 0), (3, 0)]),
       size=st.integers(1, 4), block_rows=st.integers(1, 4), data=st.data())
def test_npy_arrays_round_trip_over_any_ranks(array, version, size, block_rows, data):
    labels, label_column = data.draw(labels_choice(array.shape[1]))
    label = None if not labels else (array.shape[1] - 1 if label_column is None
                                     else label_column % array.shape[1])
    features = [j for j in range(array.shape[1]) if j != label]
    row_bytes = array.dtype.itemsize * array.shape[1]
    with data_file("a.npy", npy_bytes(array, version)) as path, \
            patched(npy_module, "NPY_BLOCK_BYTES", block_rows * row_bytes):
        source, ranks = read_ranks(path, size, labels=labels, label_column=label_column)
    shards = [shard for _, shard in ranks]
    assert not any(isinstance(shard, ValueError) for shard in shards), (source, shards)
    X = np.concatenate([shard.X for shard in shards])
    native_float = array.dtype in (np.dtype("<f4"), np.dtype("<f8"))
    assert X.dtype == (array.dtype if native_float else np.float64) and X.flags.c_contiguous
    assert_same(X, array[:, features].astype(X.dtype))
    if labels:
        assert_same(np.concatenate([shard.y for shard in shards]), array[:, label])


NPY_HEADERS = st.fixed_dictionaries({
    "descr": st.sampled_from(["'<f8'", "'|b1'", "'<U3'", "'|O'", "'<c16'", "'<M8[s]'", "'|V8'",
                              "'>i2'", "'xyz'", "''", "[('a', '<f8')]", "('<f8', (2,))", "8",
                              "None"]),
    "fortran_order": st.sampled_from(["False", "True", "0", "'no'"]),
    "shape": st.one_of(
        st.lists(st.integers(-2, 1 << 70) | st.integers(0, 6), max_size=3).map(
            lambda dims: f"({', '.join(map(str, dims))}{',' if len(dims) == 1 else ''})"),
        st.sampled_from(["(3, 2.5)", "'x'", "[3, 2]", "(3, None)"])),
})


@st.composite
def corrupted_npy(draw):
    """A valid .npy file cut short, with bytes flipped (mostly in the header), or with a header
    of random fields, random length and version."""
    content = npy_bytes(draw(npy_arrays()), draw(st.sampled_from([(1, 0), (2, 0)])))
    how = draw(st.sampled_from(["cut", "flip", "header"]))
    if how == "cut":
        return content[:draw(st.integers(0, len(content) - 1))], True
    if how == "flip":
        content = bytearray(content)
        for _ in range(draw(st.integers(1, 3))):
            at = draw(st.integers(0, 127) | st.integers(0, len(content) - 1))
            content[at] = draw(st.integers(0, 255))
        return bytes(content), False
    fields = draw(NPY_HEADERS)
    header = "{" + ", ".join(f"'{k}': {v}" for k, v in fields.items()) + ", }"
    header = header.ljust(draw(st.integers(len(header), len(header) + 80))) + "\n"
    header = header.encode("latin1")
    length = draw(st.just(len(header)) | st.integers(0, 0xFFFF))
    major = draw(st.sampled_from([1, 2, 3, 9]))
    prefix = b"\x93NUMPY" + bytes([major, 0])
    prefix += length.to_bytes(2 if major == 1 else 4, "little")
    return prefix + header + draw(st.binary(max_size=100)), False


@CORRUPT
@pytest.mark.filterwarnings("ignore:overflow encountered:RuntimeWarning")  # numpy, huge shapes
@given(corrupted=corrupted_npy(), size=st.integers(1, 3))
def test_corrupted_npy_gives_what_numpy_reads_or_a_clear_error(corrupted, size):
    content, truncated = corrupted
    with data_file("a.npy", content) as path:
        source, ranks = read_ranks(path, size)
        if truncated:
            assert isinstance(source, ValueError), "a cut .npy file was read"
        try:
            reference = np.array(np.load(path, mmap_mode="r", allow_pickle=False))
        except Exception:
            reference = None
    for rows, shard in ranks:
        if not isinstance(shard, ValueError):
            assert reference is not None and reference.shape[0] == source.n_rows
            assert_same(shard.X, reference[rows.start:rows.stop, :-1].astype(shard.X.dtype))
            assert_same(shard.y, reference[rows.start:rows.stop, -1])


# -- Parquet -----------------------------------------------------------------------------------

PARQUET_TYPES = ["float64", "float32", "int64", "int32", "bool"]


@st.composite
def parquet_tables(draw, max_rows=30):
    """(pyarrow table, the label column's name or None): numeric feature columns, a label column
    of numbers or strings."""
    import pyarrow as pa

    n_rows = draw(st.integers(1, max_rows))
    columns = {}
    for j in range(draw(st.integers(1, 3))):
        kind = draw(st.sampled_from(PARQUET_TYPES))
        if kind == "bool":
            values = draw(st.lists(st.booleans(), min_size=n_rows, max_size=n_rows))
        elif kind.startswith("float"):
            values = draw(st.lists(st.floats(width=int(kind[5:])), min_size=n_rows,
                                   max_size=n_rows))
        else:
            bits = int(kind[3:])
            values = draw(st.lists(st.integers(-(1 << bits - 1), (1 << bits - 1) - 1),
                                   min_size=n_rows, max_size=n_rows))
        kind = pa.bool_() if kind == "bool" else getattr(pa, kind)()
        columns[f"c{j}"] = pa.array(values, type=kind)
    label = draw(st.sampled_from([None, "numbers", "strings"]))
    if label == "strings":
        columns["label"] = pa.array(draw(st.lists(
            st.text(st.characters(blacklist_categories=("Cs",)), max_size=5).filter(
                lambda label: not label.endswith("\x00")), min_size=n_rows, max_size=n_rows)))
    elif label == "numbers":
        columns["label"] = pa.array(draw(st.lists(st.floats(), min_size=n_rows,
                                                  max_size=n_rows)))
    return pa.table(columns), None if label is None else "label"


def parquet_bytes(table, row_group_size, compression):
    import pyarrow.parquet as pq

    with tempfile.TemporaryFile() as f:
        pq.write_table(table, f, row_group_size=row_group_size, compression=compression)
        f.seek(0)
        return f.read()


@FUZZ
@given(table=parquet_tables(), group=st.integers(1, 30), compression=st.sampled_from(["none",
       "snappy"]), size=st.integers(1, 4), chunk_rows=st.integers(1, 12))
def test_parquet_tables_round_trip_over_any_ranks_and_chunks(table, group, compression, size,
                                                            chunk_rows):
    table, label = table
    features = [name for name in table.column_names if name != label]
    expected_X = np.column_stack([table.column(name).to_numpy().astype(np.float64)
                                  for name in features])
    expected_y = None if label is None else table.column(label).to_numpy(zero_copy_only=False)
    with data_file("t.parquet", parquet_bytes(table, group, compression)) as path:
        source, ranks = read_ranks(path, size, labels=label is not None, label_column=label)
        chunks = io.stream_chunks(source, chunk_rows)
        streamed = [io.read_shard(source, rows) for rows in chunks]
    assert [r.start for r in chunks] == [0] + [r.stop for r in chunks[:-1]]
    assert chunks[-1].stop == table.num_rows
    for shards in ([shard for _, shard in ranks], streamed):
        assert_same(np.concatenate([shard.X for shard in shards]), expected_X)
        assert shards[0].feature_names == tuple(features)
        if label is None:
            assert all(shard.y is None for shard in shards)
        else:
            y = np.concatenate([shard.y for shard in shards])
            if expected_y.dtype == object:  # strings
                assert y.dtype.kind == "U" and y.tolist() == expected_y.tolist()
            else:
                assert_same(y, expected_y)


@st.composite
def corrupted_parquet(draw):
    table, label = draw(parquet_tables(max_rows=12))
    content = parquet_bytes(table, draw(st.integers(1, 12)),
                            draw(st.sampled_from(["none", "snappy", "zstd"])))
    if draw(st.booleans()):
        return content[:draw(st.integers(0, len(content) - 1))], label
    content = bytearray(content)
    for _ in range(draw(st.integers(1, 4))):
        at = draw(st.integers(0, len(content) - 1) | st.integers(len(content) - 64,
                                                                   len(content) - 1))
        content[at] ^= draw(st.integers(1, 255))
    return bytes(content), label


SHORT_PAGES = base64.b64decode(  # a 3-row column whose corrupt page header decodes 2 values
    "UEFSMRUAFQ4VICwVAhUAFQYVBhwYAQAYAQAWACgBABgBABERAAAAKLUv/SAHOQAAAgAAAAIBABUBFQ4VICwVAhUAFQYV"
    "BhwYAQAYAQAWACgBABgBABERAAAAKLUv/SAHOQAAAgAAAAIBABUAFQ4VICwVAhUAFQYVBhwYAQAYAQAWACgBABgBABER"
    "AAAAKLUv/SAHOQAAAgAAAAIBABUEGSw1ABgGc2NoZW1hFQIAFQAlAhgCYzAAFgYZPBkcJgAcFQAZJQYAGRgCYzAVDBYC"
    "FlQWZiYIPBgBABgBABYAKAEAGAEAEREAGRwVABUAFQIAPCkGGSYAAgAAABZUFgImCBZmABkcJgAcFQAZJQYAGRgCYzAV"
    "DBYCFlQWZiZuPBgBABgBABYAKAEAGAEAEREAGRwVABUAFQIAPCkGGSYAAgAAABZUFgImbhZmABkcJgAcFQAZJQYAGRgC"
    "YzAVDBYCFlQWZibUATwYAQAYAQAWACgBABgBABERABkcFQAVABUCADwpBhkmAAIAAAAWVBYCJtQBFmYAGRwYDEFSUk9X"
    "OnNjaGVtYRigAS8vLy8vM0FBQUFBUUFBQUFBQUFLQUF3QUJnQUZBQWdBQ2dBQUFBQUJCQUFNQUFBQUNBQUlBQUFBQkFB"
    "SUFBQUFCQUFBQUFFQUFBQVVBQUFBRUFBVUFBZ0FCZ0FIQUF3QUFBQVFBQkFBQUFBQUFBRUdFQUFBQUJnQUFBQUVBQUFB"
    "QUFBQUFBSUFBQUJqTUFBQUJBQUVBQVFBQUFBQUFBQUEAGCBwYXJxdWV0LWNwcC1hcnJvdyB2ZXJzaW9uIDI2LjAuMRkc"
    "HAAAANQBAABQQVIx")


@CORRUPT
@given(corrupted=corrupted_parquet(), size=st.integers(1, 3))
@example(corrupted=(SHORT_PAGES, None), size=1)  # found by this test: a numpy broadcast error
def test_corrupted_parquet_gives_rows_of_the_right_shape_or_a_clear_error(corrupted, size):
    import pyarrow.parquet as pq

    content, label = corrupted
    with data_file("t.parquet", content) as path:
        source, ranks = read_ranks(path, size, labels=label is not None, label_column=label)
        try:
            reference = pq.read_table(path)
        except Exception:
            reference = None
    for rows, shard in ranks:
        if isinstance(shard, ValueError):
            continue
        assert shard.X.shape == (len(rows), len(source.features)) and shard.X.dtype == np.float64
        if reference is not None and reference.num_rows == source.n_rows \
                and reference.column_names == source.names:
            mine = reference.slice(rows.start, len(rows))
            expected = np.column_stack([mine.column(j).to_numpy(zero_copy_only=False)
                                        for j in source.features]).astype(np.float64)
            assert_same(shard.X, expected)
            if source.label is not None:
                expected = mine.column(source.label).to_numpy(zero_copy_only=False)
                assert_same(shard.y, expected.astype(shard.y.dtype))


# -- predictions -------------------------------------------------------------------------------

PREDICTIONS = st.one_of(
    st.lists(st.floats(), max_size=20).map(lambda v: np.array(v, dtype=np.float64)),
    st.lists(st.floats(width=32), max_size=20).map(lambda v: np.array(v, dtype=np.float32)),
    st.lists(st.integers(-(1 << 63), (1 << 63) - 1), max_size=20).map(
        lambda v: np.array(v, dtype=np.int64)),
    st.lists(st.integers(0, 255), max_size=20).map(lambda v: np.array(v, dtype=np.uint8)),
    st.lists(st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00\n\r"),
                     max_size=6), max_size=20).map(lambda v: np.array(v, dtype=str)),
    st.lists(st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"),
                     max_size=6), max_size=20).map(lambda v: np.array(v, dtype=object)),
)


def read_predictions(path, extension, dtype):
    if extension == ".npy":
        return np.load(path, allow_pickle=False)
    if extension == ".parquet":
        import pyarrow.parquet as pq

        return pq.read_table(path).column("prediction").to_numpy(zero_copy_only=False)
    with open(path, "rb") as f:
        lines = f.read().decode("utf-8").split("\n")
    assert lines.pop() == ""
    if dtype.kind == "U":
        return np.array(lines, dtype=str)
    return np.array([float(line) if dtype.kind == "f" else int(line) for line in lines], dtype)


@settings(max_examples=120, deadline=None)
@given(values=PREDICTIONS, extension=st.sampled_from([".npy", ".csv", ".txt", ".parquet"]),
       data=st.data())
def test_predictions_in_any_blocks_read_back_exactly_or_leave_no_file(values, extension, data):
    cuts = sorted(data.draw(st.lists(st.integers(0, len(values)), max_size=4)))
    blocks = [values[a:b] for a, b in zip([0] + cuts, cuts + [len(values)])]
    fail_at = data.draw(st.none() | st.integers(0, len(blocks) - 1))
    dtype = values.astype(str).dtype if values.dtype == object else values.dtype
    line_break = dtype.kind == "U" and any("\n" in v or "\r" in v for v in values.tolist())
    with tempfile.TemporaryDirectory() as directory:
        path = os.path.join(directory, f"p{extension}")
        try:
            with io.PredictionWriter(path, len(values), dtype) as out:
                for k, block in enumerate(blocks):
                    if k == fail_at:
                        raise RuntimeError("a rank died")
                    out.write(block)
        except RuntimeError:
            assert fail_at is not None and os.listdir(directory) == []
            return
        except ValueError as exc:
            assert line_break and extension in (".csv", ".txt"), exc
            assert str(exc).startswith(f"{path}, row ") and "line break" in str(exc)
            assert os.listdir(directory) == []
            return
        assert fail_at is None and not (line_break and extension in (".csv", ".txt"))
        assert os.listdir(directory) == [f"p{extension}"]
        back = read_predictions(path, extension, dtype)
        if dtype.kind == "U":
            assert back.tolist() == values.astype(str).tolist()
        else:
            assert extension != ".npy" or back.dtype == dtype
            assert_same(back.astype(dtype), values)


def test_a_label_with_a_line_break_is_not_written_to_a_line_format(tmp_path):
    """One value per line: a label holding a newline would have come back as two rows."""
    labels = np.array(["spam", "two\nlines", "ham"])
    for extension in (".csv", ".txt"):
        path = tmp_path / f"p{extension}"
        with pytest.raises(ValueError, match=rf"p\{extension}, row 1: the label 'two\\nlines' "
                                             "has a line break"):
            io.write_predictions(path, labels)
        assert os.listdir(tmp_path) == []
    io.write_predictions(tmp_path / "p.parquet", labels)
    io.write_predictions(tmp_path / "p.npy", labels)
    assert np.load(tmp_path / "p.npy").tolist() == labels.tolist()


def npy_with_header(header):
    """A version 1.0 .npy file with the given header text and 48 bytes of data."""
    header = header.encode("latin1")
    header += b" " * (-(len(header) + 11) % 64) + b"\n"
    return b"\x93NUMPY\x01\x00" + len(header).to_bytes(2, "little") + header + bytes(48)


@pytest.mark.parametrize("header,problem", [
    # numpy re-tokenizes a header that is not a literal: tokenize.TokenError leaked
    ("\x00'descr': '<f8', 'fortran_order': False, 'shape': (3, 2), }", "EOF in multi-line"),
    # a negative mapped length: OverflowError leaked
    ("{'descr': '<f8', 'fortran_order': False, 'shape': (100, -2), }", "must be positive"),
    ("{'descr': '<f8', 'fortran_order': False, 'shape': (1180591620717411303424, 2), }",
     "too large"),
])
def test_a_corrupt_npy_header_is_a_value_error_naming_the_file(tmp_path, header, problem):
    path = tmp_path / "h.npy"
    path.write_bytes(npy_with_header(header))
    with pytest.raises(ValueError, match=rf"h\.npy: not a readable \.npy file \(.*{problem}"):
        io.read_rows(path)


def test_a_corrupt_parquet_page_is_a_value_error_naming_the_file_and_rows(tmp_path):
    """The footer reads, the first data page's header does not: pyarrow's OSError leaked."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = tmp_path / "p.parquet"
    pq.write_table(pa.table({"x": [1.0, 2.0, 3.0, 4.0], "y": [0.0, 1.0, 0.0, 1.0]}), path,
                   row_group_size=2, compression="none")
    content = bytearray(path.read_bytes())
    content[4:8] = b"\xff" * 4  # the page header right after the magic "PAR1"
    path.write_bytes(bytes(content))
    assert io.read_rows(path, rank=1, size=2).y.tolist() == [0.0, 1.0]  # the other row group
    with pytest.raises(ValueError, match=r"(?s)p\.parquet, rows 0-1: not readable \(.*page header"):
        io.read_rows(path, rank=0, size=2)


def test_a_label_ending_in_nul_is_an_error_not_a_shorter_label(tmp_path):
    """numpy's str arrays drop trailing NULs: 'a\\x00' came back as 'a', '\\x00' as ''."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = tmp_path / "t.txt"
    path.write_bytes(b"a\tone\n\x00\ttwo\n")
    with pytest.raises(ValueError, match=r"t\.txt, line 2: a label ending in a NUL character"):
        io.read_rows(path)
    assert io.read_rows(path, labels=False).X == ["a\tone", "\x00\ttwo"]
    path = tmp_path / "p.parquet"
    pq.write_table(pa.table({"x": [1.0, 2.0, 3.0], "y": ["a", "b\x00", "c"]}), path)
    with pytest.raises(ValueError, match=r"p\.parquet, row 1: column 'y' has a value ending in "
                                         r"a NUL character: 'b\\x00'"):
        io.read_rows(path)


def test_parquet_footers_that_cannot_be_trusted_are_value_errors(tmp_path):
    """Column names that are not UTF-8 (UnicodeDecodeError leaked) and a row group of a negative
    number of rows (the rows' partition broke: 'could not broadcast ...')."""
    import io as bytes_io

    import pyarrow as pa
    import pyarrow.parquet as pq

    path = tmp_path / "p.parquet"
    pq.write_table(pa.table({"\u00e9x": [1.0, 2.0, 3.0], "y": [0.0, 1.0, 0.0]}), path,
                   row_group_size=2)
    content = path.read_bytes()
    path.write_bytes(content.replace("\u00e9x".encode(), b"\xff\xfex"))
    with pytest.raises(ValueError, match=r"p\.parquet: not a readable Parquet file \('utf-8'"):
        io.read_rows(path)
    footer = len(content) - 8 - int.from_bytes(content[-8:-4], "little")
    for at in range(footer, len(content) - 8):  # flip the bit that makes a group's rows negative
        flipped = content[:at] + bytes([content[at] ^ 1]) + content[at + 1:]
        try:
            meta = pq.ParquetFile(bytes_io.BytesIO(flipped)).metadata
        except Exception:
            continue
        if min(meta.row_group(g).num_rows for g in range(meta.num_row_groups)) < 0:
            break
    else:
        pytest.skip("no single bit of this footer gives a negative row group")
    path.write_bytes(flipped)
    with pytest.raises(ValueError, match=r"p\.parquet: not a readable Parquet file \(its footer "
                                         r"has row groups of \[.*-\d+.*\] rows"):
        io.read_rows(path, labels=False)


def test_a_parquet_string_that_is_not_utf8_is_a_value_error_naming_the_row(tmp_path):
    """A corrupt string page: pyarrow's UnicodeDecodeError leaked from to_pylist."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = tmp_path / "s.parquet"
    pq.write_table(pa.table({"x": [1.0, 2.0, 3.0], "y": ["ok", "caf\u00e9", "no"]}), path,
                   compression="none", use_dictionary=False, write_statistics=False)
    path.write_bytes(path.read_bytes().replace("caf\u00e9".encode(), b"caf\xc3("))
    with pytest.raises(ValueError, match=r"s\.parquet, row 1: column 'y' has a value that is not "
                                         r"UTF-8 \(invalid continuation byte\)"):
        io.read_rows(path, rank=0, size=2)
    assert io.read_rows(path, rank=1, size=2).y.tolist() == ["no"]
