# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True, initializedcheck=False
"""Fused loss-and-gradient sums over a CSR shard, threaded with OpenMP.

Design (the Numba twin, fastdp/kernels/numba_sparse.py, follows the same plan; dense_loss.pyx is
the dense form):
- The shard's rows are cut into blocks of `block_rows` rows. Block b zeroes out[b, :], uses it as
  its accumulator and writes nothing else, so threads never share an accumulator; the caller adds
  the blocks in block order, so the result does not depend on the number of threads. The
  accumulator is a dense row of n*K + K + 1 values, so CSR blocks are larger than dense ones
  (fastdp.kernels.sparse_block_rows picks block_rows from the shard's shape).
- Each row's non-zeros are read once for the margin and again, still in cache, for
  grad[indices] += d * data. Rows without non-zeros are allowed (their margin is the intercept).
- One kernel per loss family: csr_block_sums for the scalar-margin losses (the per-row loss chosen
  by an integer code, csrc/pointwise.pxd) and csr_softmax_block_sums for softmax over K classes.
- Wide shards (fastdp.kernels.tiles_pay_off) have two more, each reading a copy of X built once:
  column_csr_sums (scalar losses: margins by rows of X, gradient by columns of its column-major
  copy, fastdp/kernels/columns.py) and tiled_csr_softmax_sums (softmax: X in column tiles,
  fastdp/kernels/tiles.py).
- float32/float64 data and int32/int64 indices come from fused-type templates; sums are float64.
"""

from cython cimport floating
from cython.parallel cimport prange
from libc.stdint cimport int32_t, int64_t
from libc.stdlib cimport free, malloc

from pointwise cimport pointwise, pointwise_rows, softmax_row

cdef extern from "simd_gather.h" nogil:
    double fastdp_gather_dot_d32(const double* v, const int32_t* idx, Py_ssize_t count, const double* x)
    double fastdp_gather_dot_d64(const double* v, const int64_t* idx, Py_ssize_t count, const double* x)
    double fastdp_gather_dot_f32(const float* v, const int32_t* idx, Py_ssize_t count, const double* x)
    double fastdp_gather_dot_f64(const float* v, const int64_t* idx, Py_ssize_t count, const double* x)

cdef extern from "omp_compat.h" nogil:
    int FASTDP_HAVE_OPENMP
    void omp_set_num_threads(int n)

ctypedef fused index_t:
    int32_t
    int64_t

HAVE_OPENMP = bool(FASTDP_HAVE_OPENMP)


def set_num_threads(int n):
    """Set the number of OpenMP threads the kernels of this module use (n >= 1); the count is
    read back through fastdp.kernels._cython_dense.get_num_threads."""
    omp_set_num_threads(n)


cdef void _block_sums(int loss, const floating* data, const index_t* indices, const index_t* indptr,
                      const floating* y, const double* coef, double intercept, Py_ssize_t start,
                      Py_ssize_t stop, Py_ssize_t n, double* acc) noexcept nogil:
    """Rows start..stop of the CSR arrays and y (m,); acc (n + 2,) <- [grad_coef, grad_b, loss]."""
    cdef Py_ssize_t i, j, p, lo, hi
    cdef double z, d, loss_i
    for j in range(n + 2):
        acc[j] = 0.0
    for i in range(start, stop):
        lo = indptr[i]
        hi = indptr[i + 1]
        z = intercept
        for p in range(lo, hi):
            z += data[p] * coef[indices[p]]
        loss_i = pointwise(loss, z, y[i], &d)
        if d != 0.0:  # hinge losses: rows past the margin add nothing
            for p in range(lo, hi):
                acc[indices[p]] += d * data[p]
        acc[n] += d
        acc[n + 1] += loss_i


def csr_block_sums(int loss, const floating[::1] data, const index_t[::1] indices,
                   const index_t[::1] indptr, const floating[::1] y, const double[::1] coef,
                   double intercept, double[:, ::1] out, Py_ssize_t block_rows):
    """Per-block sums of the loss and its gradient over a CSR shard.

    loss:       integer code of a scalar-margin loss (fastdp.kernels.losses.LOSS_CODES)
    data:       (nnz,) float32 or float64, the non-zero values
    indices:    (nnz,) int32 or int64 column indices in 0..n-1
    indptr:     (m + 1,) same dtype as indices; row i is data[indptr[i]:indptr[i + 1]]
    y:          (m,) same dtype as data
    coef:       (n,) float64, n >= 1
    intercept:  float
    out:        (ceil(m / block_rows), n + 2) float64, OUT: row b <- [grad_coef (n), grad_intercept, loss]
                summed over rows b*block_rows .. min((b+1)*block_rows, m)
    block_rows: rows per block, >= 1
    """
    cdef Py_ssize_t m = indptr.shape[0] - 1, n = coef.shape[0], n_blocks = out.shape[0]
    cdef Py_ssize_t b, start
    if m == 0:
        return
    cdef const floating* dp = &data[0] if data.shape[0] else NULL
    cdef const index_t* ip = &indices[0] if indices.shape[0] else NULL
    cdef const index_t* pp = &indptr[0]
    cdef const floating* yp = &y[0]
    cdef const double* cp = &coef[0]
    cdef double* op = &out[0, 0]
    with nogil:
        for b in prange(n_blocks, schedule="static"):
            start = b * block_rows
            _block_sums(loss, dp, ip, pp, yp, cp, intercept, start, min(start + block_rows, m), n, op + b * (n + 2))


cdef int _softmax_block_sums(const floating* data, const index_t* indices, const index_t* indptr,
                             const Py_ssize_t* y, const double* coef, const double* intercept,
                             Py_ssize_t start, Py_ssize_t stop, Py_ssize_t n, Py_ssize_t K,
                             double* acc) noexcept nogil:
    """Rows start..stop of the CSR arrays, labels y (m,), coef (n, K) row-major, intercept (K,);
    acc (n*K + K + 1,) <- [grad_coef (n*K), grad_intercept (K), loss]. Returns 1 if the row's K
    margins could not be allocated (acc is then not written), else 0.
    """
    cdef Py_ssize_t i, j, k, p, lo, hi, nk = n * K
    cdef double v
    cdef const double* w
    cdef double* a
    cdef double* z = <double*> malloc(K * sizeof(double))
    if z == NULL:
        return 1
    for j in range(nk + K + 1):
        acc[j] = 0.0
    for i in range(start, stop):
        lo = indptr[i]
        hi = indptr[i + 1]
        for k in range(K):
            z[k] = intercept[k]
        for p in range(lo, hi):
            v = data[p]
            w = coef + indices[p] * K
            for k in range(K):
                z[k] += v * w[k]
        acc[nk + K] += softmax_row(K, z, y[i])
        for k in range(K):
            acc[nk + k] += z[k]
        for p in range(lo, hi):
            v = data[p]
            a = acc + indices[p] * K
            for k in range(K):
                a[k] += v * z[k]
    free(z)
    return 0


def csr_softmax_block_sums(const floating[::1] data, const index_t[::1] indices,
                           const index_t[::1] indptr, const Py_ssize_t[::1] y,
                           const double[:, ::1] coef, const double[::1] intercept,
                           double[:, ::1] out, Py_ssize_t block_rows):
    """Per-block sums of the softmax cross-entropy and its gradient over a CSR shard.

    data:       (nnz,) float32 or float64, the non-zero values
    indices:    (nnz,) int32 or int64 column indices in 0..n-1
    indptr:     (m + 1,) same dtype as indices; row i is data[indptr[i]:indptr[i + 1]]
    y:          (m,) intp labels in 0..K-1
    coef:       (n, K) C-contiguous float64
    intercept:  (K,) float64
    out:        (ceil(m / block_rows), n*K + K + 1) float64, OUT: row b <- [grad_coef (n*K,
                row-major), grad_intercept (K), loss] summed over rows b*block_rows .. min((b+1)*block_rows, m)
    block_rows: rows per block, >= 1
    """
    cdef Py_ssize_t m = indptr.shape[0] - 1, n = coef.shape[0], K = coef.shape[1]
    cdef Py_ssize_t n_blocks = out.shape[0], width = out.shape[1]
    cdef Py_ssize_t b, start
    cdef int failed = 0
    if m == 0:
        return
    cdef const floating* dp = &data[0] if data.shape[0] else NULL
    cdef const index_t* ip = &indices[0] if indices.shape[0] else NULL
    cdef const index_t* pp = &indptr[0]
    cdef const Py_ssize_t* yp = &y[0]
    cdef const double* cp = &coef[0, 0]
    cdef const double* bp = &intercept[0]
    cdef double* op = &out[0, 0]
    with nogil:
        for b in prange(n_blocks, schedule="static"):
            start = b * block_rows
            failed += _softmax_block_sums(dp, ip, pp, yp, cp, bp, start, min(start + block_rows, m), n, K, op + b * width)
    if failed:
        raise MemoryError(f"could not allocate {K} float64 margins in {failed} block(s)")


cdef void _tile_softmax_margins(const floating* data, const index_t* indices, const int64_t* seg,
                                Py_ssize_t T, Py_ssize_t m, const Py_ssize_t* y, const double* coef,
                                const double* intercept, Py_ssize_t K, Py_ssize_t c0, Py_ssize_t c1,
                                Py_ssize_t chunk_rows, double* work, Py_ssize_t width) noexcept nogil:
    """Chunks c0..c1 of a tiled CSR shard, K classes: work row c (width values) <- chunk c's rows'
    dloss/dz (chunk_rows, K), then the chunk's [grad_intercept (K), loss] sums. The chunks' rows
    tile after tile, so the tile's coef stays in cache while they all read it."""
    cdef Py_ssize_t t, c, r, r0, r1, p, k
    cdef const int64_t* first
    cdef const double* w
    cdef double* zr
    cdef double* sums
    cdef double v
    for c in range(c0, c1):
        for r in range(min(m, (c + 1) * chunk_rows) - c * chunk_rows):
            for k in range(K):
                work[c * width + r * K + k] = intercept[k]
    for t in range(T):
        first = seg + t * m
        for c in range(c0, c1):
            r0 = c * chunk_rows
            for r in range(r0, min(m, r0 + chunk_rows)):
                zr = work + c * width + (r - r0) * K
                for p in range(first[r], first[r + 1]):
                    v = data[p]
                    w = coef + indices[p] * K
                    for k in range(K):
                        zr[k] += v * w[k]
    for c in range(c0, c1):
        r0 = c * chunk_rows
        r1 = min(m, r0 + chunk_rows)
        sums = work + c * width + chunk_rows * K
        for k in range(K + 1):
            sums[k] = 0.0
        for r in range(r1 - r0):
            zr = work + c * width + r * K
            sums[K] += softmax_row(K, zr, y[r0 + r])
            for k in range(K):
                sums[k] += zr[k]


cdef void _tile_gradient(const floating* data, const index_t* indices, const int64_t* first,
                         Py_ssize_t lo, Py_ssize_t hi, Py_ssize_t m, Py_ssize_t K,
                         const double* work, Py_ssize_t width, Py_ssize_t chunk_rows,
                         double* grad) noexcept nogil:
    """One tile of a tiled CSR shard, K margins per row:
    grad[lo*K:hi*K] <- the sum over rows r, in row order, of the outer product of row r's segment
    with its K derivatives, read from work row r // chunk_rows at (r % chunk_rows) * K."""
    cdef Py_ssize_t j, c, r, r0, p, k
    cdef const double* d
    cdef double* g
    cdef double v
    for j in range(lo * K, hi * K):
        grad[j] = 0.0
    for c in range((m + chunk_rows - 1) // chunk_rows):
        r0 = c * chunk_rows
        for r in range(r0, min(m, r0 + chunk_rows)):
            d = work + c * width + (r - r0) * K
            for p in range(first[r], first[r + 1]):
                v = data[p]
                g = grad + indices[p] * K
                for k in range(K):
                    g[k] += v * d[k]


def tiled_csr_softmax_sums(const floating[::1] data, const index_t[::1] indices,
                           const int64_t[::1] seg, const int64_t[::1] bounds, const Py_ssize_t[::1] y,
                           const double[:, ::1] coef, const double[::1] intercept, double[::1] out,
                           double[:, ::1] work, Py_ssize_t chunk_rows, Py_ssize_t parts):
    """Sums of the softmax cross-entropy and its gradient over a column-tiled CSR shard (the twin of
    numba_sparse.tiled_csr_softmax_sums, whose docstring gives the plan).

    data:       (nnz,) float32 or float64, the non-zeros in tile-major order
    indices:    (nnz,) int32 or int64, their column indices in 0..n-1
    seg:        (T*m + 1,) int64; segment (t, r) is [seg[t*m + r], seg[t*m + r + 1])
    bounds:     (T + 1,) int64 column bounds of the tiles, 0 .. n
    y:          (m,) intp labels in 0..K-1
    coef:       (n, K) C-contiguous float64
    intercept:  (K,) float64
    out:        (n*K + K + 1,) float64, OUT <- [grad_coef (n*K, row-major), grad_intercept (K), loss]
    work:       (ceil(m / chunk_rows), chunk_rows*K + K + 1) float64 scratch: row c <- chunk c's
                rows' dloss/dz (chunk_rows, K), then the chunk's [grad_intercept (K), loss] sums
    chunk_rows: rows per chunk (the unit of the loss and intercept sums), >= 1
    parts:      the margin pass's units of work, runs of consecutive chunks, one per thread
                (capped at the number of chunks; the result does not depend on it)
    """
    cdef Py_ssize_t m = y.shape[0], n = coef.shape[0], K = coef.shape[1], T = bounds.shape[0] - 1
    cdef Py_ssize_t chunks = work.shape[0], width = work.shape[1], nk = n * K, tail = chunk_rows * K
    cdef Py_ssize_t c, t, k, part
    parts = max(1, min(parts, chunks))
    if (T < 1 or seg.shape[0] != T * m + 1 or width != tail + K + 1 or chunks * chunk_rows < m
            or out.shape[0] != nk + K + 1):
        raise ValueError(f"tiled CSR arrays do not match: {T} tiles, {m} rows, {K} classes, seg "
                         f"{seg.shape[0]}, work ({chunks}, {width}), chunk_rows {chunk_rows}")
    cdef const floating* dp = &data[0] if data.shape[0] else NULL
    cdef const index_t* ip = &indices[0] if indices.shape[0] else NULL
    cdef const int64_t* sp = &seg[0]
    cdef const int64_t* bp = &bounds[0]
    cdef const Py_ssize_t* yp = &y[0] if m else NULL
    cdef const double* cp = &coef[0, 0]
    cdef const double* bip = &intercept[0]
    cdef double* op = &out[0]
    cdef double* wp = &work[0, 0]
    with nogil:
        for part in prange(parts, schedule="static"):
            _tile_softmax_margins(dp, ip, sp, T, m, yp, cp, bip, K, part * chunks // parts,
                                  (part + 1) * chunks // parts, chunk_rows, wp, width)
        for t in prange(T, schedule="dynamic"):
            _tile_gradient(dp, ip, sp + t * m, bp[t], bp[t + 1], m, K, wp, width, chunk_rows, op)
    for k in range(K + 1):
        op[nk + k] = 0.0
    for c in range(chunks):
        for k in range(K + 1):
            op[nk + k] += wp[c * width + tail + k]


cdef inline double _gather_dot(const floating* v, const index_t* idx, Py_ssize_t count,
                               const double* x) noexcept nogil:
    """The sum over p < count of v[p] * x[idx[p]], in float64 (csrc/simd_gather.h)."""
    if floating is double and index_t is int32_t:
        return fastdp_gather_dot_d32(v, idx, count, x)
    elif floating is double:
        return fastdp_gather_dot_d64(v, idx, count, x)
    elif index_t is int32_t:
        return fastdp_gather_dot_f32(v, idx, count, x)
    else:
        return fastdp_gather_dot_f64(v, idx, count, x)


cdef void _column_gradient(const floating* data, const index_t* rows, const int64_t* colptr,
                           Py_ssize_t lo, Py_ssize_t hi, const double* d,
                           double* grad) noexcept nogil:
    """Columns lo..hi of a column-major CSR copy: grad[j] <- the sum over column j's non-zeros,
    in row order, of x_rj * d[r]."""
    cdef Py_ssize_t j
    for j in range(lo, hi):
        grad[j] = _gather_dot(data + colptr[j], rows + colptr[j], colptr[j + 1] - colptr[j], d)


cdef enum:
    GROUP_ROWS = 32  # rows per group of _chunk_margins (their margins, then their losses)


cdef void _chunk_margins(int loss, const floating* data, const index_t* indices, const index_t* indptr,
                         const floating* y, const double* coef, double intercept, Py_ssize_t r0,
                         Py_ssize_t r1, double* d, double* sums) noexcept nogil:
    """Rows r0..r1 of CSR X: d[r] <- row r's dloss/dz, sums (2,) <- the chunk's [grad_intercept,
    loss]. GROUP_ROWS rows at a time: their margins, then their losses and derivatives in one
    vectorized loop (pointwise_rows; a loss per row after its margin cost 4 ms of 36 on the
    benchmark's 2e5-row logistic case)."""
    cdef double z[GROUP_ROWS]
    cdef double group[2]
    cdef Py_ssize_t r, s, count
    sums[0] = 0.0
    sums[1] = 0.0
    s = r0
    while s < r1:
        count = min(<Py_ssize_t> GROUP_ROWS, r1 - s)
        for r in range(count):
            z[r] = intercept + _gather_dot(data + indptr[s + r], indices + indptr[s + r],
                                           indptr[s + r + 1] - indptr[s + r], coef)
        pointwise_rows(loss, z, y + s, count, d + s, group)
        sums[0] += group[0]
        sums[1] += group[1]
        s += count


def column_csr_sums(int loss, const floating[::1] data, const index_t[::1] indices,
                    const index_t[::1] indptr, const floating[::1] cdata, const index_t[::1] crows,
                    const int64_t[::1] colptr, const int64_t[::1] bounds, const floating[::1] y,
                    const double[::1] coef, double intercept, double[::1] out, double[::1] work,
                    Py_ssize_t chunk_rows):
    """Sums of a scalar-margin loss and its gradient over a CSR shard and its column-major copy
    (fastdp/kernels/columns.py; the twin of numba_sparse.column_csr_sums, whose docstring gives
    the plan). Row margins and column gradients are csrc/simd_gather.h's gathered dot products.

    loss:       integer code of a scalar-margin loss (fastdp.kernels.losses.LOSS_CODES)
    data:       (nnz,) float32 or float64, X's non-zeros (CSR)
    indices:    (nnz,) int32 or int64, their column indices in 0..n-1
    indptr:     (m + 1,) same dtype as indices
    cdata:      (nnz,) same dtype as data, the copy's non-zeros column by column
    crows:      (nnz,) same dtype as indices, their row indices
    colptr:     (n + 1,) int64; column j is cdata[colptr[j]:colptr[j + 1]]
    bounds:     (T + 1,) int64 column bounds of the copy's tiles, 0 .. n
    y:          (m,) same dtype as data
    coef:       (n,) float64
    intercept:  float
    out:        (n + 2,) float64, OUT <- [grad_coef (n), grad_intercept, loss]
    work:       (m + 2 * ceil(m / chunk_rows),) float64 scratch <- the rows' derivatives (m,), then
                per chunk its [grad_intercept, loss] sums
    chunk_rows: rows per chunk of the margin pass, >= 1
    """
    cdef Py_ssize_t m = y.shape[0], n = coef.shape[0], T = bounds.shape[0] - 1
    cdef Py_ssize_t chunks = (m + chunk_rows - 1) // chunk_rows if chunk_rows >= 1 else -1
    if (chunks < 0 or T < 1 or cdata.shape[0] != data.shape[0] or crows.shape[0] != data.shape[0]
            or indptr.shape[0] != m + 1 or colptr.shape[0] != n + 1 or out.shape[0] != n + 2
            or work.shape[0] != m + 2 * chunks):
        raise ValueError(f"column CSR arrays do not match: {m} rows, {n} features, nnz "
                         f"{data.shape[0]} and {cdata.shape[0]}, indptr {indptr.shape[0]}, colptr "
                         f"{colptr.shape[0]}, bounds {bounds.shape[0]}, out {out.shape[0]}, work "
                         f"{work.shape[0]}, chunk_rows {chunk_rows}")
    cdef Py_ssize_t c, t
    cdef const floating* dp = &data[0] if data.shape[0] else NULL
    cdef const index_t* ip = &indices[0] if indices.shape[0] else NULL
    cdef const index_t* pp = &indptr[0]
    cdef const floating* cdp = &cdata[0] if cdata.shape[0] else NULL
    cdef const index_t* crp = &crows[0] if crows.shape[0] else NULL
    cdef const int64_t* cpp = &colptr[0]
    cdef const int64_t* bp = &bounds[0]
    cdef const floating* yp = &y[0] if m else NULL
    cdef const double* cp = &coef[0]
    cdef double* op = &out[0]
    cdef double* wp = &work[0] if work.shape[0] else NULL
    with nogil:
        for c in prange(chunks, schedule="dynamic"):
            _chunk_margins(loss, dp, ip, pp, yp, cp, intercept, c * chunk_rows,
                           min(m, (c + 1) * chunk_rows), wp, wp + m + 2 * c)
        for t in prange(T, schedule="dynamic"):
            _column_gradient(cdp, crp, cpp, bp[t], bp[t + 1], wp, op)
    op[n] = 0.0
    op[n + 1] = 0.0
    for c in range(chunks):
        op[n] += wp[m + 2 * c]
        op[n + 1] += wp[m + 2 * c + 1]
