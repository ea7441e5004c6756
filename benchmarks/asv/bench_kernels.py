"""Loss-gradient kernels (fastdp.kernels.loss_grad_sums) and the machine's read bandwidth.

DenseLossGrad: squared, logistic and softmax (K = 10) on a dense 1,000,000 x 32 shard, Numba and
Cython backends, float64 and float32 X: time per call, GB/s of X read, rows/s, and the speed-up
over the NumPy two-pass reference timed in the same setup.
DenseWidths: the logistic loss on 256 MiB of dense float64 or float32 X, 4, 32 or 300 features,
Numba and Cython: GB/s of X read. The kernels' row groups depend on a row's bytes
(fastdp.kernels.numba_dense.group_rows), so a change that helps one width can hurt another.
CsrLogistic: logistic loss on a hashed-text-like CSR shard (100,000 rows, 50..150 non-zeros per
row, 2**20 columns, int32 indices): time, GB/s, speed-up over SciPy.
WideCsrCopy: the copy of wide CSR that full-batch fits build once (fastdp.kernels.tile_csr): the
column-major copy of the logistic case (200,000 x 2**20) and the column tiles of the softmax
case (200,000 x 2**18, K = 10) of fastdp.bench.cases.
ReadBandwidth: a Numba parallel sum over 256 MB (fastdp.bench.bandwidth), the roofline the dense
kernels are read against.

Cases, contenders and checks come from fastdp.bench.cases: every setup first checks the kernel's
result against the reference.
"""

import numpy as np

from fastdp import kernels
from fastdp.bench.bandwidth import read_bandwidth
from fastdp.bench.cases import CASES, CLASSES, bytes_of_x

from .common import Case, best_time, checked_kernel, make_kernel, make_shard

REPEAT = 5        # timed calls of a compiled kernel per track_ measurement (best of)
REPEAT_NUMPY = 3  # timed calls of the reference per track_speedup_vs_numpy
DTYPES = {"float64": np.float64, "float32": np.float32}


class DenseLossGrad:
    """X: 1,000,000 x 32, float64 (256 MB) or float32 (128 MB)."""

    params = (["squared", "logistic", "softmax"], ["numba", "cython"], ["float64", "float32"])
    param_names = ["loss", "backend", "dtype"]
    timeout = 180

    def setup(self, loss, backend, dtype):
        self.case = Case(loss, "dense", 1_000_000, 32, DTYPES[dtype])
        self.shard, self.call = checked_kernel(self.case, backend)

    def time_loss_grad(self, loss, backend, dtype):
        self.call()

    def track_gbps(self, loss, backend, dtype):
        return bytes_of_x(self.shard.X) / best_time(self.call, REPEAT) / 1e9
    track_gbps.unit = "GB/s"

    def track_rows_per_s(self, loss, backend, dtype):
        return self.case.rows / best_time(self.call, REPEAT)
    track_rows_per_s.unit = "rows/s"

    def track_speedup_vs_numpy(self, loss, backend, dtype):
        numpy_s = best_time(make_kernel(self.case, "numpy", self.shard), REPEAT_NUMPY)
        return numpy_s / best_time(self.call, REPEAT)
    track_speedup_vs_numpy.unit = "x NumPy"


class DenseWidths:
    """X: 256 MiB of float64 (the same rows in float32) at 4, 32 or 300 features."""

    params = ([4, 32, 300], ["numba", "cython"], ["float64", "float32"])
    param_names = ["features", "backend", "dtype"]
    timeout = 180

    def setup(self, features, backend, dtype):
        rows = (256 << 20) // (8 * features)
        self.case = Case("logistic", "dense", rows, features, DTYPES[dtype])
        self.shard, self.call = checked_kernel(self.case, backend)

    def track_gbps(self, features, backend, dtype):
        return bytes_of_x(self.shard.X) / best_time(self.call, REPEAT) / 1e9
    track_gbps.unit = "GB/s"


class CsrLogistic:
    params = (["numba", "cython"],)
    param_names = ["backend"]
    timeout = 180

    def setup(self, backend):
        self.case = Case("logistic", "csr", 100_000, 2**20)
        self.shard, self.call = checked_kernel(self.case, backend)

    def time_loss_grad(self, backend):
        self.call()

    def track_gbps(self, backend):
        return bytes_of_x(self.shard.X) / best_time(self.call, REPEAT) / 1e9
    track_gbps.unit = "GB/s"

    def track_speedup_vs_scipy(self, backend):
        scipy_s = best_time(make_kernel(self.case, "numpy", self.shard), REPEAT_NUMPY)
        return scipy_s / best_time(self.call, REPEAT)
    track_speedup_vs_scipy.unit = "x SciPy"


class WideCsrCopy:
    params = (["logistic-csr-2e5x2^20", "softmax10-csr-2e5x2^18"],)
    param_names = ["case"]
    timeout = 300

    def setup(self, case):
        self.X = make_shard(CASES[case]).X
        self.K = CLASSES if CASES[case].loss == "softmax" else 1
        kernels.tile_csr(self.X, n_outputs=self.K)  # compiled before the timing

    def time_tile_csr(self, case):
        kernels.tile_csr(self.X, n_outputs=self.K)


class ReadBandwidth:
    """Roofline probe: GB/s of one threaded pass that only reads (a sum) over 256 MB."""

    timeout = 120

    def track_read_gbps(self):
        return read_bandwidth(256 << 20)
    track_read_gbps.unit = "GB/s"
