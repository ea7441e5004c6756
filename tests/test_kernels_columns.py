"""The column-major CSR copy (fastdp/kernels/columns.py) and the scalar-loss kernels that read it
with X's rows: the layout holds each column's non-zeros in row order, the sums equal the NumPy
reference for every scalar loss, dtype and index dtype, with many tiles and chunks, unsorted rows
and empty shards, and do not depend on the threads."""

import numpy as np
import pytest
import scipy.sparse as sp

from fastdp import kernels
from fastdp.kernels import _cython_sparse, columns, tiles
from test_kernels_tiles import COMPILED, problem, reference, wide_csr, with_threads

SCALAR_LOSSES = ["squared", "logistic", "hinge", "squared_hinge"]


def small_columns(X, chunk_rows: int, tile_cols: int) -> kernels.ColumnCSR:
    return columns.column_csr(X.data, X.indices, X.indptr, X.shape[1], chunk_rows, tile_cols)


@pytest.mark.parametrize("unsorted", [False, True])
@pytest.mark.parametrize("index_dtype", [np.int32, np.int64])
def test_layout_holds_each_columns_entries_in_row_order(index_dtype, unsorted):
    X = wide_csr(53, 40, index_dtype=index_dtype, unsorted=unsorted)
    c = small_columns(X, chunk_rows=10, tile_cols=7)
    C = sp.csc_array(X.toarray())  # each column's rows ascending
    assert c.colptr.dtype == np.int64 and c.colptr.tolist() == C.indptr.tolist()
    assert c.rows.dtype == index_dtype and c.data.dtype == X.data.dtype
    assert np.array_equal(c.rows, C.indices) and np.array_equal(c.data, C.data)
    assert c.bounds.tolist() == tiles.tile_bounds(X.indices, 40, 7).tolist()
    assert c.chunk_rows == 10 and c.n_chunks == 6 and c.work.shape == (53 + 2 * 6,)


@pytest.mark.parametrize("bucket_entries", [1, 7, 300, 1 << 16])
@pytest.mark.parametrize("threads", [1, 2])
def test_the_bucketed_copy_is_the_same_for_any_buckets_and_threads(monkeypatch, bucket_entries,
                                                                   threads):
    """The copy is built in buckets of columns (about BUCKET_ENTRIES non-zeros each: from one
    column per bucket to one bucket for all), the rows cut into one part per thread: each
    column's entries in row order whatever the cut, unsorted rows and a last bucket cut short
    (101 columns) included."""
    X = wide_csr(1003, 101, index_dtype=np.int64, unsorted=True, seed=2)
    monkeypatch.setattr(columns, "BUCKET_ENTRIES", bucket_entries)
    c = with_threads(threads, lambda: small_columns(X, chunk_rows=100, tile_cols=9))
    X.sort_indices()
    C = sp.csc_array(X)
    assert c.colptr.tolist() == C.indptr.tolist()
    assert np.array_equal(c.rows, C.indices) and np.array_equal(c.data, C.data)
    assert c.bounds.tolist() == tiles.tile_bounds(X.indices, 101, 9).tolist()


@pytest.mark.parametrize("index_dtype", [np.int32, np.int64])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("loss", SCALAR_LOSSES)
@pytest.mark.parametrize("backend", COMPILED)
def test_column_sums_match_the_reference(backend, loss, dtype, index_dtype):
    """Many tiles (width 9 of 100 columns), many chunks (the last one partial), groups of rows
    cut by the chunks' ends (chunk 100 is not a multiple of 32), empty rows."""
    X = wide_csr(1003, 100, dtype, index_dtype)
    y, coef, b = problem(loss, 1003, 100, dtype)
    c = small_columns(X, chunk_rows=100, tile_cols=9)
    assert c.n_tiles == 12 and c.n_chunks == 11
    got = kernels.loss_grad_sums(loss, X, y, coef, b, np.full(102, np.nan), backend=backend, tiles=c)
    ref = reference(loss, X, y, coef, b)
    tol = 1e-12 if dtype == np.float64 else 1e-5
    np.testing.assert_allclose(got, ref, rtol=0, atol=tol * max(1.0, np.abs(ref).max()))


@pytest.mark.parametrize("backend", COMPILED)
def test_column_sums_of_unsorted_int64_rows_and_of_an_empty_shard(backend):
    X = wide_csr(300, 64, index_dtype=np.int64, unsorted=True)
    y, coef, b = problem("logistic", 300, 64)
    c = small_columns(X, chunk_rows=50, tile_cols=16)
    got = kernels.loss_grad_sums("logistic", X, y, coef, b, np.empty(66), backend=backend, tiles=c,
                                 validate=False)  # validation would refuse the unsorted rows
    X.sort_indices()
    ref = reference("logistic", X, y, coef, b)
    np.testing.assert_allclose(got, ref, rtol=0, atol=1e-12 * np.abs(ref).max())
    E = sp.csr_array((0, 64))
    e = kernels.loss_grad_sums("squared", E, np.empty(0), coef, b, np.full(66, np.nan),
                               backend=backend, tiles=kernels.tile_csr(E))
    assert np.array_equal(e, np.zeros(66))


@pytest.mark.parametrize("backend", COMPILED)
def test_column_sums_do_not_depend_on_the_thread_count(backend):
    X = wide_csr(20_000, 500, seed=3)
    y, coef, b = problem("logistic", 20_000, 500)
    c = small_columns(X, chunk_rows=700, tile_cols=40)

    def run():
        return kernels.loss_grad_sums("logistic", X, y, coef, b, np.empty(502), backend=backend,
                                      tiles=c).copy()

    assert np.array_equal(with_threads(1, run), with_threads(2, run))


@pytest.mark.parametrize("backend", COMPILED)
def test_column_sums_into_a_strided_out(backend):
    X = wide_csr(200, 30)
    y, coef, b = problem("hinge", 200, 30)
    out = np.full((32, 2), np.nan)
    kernels.loss_grad_sums("hinge", X, y, coef, b, out[:, 0], backend=backend,
                           tiles=small_columns(X, 64, 8))
    ref = reference("hinge", X, y, coef, b)
    np.testing.assert_allclose(out[:, 0], ref, rtol=0, atol=1e-12 * np.abs(ref).max())
    assert np.isnan(out[:, 1]).all()


def test_cython_kernel_refuses_mismatched_arrays():
    X = wide_csr(40, 20)
    y, coef, b = problem("squared", 40, 20)
    c = small_columns(X, 16, 5)

    def call(colptr=c.colptr, out=np.empty(22), work=c.work, chunk_rows=c.chunk_rows, indptr=X.indptr):
        _cython_sparse.column_csr_sums(0, X.data, X.indices, indptr, c.data, c.rows, colptr, c.bounds,
                                       y, coef, b, out, work, chunk_rows)

    call()  # the matching arrays pass
    for bad in ({"colptr": c.colptr[:-1]}, {"out": np.empty(21)}, {"work": c.work[:-1]},
                {"chunk_rows": 0}, {"chunk_rows": 8}, {"indptr": X.indptr[:-1]}):
        with pytest.raises(ValueError, match="column CSR arrays do not match: 40 rows, 20 features"):
            call(**bad)
