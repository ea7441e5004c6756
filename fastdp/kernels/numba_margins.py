"""Margins X @ coef + intercept of a dense shard, row by row, in Numba (prange over rows).

Each row's K margins are computed by the same loop whatever the row's position, the shard's size
or the thread count, so a row's margins are bitwise the same when the rows are split across ranks
differently: data-parallel prediction equals serial prediction bit for bit. (BLAS gemv/gemm give
no such promise: their blocking, and so their order of additions, depends on the shape.)
"""

from numba import njit, prange

from .numba_dense import FASTMATH


@njit(parallel=True, cache=True, fastmath=FASTMATH)
def dense_margins(X, coef_t, intercept, out):
    """Margins of every row of a dense shard.

    X:         (m, n) C-contiguous float32 or float64
    coef_t:    (K, n) C-contiguous float64, the coefficients transposed (K = 1 for a scalar margin)
    intercept: (K,) float64
    out:       (m, K) float64, OUT <- X @ coef_t.T + intercept
    """
    m, n = X.shape
    K = coef_t.shape[0]
    for i in prange(m):
        row = X[i]
        for k in range(K):
            w = coef_t[k]
            z = 0.0
            for j in range(n):
                z += row[j] * w[j]
            out[i, k] = z + intercept[k]
