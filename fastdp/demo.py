"""`fastdp demo`: the worked example, linear regression trained serially and data-parallel.

Started plainly, it fits the generated data set in this process, then launches
`mpiexec -n RANKS` from its own environment for the data-parallel fit, and compares. Started under
mpiexec, it uses the ranks it has: each rank generates only its own rows, and rank 0 also fits the
whole set serially for the comparison. It prints one table and exits 1 if the data-parallel theta
differs from the serial theta by more than 1e-10 relative.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass

import numpy as np

from . import kernels, partition, synthetic
from .comm import SerialComm, launched_by_mpi, world
from .train import FitResult, fit_gd

TOLERANCE = 1e-10


@dataclass
class DemoConfig:
    """Everything that defines a demo run; the command line's options."""

    rows: int = 200_000
    features: int = 10
    ranks: int = 2
    backend: str = "auto"
    seed: int = 0
    learning_rate: float = 0.5
    max_iter: int = 1000
    tol: float = 1e-10

    def argv(self) -> list[str]:
        """These settings as `fastdp demo` options."""
        return [f"--{key.replace('_', '-')}={value}" for key, value in vars(self).items()]


def _fit(cfg: DemoConfig, comm) -> FitResult:
    """Fit this rank's rows of the demo data (the kernel loaded first, so wall time is the fit's)."""
    rows = partition.contiguous_range(cfg.rows, comm.size, comm.rank)
    X, y = synthetic.linear_regression(cfg.rows, cfg.features, rows, seed=cfg.seed)
    kernels.loss_grad("squared", X[:0], y[:0], np.zeros(cfg.features), 0.0, backend=cfg.backend)
    return fit_gd(X, y, learning_rate=cfg.learning_rate, max_iter=cfg.max_iter, tol=cfg.tol,
                  backend=cfg.backend, comm=comm)


def _theta(result: FitResult) -> np.ndarray:
    return np.append(result.coef, result.intercept)


def _summary(result: FitResult) -> dict:
    return {"theta": _theta(result).tolist(), "n_iter": result.n_iter,
            "loss": float(result.loss_history[-1]), "ranks": result.n_ranks,
            "threads": result.threads, "seconds": result.seconds, "backend": result.backend}


def _least_squares(cfg: DemoConfig) -> np.ndarray:
    X, y = synthetic.linear_regression(cfg.rows, cfg.features, seed=cfg.seed)
    return np.linalg.lstsq(np.column_stack([X, np.ones(len(X))]), y, rcond=None)[0]


def _report(cfg: DemoConfig, serial: dict, parallel: dict) -> int:
    """Print the comparison table; return the exit code (0 if parallel equals serial)."""
    exact = _least_squares(cfg)
    theta_s = np.array(serial["theta"])
    header = (f"{'run':<14}{'ranks':>6}{'threads/rank':>14}{'backend':>9}{'iters':>7}"
              f"{'final loss':>14}{'max|θ-θ_serial|':>17}{'max|θ-θ_lstsq|':>16}{'wall s':>9}")
    print(f"fastdp demo: linear regression, {cfg.rows} rows x {cfg.features} features, "
          f"y = 2*x0 + 3 + noise, gradient descent (lr={cfg.learning_rate}, tol={cfg.tol})")
    print(header)
    print("-" * len(header))
    for name, run in (("serial", serial), ("data-parallel", parallel)):
        theta = np.array(run["theta"])
        threads = run["threads"].get(run["backend"], "blas")  # numpy: BLAS decides
        print(f"{name:<14}{run['ranks']:>6}{threads:>14}{run['backend']:>9}{run['n_iter']:>7}"
              f"{run['loss']:>14.8f}{np.abs(theta - theta_s).max():>17.3e}"
              f"{np.abs(theta - exact).max():>16.3e}{run['seconds']:>9.3f}")
    relative = np.abs(np.array(parallel["theta"]) - theta_s).max() / np.abs(theta_s).max()
    if relative > TOLERANCE:
        print(f"FAIL: data-parallel theta differs from serial theta by {relative:.3e} relative "
              f"(limit {TOLERANCE:g})")
        return 1
    print(f"OK: data-parallel theta equals serial theta to {relative:.1e} relative "
          f"(limit {TOLERANCE:g}); intercept {serial['theta'][-1]:.6f}, "
          f"coef[0] {serial['theta'][0]:.6f}")
    return 0


def find_mpiexec() -> str | None:
    """mpiexec beside this Python (the mpich wheel's), else the first one on PATH."""
    here = os.path.dirname(sys.executable)
    return shutil.which("mpiexec", path=here) or shutil.which("mpiexec")


def run(cfg: DemoConfig, report_path: str | None = None) -> int:
    """Run the demo; returns the process exit code. report_path: internal, for launched ranks."""
    if launched_by_mpi():
        comm = world()
        parallel = _summary(_fit(cfg, comm))
        if report_path is not None:
            if comm.rank == 0:
                with open(report_path, "w") as f:
                    json.dump(parallel, f)
            return 0
        code = np.zeros(1)
        if comm.rank == 0:
            code[0] = _report(cfg, _summary(_fit(cfg, SerialComm())), parallel)
        comm.barrier()  # the other ranks sleep while rank 0 fits serially
        return int(comm.bcast_(code)[0])

    serial = _summary(_fit(cfg, SerialComm()))
    mpiexec = find_mpiexec()
    if mpiexec is None:
        print("fastdp demo: mpiexec not found; install an MPI runtime with "
              "pip install 'fastdp[mpi]' (or put a system MPI on PATH)", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory(prefix="fastdp-demo-") as tmp:
        path = os.path.join(tmp, "report.json")
        cmd = [mpiexec, "-n", str(cfg.ranks), sys.executable, "-m", "fastdp", "demo",
               *cfg.argv(), f"--report={path}"]
        done = subprocess.run(cmd, timeout=600)
        if done.returncode != 0 or not os.path.exists(path):
            print(f"fastdp demo: the data-parallel run failed (exit {done.returncode}): "
                  f"{' '.join(cmd)}", file=sys.stderr)
            return 1
        with open(path) as f:
            parallel = json.load(f)
    return _report(cfg, serial, parallel)
