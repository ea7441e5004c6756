"""Loss-gradient kernels (fastdp.kernels.loss_grad_sums) and the machine's read bandwidth.

DenseLossGrad: squared, logistic and softmax (K = 10) on a dense 1,000,000 x 32 shard, Numba and
Cython backends, float64 and float32 X: time per call, GB/s of X read, rows/s, and the speed-up
over fastdp's NumPy two-pass reference timed in the same setup.
CsrLogistic: logistic loss on a hashed-text-like CSR shard (100,000 rows, 50..150 non-zeros per
row, 2**20 columns, int32 indices).
ReadBandwidth: a Numba parallel sum over a float64 array as large as the dense float64 X, the
roofline the dense kernels are read against (a kernel that streams X once cannot beat it).

Every setup first checks the kernel's result against the NumPy reference, so a wrong kernel fails
the benchmark instead of reporting a fast number.
"""

import numba
import numpy as np

from .common import (DENSE_FEATURES, DENSE_ROWS, RTOL, assert_matches, best_time, bytes_of_x,
                     dense_shard, kernel_call, logistic_csr_shard, reference)

REPEAT = 5        # timed calls of a compiled kernel per track_ measurement (best of)
REPEAT_NUMPY = 3  # timed calls of the NumPy reference per track_speedup_vs_numpy


class DenseLossGrad:
    params = (["squared", "logistic", "softmax"], ["numba", "cython"], ["float64", "float32"])
    param_names = ["loss", "backend", "dtype"]
    timeout = 180

    def setup(self, loss, backend, dtype):
        self.shard = dense_shard(loss, dtype)
        self.ref = reference(loss, self.shard)
        self.call = kernel_call(loss, self.shard, backend)
        assert_matches(self.call(), self.ref, RTOL[dtype])  # also compiles / warms up the kernel

    def time_loss_grad(self, loss, backend, dtype):
        self.call()

    def track_gbps(self, loss, backend, dtype):
        return bytes_of_x(self.shard[0]) / best_time(self.call, REPEAT) / 1e9
    track_gbps.unit = "GB/s"

    def track_rows_per_s(self, loss, backend, dtype):
        return DENSE_ROWS / best_time(self.call, REPEAT)
    track_rows_per_s.unit = "rows/s"

    def track_speedup_vs_numpy(self, loss, backend, dtype):
        numpy_s = best_time(kernel_call(loss, self.shard, "numpy"), REPEAT_NUMPY)
        return numpy_s / best_time(self.call, REPEAT)
    track_speedup_vs_numpy.unit = "x NumPy"


class CsrLogistic:
    params = (["numba", "cython"],)
    param_names = ["backend"]
    timeout = 180

    def setup(self, backend):
        self.shard = logistic_csr_shard()
        self.ref = reference("logistic", self.shard)
        self.call = kernel_call("logistic", self.shard, backend)
        assert_matches(self.call(), self.ref, RTOL["float64"])

    def time_loss_grad(self, backend):
        self.call()

    def track_gbps(self, backend):
        return bytes_of_x(self.shard[0]) / best_time(self.call, REPEAT) / 1e9
    track_gbps.unit = "GB/s"

    def track_speedup_vs_numpy(self, backend):
        scipy_s = best_time(kernel_call("logistic", self.shard, "numpy"), REPEAT_NUMPY)
        return scipy_s / best_time(self.call, REPEAT)
    track_speedup_vs_numpy.unit = "x SciPy"


@numba.njit(parallel=True, fastmath=True)
def _parallel_sum(a):
    s = 0.0
    for i in numba.prange(a.size):
        s += a[i]
    return s


class ReadBandwidth:
    """Roofline probe: GB/s of one threaded pass that only reads (a sum), same bytes as dense X."""

    timeout = 120

    def setup(self):
        self.a = np.random.default_rng(0).random(DENSE_ROWS * DENSE_FEATURES)
        np.testing.assert_allclose(_parallel_sum(self.a), np.sum(self.a), rtol=1e-9)  # compiles it

    def track_read_gbps(self):
        return self.a.nbytes / best_time(lambda: _parallel_sum(self.a), 10) / 1e9
    track_read_gbps.unit = "GB/s"
