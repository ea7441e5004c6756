"""fastdp.data: each rank reads exactly its rows of .npy, .csv, .parquet and text files; errors name
the file, the line and the problem."""

import os
import sys
import tempfile

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fastdp import data as io
from fastdp.data import lines as line_index
from fastdp.data import npy
from fastdp.partition import contiguous_range

N_ROWS, N_COLUMNS = 23, 4
SIZES = [(1, N_ROWS), (2, N_ROWS), (3, N_ROWS), (3, 2)]  # (ranks, rows): 3 ranks, 2 rows too
FORMATS = ["npy", "csv", "csv-header", "parquet", "text"]
NAMES = ["a", "b", "c", "label"]


def table(n_rows: int) -> np.ndarray:
    """n_rows x N_COLUMNS values; the last column is a whole-number label."""
    rng = np.random.default_rng(n_rows)
    values = rng.normal(size=(n_rows, N_COLUMNS))
    values[:, -1] = rng.integers(0, 3, size=n_rows)
    return values


def text_lines(n_rows: int) -> list[str]:
    return [f"class{i % 3}\tdocument {i}, with\ttab and words {'x' * i}" for i in range(n_rows)]


def write(directory, fmt: str, n_rows: int) -> str:
    """A data file of n_rows rows in format fmt; returns its path."""
    values = table(n_rows)
    if fmt == "npy":
        path = os.path.join(directory, "data.npy")
        np.save(path, values)
    elif fmt.startswith("csv"):
        path = os.path.join(directory, f"{fmt}.csv")
        header = ",".join(NAMES) if fmt == "csv-header" else ""
        np.savetxt(path, values, delimiter=",", header=header, comments="", fmt="%.17g")
        if not header:
            with open(path) as f:
                content = f.read().lstrip("\n")
            with open(path, "w") as f:
                f.write(content)
    elif fmt == "parquet":
        import pyarrow as pa
        import pyarrow.parquet as pq

        path = os.path.join(directory, "data.parquet")
        columns = {name: values[:, j] for j, name in enumerate(NAMES)}
        pq.write_table(pa.table(columns), path, row_group_size=5)
    else:
        path = os.path.join(directory, "data.txt")
        with open(path, "w") as f:
            f.write("".join(line + "\n" for line in text_lines(n_rows)))
    return path


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("size,n_rows", SIZES)
def test_each_rank_reads_exactly_its_rows_and_together_the_whole_file(tmp_path, fmt, size, n_rows):
    path = write(tmp_path, fmt, n_rows)
    shards = [io.read_rows(path, rank=rank, size=size) for rank in range(size)]
    for rank, shard in enumerate(shards):
        rows = contiguous_range(n_rows, size, rank)
        assert shard.rows == rows and shard.n_rows == n_rows
        assert len(shard.X) == len(shard.y) == len(rows)
    if fmt == "text":
        lines = text_lines(n_rows)
        assert sum((shard.X for shard in shards), []) == [line.split("\t", 1)[1] for line in lines]
        assert np.concatenate([s.y for s in shards]).tolist() == [l.split("\t")[0] for l in lines]
        return
    X = np.concatenate([shard.X for shard in shards])
    y = np.concatenate([shard.y for shard in shards])
    assert X.dtype == np.float64 and X.flags.c_contiguous and X.shape == (n_rows, N_COLUMNS - 1)
    np.testing.assert_array_equal(X, table(n_rows)[:, :-1])
    np.testing.assert_array_equal(y, table(n_rows)[:, -1])
    named = fmt in ("csv-header", "parquet")
    assert shards[0].feature_names == (tuple(NAMES[:-1]) if named else None)
    assert shards[0].label_name == ("label" if named else None)


def test_npy_rank_maps_and_copies_only_its_rows(tmp_path, monkeypatch):
    path = write(tmp_path, "npy", N_ROWS)
    maps = []
    real_memmap = np.memmap

    class Spy(real_memmap):
        def __new__(cls, *args, **kwargs):
            array = real_memmap.__new__(cls, *args, **kwargs)
            maps.append((array.offset, array.shape))
            return array

        def __getitem__(self, key):
            if self.shape[0] == N_ROWS and isinstance(key, (int, slice)):
                raise AssertionError(f"the whole file's map was indexed with {key!r}")
            return super().__getitem__(key)

    monkeypatch.setattr(np, "memmap", Spy)
    monkeypatch.setattr(npy, "NPY_BLOCK_BYTES", 3 * 4 * 8)  # blocks of 3 rows of 4 float64 columns
    shard = io.read_rows(path, rank=1, size=3)  # rows 8..15 of 23
    header, row_bytes = maps[0][0], 4 * 8
    assert maps[0][1] == (N_ROWS, 4)  # np.load's map of the whole file, never read
    assert maps[1:] == [(header + r * row_bytes, (n, 4)) for r, n in ((8, 3), (11, 3), (14, 2))]
    assert not isinstance(shard.X, np.memmap) and shard.X.base is None
    np.testing.assert_array_equal(shard.X, table(N_ROWS)[8:16, :-1])
    np.testing.assert_array_equal(shard.y, table(N_ROWS)[8:16, -1])


@pytest.mark.parametrize("rank,groups", [(0, [0, 1]), (1, [1, 2, 3]), (2, [3, 4])])
def test_parquet_rank_reads_only_the_row_groups_its_rows_overlap(tmp_path, monkeypatch, rank, groups):
    import pyarrow.parquet as pq

    path = write(tmp_path, "parquet", N_ROWS)  # row groups of 5: 0-4, 5-9, 10-14, 15-19, 20-22
    read = []
    real = pq.ParquetFile.read_row_groups

    def spy(self, row_groups, *args, **kwargs):
        read.append(list(row_groups))
        return real(self, row_groups, *args, **kwargs)

    monkeypatch.setattr(pq.ParquetFile, "read_row_groups", spy)
    monkeypatch.setattr(pq.ParquetFile, "read", lambda *a, **k: pytest.fail("read the whole file"))
    shard = io.read_rows(path, rank=rank, size=3)  # rows 0-7, 8-15, 16-22
    assert read == [groups]
    np.testing.assert_array_equal(shard.X, table(N_ROWS)[shard.rows, :-1])


@pytest.mark.parametrize("fmt", ["npy", "csv", "parquet"])
def test_label_column_and_reading_without_labels(tmp_path, fmt):
    path = write(tmp_path, fmt, N_ROWS)
    values = table(N_ROWS)
    shard = io.read_rows(path, label_column=0)
    np.testing.assert_array_equal(shard.X, values[:, 1:])
    np.testing.assert_array_equal(shard.y, values[:, 0])
    np.testing.assert_array_equal(io.read_rows(path, label_column=-2).y, values[:, 2])
    shard = io.read_rows(path, rank=1, size=2, labels=False)
    assert shard.y is None
    np.testing.assert_array_equal(shard.X, values[12:])


def test_label_column_by_name_and_string_labels_in_parquet(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = str(tmp_path / "s.parquet")
    pq.write_table(pa.table({"kind": ["cat", "dog", "cat"], "x": [1, 2, 3], "w": [0.5, 1.5, 2.5],
                             "flag": [True, False, True]}), path)
    shard = io.read_rows(path, label_column="kind")
    assert shard.y.tolist() == ["cat", "dog", "cat"] and shard.label_name == "kind"
    assert shard.feature_names == ("x", "w", "flag")
    np.testing.assert_array_equal(shard.X, [[1, 0.5, 1], [2, 1.5, 0], [3, 2.5, 1]])
    csv = write(tmp_path, "csv-header", N_ROWS)
    np.testing.assert_array_equal(io.read_rows(csv, label_column="b").y, table(N_ROWS)[:, 1])


def test_npy_keeps_float32_and_converts_integers(tmp_path):
    np.save(tmp_path / "f.npy", np.arange(12, dtype=np.float32).reshape(4, 3))
    np.save(tmp_path / "i.npy", np.arange(12).reshape(4, 3))
    shard = io.read_rows(tmp_path / "f.npy")
    assert shard.X.dtype == np.float32 and shard.y.tolist() == [2, 5, 8, 11]
    shard = io.read_rows(tmp_path / "i.npy")
    assert shard.X.dtype == np.float64 and shard.y.dtype.kind == "i"


@pytest.mark.parametrize("fmt", ["csv", "text"])
@pytest.mark.parametrize("ending", ["\n", "\r\n", "no final newline"])
@pytest.mark.parametrize("chunk", [1, 7, 1 << 20])
def test_line_formats_split_at_any_chunk_size_and_line_ending(tmp_path, monkeypatch, fmt, ending,
                                                             chunk):
    monkeypatch.setattr(line_index, "CHUNK_BYTES", chunk)
    lines = ([",".join(f"{v:.17g}" for v in row) for row in table(N_ROWS)] if fmt == "csv"
             else text_lines(N_ROWS))
    eol = "\n" if ending == "no final newline" else ending
    content = eol.join(lines) + ("" if ending == "no final newline" else eol)
    path = tmp_path / ("data.csv" if fmt == "csv" else "data.tsv")
    path.write_bytes(content.encode())
    shards = [io.read_rows(path, rank=rank, size=3) for rank in range(3)]
    assert [len(shard.y) for shard in shards] == [8, 8, 7]
    if fmt == "csv":
        np.testing.assert_array_equal(np.concatenate([s.X for s in shards]), table(N_ROWS)[:, :-1])
    else:
        assert sum((s.X for s in shards), []) == [line.split("\t", 1)[1] for line in lines]


@settings(max_examples=60, deadline=None)
@given(lines=st.lists(st.text(st.characters(blacklist_characters="\n\r",
                                            blacklist_categories=("Cs",)), max_size=12),
                      min_size=1, max_size=12),
       final_newline=st.booleans(), size=st.integers(1, 5), chunk=st.integers(1, 16))
def test_text_without_labels_is_any_lines_split_over_any_ranks(lines, final_newline, size, chunk):
    final_newline = final_newline or lines[-1] == ""  # else the last, empty line is not there
    content = "\n".join(lines) + ("\n" if final_newline else "")
    with tempfile.TemporaryDirectory() as directory:
        path = os.path.join(directory, "docs.txt")
        with open(path, "wb") as f:
            f.write(content.encode("utf-8"))
        old, line_index.CHUNK_BYTES = line_index.CHUNK_BYTES, chunk
        try:
            shards = [io.read_rows(path, rank=rank, size=size, labels=False) for rank in range(size)]
        finally:
            line_index.CHUNK_BYTES = old
    assert sum((shard.X for shard in shards), []) == lines
    assert all(shard.y is None for shard in shards)


def test_a_bad_line_is_reported_only_by_the_rank_that_reads_it(tmp_path):
    lines = [",".join(f"{v:.17g}" for v in row) for row in table(N_ROWS)]
    lines[20] = lines[20].replace(",", ",oops", 1)
    path = tmp_path / "bad.csv"
    path.write_text("\n".join(lines) + "\n")
    assert len(io.read_rows(path, rank=0, size=2).y) == 12
    with pytest.raises(ValueError, match=r"bad\.csv, line 21, column 2: 'oops.*' is not a number"):
        io.read_rows(path, rank=1, size=2)
    text = tmp_path / "bad.txt"
    text.write_bytes(b"a\tone\nb\ttwo\n\xff\tthree\nno label here\n")
    assert io.read_rows(text, rank=0, size=2).y.tolist() == ["a", "b"]
    with pytest.raises(ValueError, match=r"bad\.txt, line 3: not valid UTF-8"):
        io.read_rows(text, rank=1, size=2)


def write_bytes(tmp_path, name: str, content: bytes) -> str:
    path = tmp_path / name
    path.write_bytes(content)
    return str(path)


CSV_ERRORS = {
    "ragged": (b"1,2,3\n4,5\n", r"line 2: 2 values, expected 3"),
    "non-numeric": (b"x,y\n1,2\n3,abc\n", r"line 3, column 2 \('y'\): 'abc' is not a number"),
    "empty value": (b"1,2\n3,\n", r"line 2, column 2: '' is not a number"),
    "blank line": (b"1,2\n\n3,4\n", r"line 2: the line is empty"),
    "empty file": (b"", r"the file is empty"),
    "header only": (b"a,b\n", r"header line but no data rows"),
    "typo on line 1": (b"1,x\n1,2\n", r"line 1, column 2: 'x' is not a number \(a header line"),
}


@pytest.mark.parametrize("case", list(CSV_ERRORS))
def test_csv_errors_name_the_file_the_line_and_the_problem(tmp_path, case):
    content, message = CSV_ERRORS[case]
    path = write_bytes(tmp_path, "bad.csv", content)
    with pytest.raises(ValueError, match=r"bad\.csv\b.*" + message):
        io.read_rows(path)


def test_label_column_errors(tmp_path):
    csv = write(tmp_path, "csv", N_ROWS)
    named = write(tmp_path, "csv-header", N_ROWS)
    npy = write(tmp_path, "npy", N_ROWS)
    parquet = write(tmp_path, "parquet", N_ROWS)
    with pytest.raises(ValueError, match=r"csv-header\.csv: no column named 'target' .*a, b, c, label"):
        io.read_rows(named, label_column="target")
    with pytest.raises(ValueError, match=r"no column named 'target'"):
        io.read_rows(parquet, label_column="target")
    with pytest.raises(ValueError, match=r"csv\.csv: label_column 'label' is a name, but the file "
                                         r"has no column names"):
        io.read_rows(csv, label_column="label")
    with pytest.raises(ValueError, match=r"data\.npy: a \.npy file has no column names"):
        io.read_rows(npy, label_column="label")
    with pytest.raises(ValueError, match=r"label_column 4 is out of range for a file with 4 columns"):
        io.read_rows(npy, label_column=4)
    with pytest.raises(ValueError, match=r"label_column=0 needs labels=True"):
        io.read_rows(npy, label_column=0, labels=False)


def test_text_errors(tmp_path):
    path = write_bytes(tmp_path, "t.txt", b"spam\tbuy now\nham\thello\nno tab here\n")
    with pytest.raises(ValueError, match=r"t\.txt, line 3: no TAB after a label; expected "
                                         r"'label<TAB>text', got 'no tab here'"):
        io.read_rows(path)
    path = write_bytes(tmp_path, "e.tsv", b"spam\tbuy now\n\tno label\n")
    with pytest.raises(ValueError, match=r"e\.tsv, line 2: an empty label"):
        io.read_rows(path)
    assert io.read_rows(path, labels=False).X == ["spam\tbuy now", "\tno label"]
    with pytest.raises(ValueError, match=r"t\.txt: the file is empty"):
        io.read_rows(write_bytes(tmp_path, "t.txt", b""))
    with pytest.raises(ValueError, match=r"label_column does not apply to text files"):
        io.read_rows(path, label_column=0)


def test_file_errors(tmp_path):
    with pytest.raises(ValueError, match=r"data\.json: unknown data file extension '\.json'"):
        io.read_rows(tmp_path / "data.json")
    with pytest.raises(FileNotFoundError, match=r"missing\.csv: no such file"):
        io.read_rows(tmp_path / "missing.csv")
    np.save(tmp_path / "one.npy", np.arange(5.0))
    with pytest.raises(ValueError, match=r"one\.npy: expected a 2-D array"):
        io.read_rows(tmp_path / "one.npy")
    np.save(tmp_path / "s.npy", np.array([["a", "b"]]))
    with pytest.raises(ValueError, match=r"s\.npy: expected a numeric array, got dtype <U1"):
        io.read_rows(tmp_path / "s.npy")
    np.save(tmp_path / "o.npy", np.array([[1, None]], dtype=object), allow_pickle=True)
    with pytest.raises(ValueError, match=r"o\.npy: not a readable \.npy file"):
        io.read_rows(tmp_path / "o.npy")
    np.save(tmp_path / "empty.npy", np.empty((0, 3)))
    with pytest.raises(ValueError, match=r"empty\.npy: the array is empty"):
        io.read_rows(tmp_path / "empty.npy")
    with pytest.raises(ValueError, match=r"junk\.parquet: not a readable Parquet file"):
        io.read_rows(write_bytes(tmp_path, "junk.parquet", b"not parquet at all"))
    with pytest.raises(ValueError, match=r"rank must be an int in \[0, 2\), got 2"):
        io.read_rows(tmp_path / "one.npy", rank=2, size=2)
    with pytest.raises(ValueError, match=r"size must be an int >= 1, got 0"):
        io.read_rows(tmp_path / "one.npy", size=0)


def test_parquet_errors(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = str(tmp_path / "p.parquet")
    pq.write_table(pa.table({"name": ["a", "b"], "y": [1.0, 2.0]}), path)
    with pytest.raises(ValueError, match=r"p\.parquet: column 'name' has type string; feature "
                                         "columns must be numeric"):
        io.read_rows(path)
    pq.write_table(pa.table({"x": [1.0, None, 3.0, 4.0], "y": [1.0, 2.0, 3.0, 4.0]}), path)
    assert io.read_rows(path, rank=1, size=2).y.tolist() == [3.0, 4.0]
    with pytest.raises(ValueError, match=r"p\.parquet, row 1: column 'x' has a missing value"):
        io.read_rows(path, rank=0, size=2)


def test_parquet_without_pyarrow_says_how_to_install_it(tmp_path, monkeypatch):
    path = write(tmp_path, "parquet", N_ROWS)
    monkeypatch.setitem(sys.modules, "pyarrow.parquet", None)
    with pytest.raises(ImportError, match=r'pip install "fastdp\[io\]"'):
        io.read_rows(path)


def test_parquet_through_a_filesystem_uri(tmp_path):
    """pyarrow's filesystem layer: a file:// URI here; s3:// and hdfs:// take the same path."""
    path = write(tmp_path, "parquet", N_ROWS)
    local = io.read_rows(path, rank=1, size=2)
    remote = io.read_rows("file://" + os.path.abspath(path), rank=1, size=2)
    np.testing.assert_array_equal(remote.X, local.X)
    np.testing.assert_array_equal(remote.y, local.y)
    assert remote.rows == local.rows
    with pytest.raises(ValueError, match="only Parquet files are read through a URI"):
        io.read_rows("s3://bucket/data.csv")
    with pytest.raises(ValueError, match="not a readable Parquet file"):
        io.read_rows("file://" + os.path.abspath(str(tmp_path / "missing.parquet")))


@pytest.mark.parametrize("size", [1, 2, 3, 5])
def test_balanced_text_partition_splits_bytes_not_lines(tmp_path, size):
    rng = np.random.default_rng(size)
    docs = [f"c{i % 2}\t" + "w " * int(rng.pareto(1.5) * 20 + 1) for i in range(400)]
    path = tmp_path / "skewed.txt"
    path.write_text("".join(d + "\n" for d in docs))
    shards = [io.read_rows(path, rank=r, size=size, partition="balanced") for r in range(size)]
    assert [s.rows.start for s in shards] == [0] + [s.rows.stop for s in shards[:-1]]
    assert shards[-1].rows.stop == len(docs)
    assert sum((s.X for s in shards), []) == [d.split("\t", 1)[1] for d in docs]
    costs = [sum(len(docs[i]) + 1 for i in s.rows) for s in shards]
    longest = max(len(d) + 1 for d in docs)
    assert max(costs) <= sum(costs) / size + longest  # equal bytes, up to one line
    contiguous = [io.read_rows(path, rank=r, size=size) for r in range(size)]
    assert [len(s.rows) for s in contiguous] == [len(r) for r in
                                                 [contiguous_range(400, size, k) for k in range(size)]]


@pytest.mark.parametrize("fmt", ["csv-header", "text"])
def test_a_rank_reads_the_bytes_of_its_rows_only(tmp_path, monkeypatch, fmt):
    monkeypatch.setattr(line_index, "CHUNK_BYTES", 64)
    n_rows = 300
    path = write(tmp_path, fmt, n_rows)
    content = open(path, "rb").read().split(b"\n")
    header = fmt == "csv-header"
    for rank in range(3):
        source = io.open_source(path)
        before = source.index.bytes_read  # the header line (CSV)
        rows = io.rank_rows(source, rank, 3)
        shard = io.read_shard(source, rows)
        own = sum(len(line) + 1 for line in content[header + rows.start:header + rows.stop])
        assert own <= source.index.bytes_read - before <= own + 2 * 64
        assert len(shard.y) == len(rows)


def test_csv_is_parsed_in_blocks_of_rows(tmp_path, monkeypatch):
    from fastdp.data import csv

    path = write(tmp_path, "csv-header", N_ROWS)
    whole = io.read_rows(path, rank=1, size=2)
    monkeypatch.setattr(csv, "CSV_BLOCK_ROWS", 4)
    blocks = io.read_rows(path, rank=1, size=2)
    np.testing.assert_array_equal(blocks.X, whole.X)
    np.testing.assert_array_equal(blocks.y, whole.y)
    lines = open(path).read().splitlines()
    lines[20] = lines[20].replace(",", ",NA", 1)
    (tmp_path / "na.csv").write_text("\n".join(lines) + "\n")
    with pytest.raises(ValueError, match=r"na\.csv, line 21, column 2 \('b'\): 'NA.*' is not a"):
        io.read_rows(tmp_path / "na.csv")
    lines[20] = "nan,1,2,3"
    (tmp_path / "nan.csv").write_text("\n".join(lines) + "\n")
    assert np.isnan(io.read_rows(tmp_path / "nan.csv").X[19, 0])  # "nan" is a number


def test_truncated_files_are_errors(tmp_path):
    npy = write(tmp_path, "npy", N_ROWS)
    content = open(npy, "rb").read()
    (tmp_path / "cut.npy").write_bytes(content[:-10])
    with pytest.raises(ValueError, match=r"cut\.npy: not a readable \.npy file"):
        io.read_rows(tmp_path / "cut.npy")
    parquet = write(tmp_path, "parquet", N_ROWS)
    content = open(parquet, "rb").read()
    (tmp_path / "cut.parquet").write_bytes(content[:len(content) // 2])
    with pytest.raises(ValueError, match=r"cut\.parquet: not a readable Parquet file"):
        io.read_rows(tmp_path / "cut.parquet")


def test_partition_errors(tmp_path):
    npy = write(tmp_path, "npy", N_ROWS)
    with pytest.raises(ValueError, match=r"partition must be one of \['contiguous', 'balanced'\]"):
        io.read_rows(npy, partition="random")
    source = io.open_source(npy)
    assert io.rank_rows(source, 1, 2, "balanced") == io.rank_rows(source, 1, 2) == range(12, 23)


def test_stream_chunks_cover_the_rows_and_follow_parquet_row_groups(tmp_path):
    npy = io.open_source(write(tmp_path, "npy", N_ROWS))
    assert io.stream_chunks(npy, 10) == [range(0, 10), range(10, 20), range(20, 23)]
    parquet = io.open_source(write(tmp_path, "parquet", N_ROWS))  # row groups of 5 rows
    assert io.stream_chunks(parquet, 7) == [range(0, 10), range(10, 20), range(20, 23)]
    assert io.stream_chunks(parquet, 3) == [range(a, min(a + 5, 23)) for a in range(0, 23, 5)]
    assert io.stream_chunks(parquet, 100) == [range(0, 23)]
    with pytest.raises(ValueError, match="chunk_rows must be an int >= 1, got 0"):
        io.stream_chunks(npy, 0)


def test_csv_fields_python_reads_as_numbers_are_numbers(tmp_path):
    (tmp_path / "odd.csv").write_bytes(b" inf,1_0\n2, -nan\n")
    X = io.read_rows(tmp_path / "odd.csv", labels=False).X
    assert X[0].tolist() == [np.inf, 10.0] and X[1, 0] == 2.0 and np.isnan(X[1, 1])
