# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True, initializedcheck=False
"""Fused loss-and-gradient sums over a dense shard, threaded with OpenMP.

Design (the Numba twin, fastdp/kernels/numba_dense.py, follows the same plan):
- The shard's rows are cut into fixed blocks of `block_rows` rows. Block b writes its sums to
  out[b, :] and nothing else, so threads never share an accumulator; the caller adds the blocks in
  block order. Fixed blocks make the result independent of the number of threads.
- Each row is read once while it is in cache: margin z = x.coef + intercept, then the per-row loss
  and its derivative d = dloss/dz, then grad += d * x.
- One kernel per loss family: dense_block_sums for the scalar-margin losses, the per-row loss
  chosen by an integer code (fastdp.kernels.losses.LOSS_CODES, csrc/pointwise.pxd), and
  dense_softmax_block_sums for softmax cross-entropy over K classes (K dot products with the rows
  of coef.T, then grad.T[k] += d_k * x: the inner loops run over the n features).
- float32 and float64 inputs come from one fused-type template; sums are accumulated in float64.
"""

from cython cimport floating
from cython.parallel cimport prange
from libc.stdlib cimport free, malloc

from pointwise cimport pointwise, softmax_row

cdef extern from "omp_compat.h" nogil:
    int FASTDP_HAVE_OPENMP
    void omp_set_num_threads(int n)
    int omp_get_max_threads()

HAVE_OPENMP = bool(FASTDP_HAVE_OPENMP)


def set_num_threads(int n):
    """Set the number of OpenMP threads the kernels of this module use (n >= 1)."""
    omp_set_num_threads(n)


def get_num_threads():
    """Number of OpenMP threads the next parallel region will use (1 without OpenMP)."""
    return omp_get_max_threads()


cdef void _block_sums(int loss, const floating* X, const floating* y, const double* coef,
                      double intercept, Py_ssize_t start, Py_ssize_t stop, Py_ssize_t n,
                      double* acc) noexcept nogil:
    """Rows start..stop of X (m, n) row-major and y (m,); acc (n + 2,) <- [grad_coef, grad_b, loss].

    Rows go four at a time: four independent dot products, then one pass over acc adds all four
    rows' contributions, so acc is loaded and stored once per four rows. Leftover rows go singly.
    """
    cdef Py_ssize_t i, j
    cdef double z0, z1, z2, z3, d0, d1, d2, d3, l0, l1, l2, l3
    cdef const floating* r0
    cdef const floating* r1
    cdef const floating* r2
    cdef const floating* r3
    for j in range(n + 2):
        acc[j] = 0.0
    i = start
    while i + 4 <= stop:
        r0 = X + i * n
        r1 = r0 + n
        r2 = r1 + n
        r3 = r2 + n
        z0 = intercept
        z1 = intercept
        z2 = intercept
        z3 = intercept
        for j in range(n):
            z0 += r0[j] * coef[j]
            z1 += r1[j] * coef[j]
            z2 += r2[j] * coef[j]
            z3 += r3[j] * coef[j]
        l0 = pointwise(loss, z0, y[i], &d0)
        l1 = pointwise(loss, z1, y[i + 1], &d1)
        l2 = pointwise(loss, z2, y[i + 2], &d2)
        l3 = pointwise(loss, z3, y[i + 3], &d3)
        acc[n] += (d0 + d1) + (d2 + d3)
        acc[n + 1] += (l0 + l1) + (l2 + l3)
        for j in range(n):
            acc[j] += (d0 * r0[j] + d1 * r1[j]) + (d2 * r2[j] + d3 * r3[j])
        i += 4
    while i < stop:
        r0 = X + i * n
        z0 = intercept
        for j in range(n):
            z0 += r0[j] * coef[j]
        l0 = pointwise(loss, z0, y[i], &d0)
        acc[n] += d0
        acc[n + 1] += l0
        for j in range(n):
            acc[j] += d0 * r0[j]
        i += 1


def dense_block_sums(int loss, const floating[:, ::1] X, const floating[::1] y,
                     const double[::1] coef, double intercept, double[:, ::1] out,
                     Py_ssize_t block_rows):
    """Per-block sums of the loss and its gradient over a dense shard.

    loss:       integer code of a scalar-margin loss (fastdp.kernels.losses.LOSS_CODES)
    X:          (m, n) C-contiguous float32 or float64, n >= 1
    y:          (m,) same dtype as X
    coef:       (n,) float64
    intercept:  float
    out:        (ceil(m / block_rows), n + 2) float64, OUT: row b <- [grad_coef (n), grad_intercept, loss]
                summed over rows b*block_rows .. min((b+1)*block_rows, m)
    block_rows: rows per block, >= 1
    """
    cdef Py_ssize_t m = X.shape[0], n = X.shape[1], n_blocks = out.shape[0]
    cdef Py_ssize_t b, start
    if m == 0:
        return
    cdef const floating* Xp = &X[0, 0]
    cdef const floating* yp = &y[0]
    cdef const double* cp = &coef[0]
    cdef double* op = &out[0, 0]
    with nogil:
        for b in prange(n_blocks, schedule="static"):
            start = b * block_rows
            _block_sums(loss, Xp, yp, cp, intercept, start, min(start + block_rows, m), n, op + b * (n + 2))


cdef int _softmax_block_sums(const floating* X, const Py_ssize_t* y, const double* coef_t,
                             const double* intercept, Py_ssize_t start, Py_ssize_t stop,
                             Py_ssize_t n, Py_ssize_t K, double* acc) noexcept nogil:
    """Rows start..stop of X (m, n) row-major, labels y (m,), coef_t = coef.T (K, n) row-major,
    intercept (K,); acc (n*K + K + 1,) <- [grad_coef (n*K, row-major (n, K)), grad_intercept (K),
    loss]. Returns 1 if the block's (K, n) gradient and K margins could not be allocated (acc is
    then not written), else 0.

    A row's K margins are K dot products of x with the rows of coef_t; its gradient is added as
    grad_t[k] += d_k * x; both loops run over the n contiguous features, so they vectorize over n.
    """
    cdef Py_ssize_t i, j, k, nk = n * K
    cdef double zk, d
    cdef const floating* x
    cdef const double* w
    cdef double* g
    cdef double* grad_t = <double*> malloc((nk + K) * sizeof(double))
    cdef double* z
    if grad_t == NULL:
        return 1
    z = grad_t + nk
    for j in range(nk):
        grad_t[j] = 0.0
    for k in range(K + 1):
        acc[nk + k] = 0.0
    for i in range(start, stop):
        x = X + i * n
        for k in range(K):
            w = coef_t + k * n
            zk = intercept[k]
            for j in range(n):
                zk += x[j] * w[j]
            z[k] = zk
        acc[nk + K] += softmax_row(K, z, y[i])
        for k in range(K):
            d = z[k]
            g = grad_t + k * n
            acc[nk + k] += d
            for j in range(n):
                g[j] += d * x[j]
    for j in range(n):
        for k in range(K):
            acc[j * K + k] = grad_t[k * n + j]
    free(grad_t)
    return 0


def dense_softmax_block_sums(const floating[:, ::1] X, const Py_ssize_t[::1] y,
                             const double[:, ::1] coef, const double[::1] intercept,
                             double[:, ::1] out, Py_ssize_t block_rows):
    """Per-block sums of the softmax cross-entropy and its gradient over a dense shard.

    X:          (m, n) C-contiguous float32 or float64, n >= 1
    y:          (m,) intp labels in 0..K-1
    coef:       (n, K) C-contiguous float64
    intercept:  (K,) float64
    out:        (ceil(m / block_rows), n*K + K + 1) float64, OUT: row b <- [grad_coef (n*K,
                row-major), grad_intercept (K), loss] summed over rows b*block_rows .. min((b+1)*block_rows, m)
    block_rows: rows per block, >= 1
    """
    cdef Py_ssize_t m = X.shape[0], n = X.shape[1], K = coef.shape[1], n_blocks = out.shape[0]
    cdef Py_ssize_t b, j, k, start, width = out.shape[1]
    cdef int failed = 0
    if m == 0:
        return
    cdef double* coef_t = <double*> malloc(n * K * sizeof(double))
    if coef_t == NULL:
        raise MemoryError(f"could not allocate coef.T ({K}, {n})")
    for j in range(n):
        for k in range(K):
            coef_t[k * n + j] = coef[j, k]
    cdef const floating* Xp = &X[0, 0]
    cdef const Py_ssize_t* yp = &y[0]
    cdef const double* ip = &intercept[0]
    cdef double* op = &out[0, 0]
    with nogil:
        for b in prange(n_blocks, schedule="static"):
            start = b * block_rows
            failed += _softmax_block_sums(Xp, yp, coef_t, ip, start, min(start + block_rows, m), n, K, op + b * width)
    free(coef_t)
    if failed:
        raise MemoryError(f"could not allocate a ({K}, {n}) gradient in {failed} block(s)")
