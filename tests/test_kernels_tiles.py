"""The column-tiled CSR copy (fastdp/kernels/tiles.py) and the softmax kernels that read it: the
layout holds every non-zero once in its (tile, row) segment, the sums equal the NumPy reference for
every dtype and index dtype, with many tiles and chunks, and do not depend on the threads; and
kernels.tile_csr, which builds this copy for softmax and columns.py's for the scalar losses
(tests/test_kernels_columns.py): its defaults, tiles_pay_off and every bad argument named."""

import re

import numba
import numpy as np
import pytest
import scipy.sparse as sp

from fastdp import kernels
from fastdp.kernels import _cython_sparse, columns, numba_sparse, tiles

COMPILED = ["numba", "cython"]
K = 4  # classes of the softmax problems


def wide_csr(m: int, n: int, dtype=np.float64, index_dtype=np.int32, seed: int = 0,
             unsorted: bool = False) -> sp.csr_array:
    """(m, n) CSR with 0..12 non-zeros per row (some rows empty) at random columns; unsorted: each
    row's entries reversed."""
    rng = np.random.default_rng(seed)
    lengths = rng.integers(0, 13, m)
    lengths[::7] = 0
    indptr = np.r_[0, np.cumsum(lengths)].astype(index_dtype)
    indices = np.concatenate([np.sort(rng.choice(n, k, replace=False)) for k in lengths]
                             + [np.empty(0, np.int64)]).astype(index_dtype)
    if unsorted:
        indices = np.concatenate([indices[a:b][::-1] for a, b in zip(indptr[:-1], indptr[1:])]
                                 + [np.empty(0, index_dtype)])
    data = rng.standard_normal(indices.size).astype(dtype)
    X = sp.csr_array((data, indices, indptr), shape=(m, n))
    X.indices, X.indptr = indices, indptr  # keep the index dtype
    return X


def problem(loss: str, m: int, n: int, dtype=np.float64, seed: int = 0):
    """(y, coef, intercept): softmax labels 0..K-1 with coef (n, K), else y real or -1/+1."""
    rng = np.random.default_rng(seed + 1)
    if loss == "softmax":
        return rng.integers(0, K, m), rng.standard_normal((n, K)), rng.standard_normal(K)
    y = (rng.standard_normal(m) if loss == "squared" else rng.choice([-1.0, 1.0], m)).astype(dtype)
    return y, rng.standard_normal(n), 0.25


def small_tiles(X, chunk_rows: int, tile_cols: int, n_outputs: int = K) -> kernels.TiledCSR:
    return tiles.tile_csr(X.data, X.indices, X.indptr, X.shape[1], chunk_rows, tile_cols, n_outputs)


def reference(loss, X, y, coef, b) -> np.ndarray:
    return kernels.loss_grad_sums(loss, X, y, coef, b, np.empty(kernels.out_size(loss, coef)),
                                  backend="numpy")


def with_threads(n: int, f):
    old_numba = numba.get_num_threads()
    old_cython = kernels.get_num_threads()["cython"]
    numba.set_num_threads(n)
    kernels.set_cython_threads(n)
    try:
        return f()
    finally:
        numba.set_num_threads(old_numba)
        kernels.set_cython_threads(old_cython)


def test_tile_bounds_cap_the_width_and_balance_the_non_zeros():
    n = 1000
    uniform = np.arange(n).repeat(3)
    b = tiles.tile_bounds(uniform, n, tile_cols=300)
    assert b.tolist() == [0, 300, 600, 900, 1000]  # the width decides: 900 entries <= 1.25 * 3000 / 4
    skewed = np.r_[np.zeros(5000, np.int64), np.arange(n).repeat(2)]  # column 0: 5000 of 7000
    b = tiles.tile_bounds(skewed, n, tile_cols=500)
    assert b[0] == 0 and b[-1] == n and np.all(np.diff(b) >= 1) and np.all(np.diff(b) <= 500)
    counts = np.add.reduceat(np.bincount(skewed, minlength=n), b[:-1])
    assert b[1] == 1  # the heavy column is a tile of its own
    assert np.all(counts[1:] <= 1.25 * skewed.size / 2) and counts.sum() == skewed.size
    assert len(b) == 4  # [0, 1), then two tiles of at most 4375 entries (<= 500 columns)
    assert tiles.tile_bounds(np.empty(0, np.int64), 10, tile_cols=4).tolist() == [0, 4, 8, 10]


@pytest.mark.parametrize("unsorted", [False, True])
@pytest.mark.parametrize("index_dtype", [np.int32, np.int64])
def test_layout_holds_each_rows_entries_of_each_tile_in_the_rows_order(index_dtype, unsorted):
    X = wide_csr(53, 40, index_dtype=index_dtype, unsorted=unsorted)
    t = small_tiles(X, chunk_rows=10, tile_cols=7)
    m, T = X.shape[0], t.n_tiles
    assert t.seg.shape == (T * m + 1,) and t.seg[0] == 0 and t.seg[-1] == X.nnz
    assert np.all(np.diff(t.seg) >= 0) and t.indices.dtype == index_dtype
    assert t.work.shape == (6, 10 * K + K + 1) and t.chunk_rows == 10
    for r in range(m):
        row_idx = X.indices[X.indptr[r]:X.indptr[r + 1]]
        row_data = X.data[X.indptr[r]:X.indptr[r + 1]]
        for k in range(T):
            lo, hi = t.seg[k * m + r], t.seg[k * m + r + 1]
            inside = (row_idx >= t.bounds[k]) & (row_idx < t.bounds[k + 1])
            assert np.array_equal(t.indices[lo:hi], row_idx[inside])
            assert np.array_equal(t.data[lo:hi], row_data[inside])


@pytest.mark.parametrize("unsorted", [False, True])
def test_the_copy_is_the_same_for_one_part_of_the_rows_or_one_per_thread(unsorted):
    """tile_csr's passes cut the rows into one part per thread; the copy does not depend on it."""
    X = wide_csr(1003, 100, index_dtype=np.int64, unsorted=unsorted, seed=6)
    one, two = (with_threads(k, lambda: small_tiles(X, chunk_rows=64, tile_cols=9)) for k in (1, 2))
    for name in ("data", "indices", "seg", "bounds"):
        assert np.array_equal(getattr(one, name), getattr(two, name)), name
    assert one.seg[-1] == X.nnz and np.all(np.diff(one.seg) >= 0)


@pytest.mark.parametrize("index_dtype", [np.int32, np.int64])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("backend", COMPILED)
def test_tiled_sums_match_the_reference(backend, dtype, index_dtype):
    """Many tiles (width 9 of 100 columns), many chunks (the last one partial), empty rows."""
    X = wide_csr(1003, 100, dtype, index_dtype)
    y, coef, b = problem("softmax", 1003, 100, dtype)
    t = small_tiles(X, chunk_rows=128, tile_cols=9)
    assert t.n_tiles == 12 and t.work.shape == (8, 128 * K + K + 1)
    got = kernels.loss_grad_sums("softmax", X, y, coef, b, np.full(coef.size + K + 1, np.nan),
                                 backend=backend, tiles=t)
    ref = reference("softmax", X, y, coef, b)
    tol = 1e-12 if dtype == np.float64 else 1e-5
    np.testing.assert_allclose(got, ref, rtol=0, atol=tol * max(1.0, np.abs(ref).max()))


@pytest.mark.parametrize("backend", COMPILED)
def test_tiled_sums_of_unsorted_int64_rows_and_of_an_empty_shard(backend):
    X = wide_csr(300, 64, index_dtype=np.int64, unsorted=True)
    y, coef, b = problem("softmax", 300, 64)
    t = small_tiles(X, chunk_rows=50, tile_cols=16)
    out = np.empty(coef.size + K + 1)
    got = kernels.loss_grad_sums("softmax", X, y, coef, b, out, backend=backend, tiles=t,
                                 validate=False)  # validation would refuse the unsorted rows
    X.sort_indices()
    ref = reference("softmax", X, y, coef, b)
    np.testing.assert_allclose(got, ref, rtol=0, atol=1e-12 * np.abs(ref).max())
    E = sp.csr_array((0, 64))
    e = kernels.loss_grad_sums("softmax", E, np.empty(0, np.intp), coef, b, np.full(out.size, np.nan),
                               backend=backend, tiles=kernels.tile_csr(E, n_outputs=K))
    assert np.array_equal(e, np.zeros(out.size))


@pytest.mark.parametrize("backend", COMPILED)
def test_tiled_sums_do_not_depend_on_the_thread_count(backend):
    X = wide_csr(20_000, 500, seed=3)
    y, coef, b = problem("softmax", 20_000, 500)
    t = small_tiles(X, chunk_rows=1500, tile_cols=40)

    def run():
        return kernels.loss_grad_sums("softmax", X, y, coef, b, np.empty(coef.size + K + 1),
                                      backend=backend, tiles=t).copy()

    assert np.array_equal(with_threads(1, run), with_threads(2, run))


@pytest.mark.parametrize("backend", COMPILED)
def test_tiled_sums_do_not_depend_on_the_margin_pass_parts(backend):
    """parts cuts the chunks into runs, one per thread; 0 and more parts than chunks are capped."""
    X = wide_csr(1003, 100, seed=4)
    y, coef, b = problem("softmax", 1003, 100)
    t = small_tiles(X, chunk_rows=64, tile_cols=9)  # 16 chunks, the last one partial
    kernel = {"numba": numba_sparse, "cython": _cython_sparse}[backend].tiled_csr_softmax_sums

    def run(parts):
        out = np.full(coef.size + K + 1, np.nan)
        kernel(t.data, t.indices, t.seg, t.bounds, y, coef, b, out, t.work, t.chunk_rows, parts)
        return out

    one = run(1)
    np.testing.assert_allclose(one, reference("softmax", X, y, coef, b), rtol=0,
                               atol=1e-12 * np.abs(one).max())
    for parts in (0, 2, 3, 5, 16, 40):
        assert np.array_equal(run(parts), one), parts


@pytest.mark.parametrize("backend", COMPILED)
def test_tiled_sums_into_a_strided_out(backend):
    X = wide_csr(200, 30)
    y, coef, b = problem("softmax", 200, 30)
    size = coef.size + K + 1
    out = np.full((size, 2), np.nan)
    kernels.loss_grad_sums("softmax", X, y, coef, b, out[:, 0], backend=backend,
                           tiles=small_tiles(X, 64, 8))
    ref = reference("softmax", X, y, coef, b)
    np.testing.assert_allclose(out[:, 0], ref, rtol=0, atol=1e-12 * np.abs(ref).max())
    assert np.isnan(out[:, 1]).all()


def test_tiles_pay_off_when_coef_outgrows_l2_and_the_copy_stays_small():
    def csr(n, per_row=2, m=10, index_dtype=np.int32):
        indptr = np.arange(0, per_row * m + 1, per_row)
        X = sp.csr_array((np.ones(per_row * m), np.arange(per_row * m) % n, indptr), shape=(m, n))
        X.indices, X.indptr = X.indices.astype(index_dtype), indptr.astype(index_dtype)
        return X

    n = kernels.TILE_MIN_FEATURES
    # scalar losses, column-major copy: whenever coef outgrows L2, however few the non-zeros
    assert kernels.tiles_pay_off("logistic", csr(n)) and kernels.tiles_pay_off("squared", csr(n, 1))
    assert kernels.tiles_pay_off("hinge", csr(2**20, 1, index_dtype=np.int64))
    assert not kernels.tiles_pay_off("logistic", csr(n - 1))
    # softmax, column tiles: 8 bytes per row and tile
    narrow = csr(n // 8)  # coef (n / 8, 8): 2**18 values, 2 tiles: 16 bytes a row, X 24
    assert kernels.tiles_pay_off("softmax", narrow, 8) and not kernels.tiles_pay_off("softmax", narrow, 7)
    assert not kernels.tiles_pay_off("softmax", csr(n // 8, per_row=1), 8)
    # 2**20 features, 8 classes: 64 tiles of 2**14 columns, 512 bytes of segments per row
    assert not kernels.tiles_pay_off("softmax", csr(2**20, per_row=42), 8)  # X: 504 bytes a row
    assert kernels.tiles_pay_off("softmax", csr(2**20, per_row=43), 8)  # X: 516
    assert not kernels.tiles_pay_off("lasso", csr(n))
    assert not kernels.tiles_pay_off("logistic", np.zeros((2, n)))
    assert not kernels.tiles_pay_off("logistic", sp.csc_array((10, n)))


def test_tile_csr_of_a_wide_shard_uses_the_default_tiles():
    X = wide_csr(5000, 2**19, seed=5)
    c = kernels.tile_csr(X)  # scalar losses: the column-major copy, tiles of 2**14 columns
    assert isinstance(c, kernels.ColumnCSR) and c.shape == X.shape and c.nnz == X.nnz
    assert c.n_tiles == 32 and np.all(np.diff(c.bounds) == 2**14) and c.n_outputs == 1
    assert c.chunk_rows == columns.CHUNK_ROWS and c.work.shape == (5000 + 2 * c.n_chunks,)
    s = kernels.tile_csr(X, n_outputs=10)  # softmax, 10 classes: tiles of 2**17 // 10 columns
    assert isinstance(s, kernels.TiledCSR) and s.shape == X.shape and s.nnz == X.nnz
    assert s.n_tiles == 41 and np.all(np.diff(s.bounds)[:-1] == 13107) and s.n_outputs == 10
    assert s.chunk_rows == tiles.CHUNK_ROWS and s.work.shape == (10, tiles.CHUNK_ROWS * 10 + 11)


def test_bad_tiles_are_named():
    X = wide_csr(50, 20)
    y, coef, b = problem("logistic", 50, 20)
    t = kernels.tile_csr(X)
    out = np.empty(22)

    def call(loss="logistic", X=X, y=y, coef=coef, tiles=t):
        kernels.loss_grad_sums(loss, X, y, coef, b, out, backend="numba", tiles=tiles)

    with pytest.raises(ValueError, match="tiles must be a ColumnCSR or TiledCSR from "
                                         "fastdp.kernels.tile_csr"):
        call(tiles=X)
    with pytest.raises(ValueError, match=re.escape("tiles were built for 1 margin(s) per row "
                                                   "(ColumnCSR) but the loss has 3: build them with "
                                                   "tile_csr(X, n_outputs=3)")):
        kernels.loss_grad_sums("softmax", X, np.zeros(50, np.int32), np.zeros((20, 3)), np.zeros(3),
                               np.empty(64), tiles=t)
    with pytest.raises(ValueError, match=re.escape("tiles were built for 3 margin(s) per row (TiledCSR)")):
        call(tiles=kernels.tile_csr(X, n_outputs=3))
    with pytest.raises(ValueError, match=re.escape("tiles were built for 1 margin(s) per row (TiledCSR) "
                                                   "but the loss has 1")):
        call(tiles=small_tiles(X, 16, 5, n_outputs=1))  # a TiledCSR serves softmax only
    other = wide_csr(50, 20, seed=9)
    with pytest.raises(ValueError, match=re.escape(f"tiles were built from another X: tiles (50, 20) "
                                                   f"with {X.nnz} non-zeros of float64, X (50, 20) "
                                                   f"with {other.nnz} non-zeros of float64")):
        call(X=other)
    with pytest.raises(ValueError, match=re.escape("tiles were built from another X: tiles (50, 20) "
                                                   f"with {X.nnz} non-zeros of float64, X (50, 20) (dense)")):
        call(X=X.toarray())
    with pytest.raises(ValueError, match="tiles were built from another X.*of float32"):
        call(X=X.astype(np.float32), y=y.astype(np.float32))
    wide_indices = X.copy()
    wide_indices.indices, wide_indices.indptr = X.indices.astype(np.int64), X.indptr.astype(np.int64)
    with pytest.raises(ValueError, match=re.escape("tiles were built from another X: their indices "
                                                   "are int32, X's int64")):
        call(X=wide_indices)  # the column-major copy's kernels read X's indices too
    with pytest.raises(ValueError, match="X must be a scipy.sparse CSR matrix to be tiled, got ndarray"):
        kernels.tile_csr(X.toarray())
    bad = X.copy()
    bad.indices[3] = 25
    with pytest.raises(ValueError, match="X \\(CSR\\) has column index 25 at row .* but only 20 features"):
        kernels.tile_csr(bad)
    with pytest.raises(ValueError, match="X has 0 features"):
        kernels.tile_csr(sp.csr_array((3, 0)))
    for bad in (0, -4, 2.5, "3", True):
        with pytest.raises(ValueError, match=re.escape(f"tile_cols must be an integer >= 1, got {bad!r}")):
            kernels.tile_csr(X, tile_cols=bad)
        with pytest.raises(ValueError, match=re.escape(f"n_outputs must be an integer >= 1, got {bad!r}")):
            kernels.tile_csr(X, n_outputs=bad)
    assert kernels.tile_csr(X, tile_cols=np.int64(5)).bounds.tolist() == [0, 5, 10, 15, 20]
    assert kernels.tile_csr(X, n_outputs=2, tile_cols=np.int64(5)).bounds.tolist() == [0, 5, 10, 15, 20]


def test_cython_kernel_refuses_mismatched_arrays():
    X = wide_csr(40, 20)
    labels, W, B = problem("softmax", 40, 20)
    s = small_tiles(X, 16, 5)
    t = small_tiles(X, 16, 5, n_outputs=1)
    with pytest.raises(ValueError, match="tiled CSR arrays do not match.*4 classes"):
        _cython_sparse.tiled_csr_softmax_sums(s.data, s.indices, s.seg, s.bounds, labels, W, B,
                                              np.empty(20 * K + K + 1), t.work, s.chunk_rows, 2)
    with pytest.raises(ValueError, match="tiled CSR arrays do not match"):
        _cython_sparse.tiled_csr_softmax_sums(s.data, s.indices, s.seg, s.bounds, labels, W, B,
                                              np.empty(20 * K), s.work, s.chunk_rows, 2)
    with pytest.raises(ValueError, match="tiled CSR arrays do not match"):
        _cython_sparse.tiled_csr_softmax_sums(s.data, s.indices, s.seg[:-1], s.bounds, labels, W, B,
                                              np.empty(20 * K + K + 1), s.work, s.chunk_rows, 2)
