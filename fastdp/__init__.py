"""fastdp: data-parallel training and inference on CPU clusters.

The rows of a data set are split across MPI ranks; each rank computes its shard's loss and gradient
sums with threaded Numba or Cython kernels in one fused pass; one Allreduce of a flat buffer sums
them; every rank takes the same step. The same code runs as one process or under mpiexec.
"""

from . import comm, kernels, partition
from .comm import world
from .infer import predict
from .kernels import loss_grad
from .model_io import load, save
from .train import FitResult, fit_gd

__version__ = "0.1.0"
__all__ = ["FitResult", "comm", "fit_gd", "kernels", "load", "loss_grad", "partition", "predict",
           "save", "world"]
