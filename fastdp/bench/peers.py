"""`fastdp bench peers`: fastdp side by side with NumPy/SciPy, PyTorch and scikit-learn doing the
same work, measured in one run on this machine.

    fastdp bench peers [--rows 4000000] [--features 32] [--rounds 5] [--out bench-results]

Tasks (fastdp's contender is its best compiled kernel, numba or cython):
- "logistic gradient, dense": loss and gradient of the summed logistic loss over rows x features
  float64 rows: fastdp's fused kernel; NumPy's two passes; PyTorch autograd (forward, backward)
  on the same tensor (torch.from_numpy: no copy), all threads.
- "logistic gradient, CSR": the same over hashed-text CSR (--csr-rows rows, ~100 non-zeros per
  row, 2**20 columns): fastdp's kernel; SciPy's X.T @ (sigmoid(X @ w) - y).
- "GD step, 2 processes": one full-batch gradient step of logistic regression with the rows
  split over 2 processes, one thread each: `mpiexec -n 2` fastdp.train.fit against PyTorch
  DistributedDataParallel with the gloo backend (forward, backward with its gradient allreduce,
  SGD step); the mean step time after a warm-up.
- "SGD epoch, CSR": one epoch of mini-batch SGD (hinge loss, alpha 1e-4) on the hashed-text
  rows: fastdp.train.fit(solver="sgd", batch_size=256) against scikit-learn's SGDClassifier.
Each contender's result is checked against the reference where they compute the same numbers
(gradients within 1e-8 relative). The gradient tasks time their contenders in interleaved rounds
(fastdp.bench.timing.interleaved_best), so every contender sees the machine's fast and slow
moments alike, and the read-bandwidth probe of `fastdp bench kernels` (a parallel sum over
--bandwidth-bytes) in the same rounds. PyTorch is optional (pip install "fastdp[peers]", which
pins torch==2.13.0); without it its rows say so. Prints a table with each peer's time over
fastdp's ("fastdp x": how many times faster fastdp is) and, for the gradient tasks, the
"ceiling": the peer's time over one pass over X at the probe's best bandwidth, the most any
kernel that reads X could be faster on this machine in its present state. Writes peers.json and
peers.png.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import warnings
from collections.abc import Callable
from typing import Any

import numpy as np

from . import report
from .bandwidth import DEFAULT_BYTES, PROBE, Probe, bandwidth_probe
from .cases import Case, assert_matches, bytes_of_x, make_kernel, make_shard, reference
from .timing import best_time, interleaved_best

DDP_STEPS = 10


def _torch() -> Any:
    try:
        import torch
    except ImportError:
        return None
    return torch


def torch_logistic(X: np.ndarray, y: np.ndarray, coef: np.ndarray,
                   intercept: float) -> Callable[[], np.ndarray]:
    """PyTorch autograd of the summed logistic loss (labels -1/+1): a call returns
    [grad_coef, grad_intercept, loss] as fastdp's kernels do."""
    torch = _torch()
    Xt, yt = torch.from_numpy(X), torch.from_numpy(y)
    w = torch.tensor(coef, requires_grad=True)
    b = torch.tensor(float(intercept), dtype=torch.float64, requires_grad=True)

    def run() -> np.ndarray:
        w.grad = b.grad = None
        loss = torch.nn.functional.softplus(-yt * (Xt @ w + b)).sum()
        loss.backward()
        return np.concatenate([w.grad.numpy(), [b.grad.item(), loss.item()]])

    return run


def dense_gradient(rows: int, features: int, rounds: int, probe: Probe) -> list[dict[str, Any]]:
    """fastdp, NumPy and PyTorch on one dense logistic loss-and-gradient."""
    case = Case("logistic", "dense", rows, features)
    peers = {"numpy two-pass": "numpy", "pytorch autograd": "pytorch"}
    return _gradient_rows("logistic gradient, dense", case, peers, rounds, probe)


def csr_gradient(rows: int, rounds: int, probe: Probe) -> list[dict[str, Any]]:
    """fastdp and SciPy on one CSR logistic loss-and-gradient."""
    case = Case("logistic", "csr", rows, 2**20)
    return _gradient_rows(f"logistic gradient, CSR {rows} x 2^20", case,
                          {"scipy two-pass": "numpy"}, rounds, probe)


def _gradient_rows(task: str, case: Case, peers: dict[str, str], rounds: int,
                   probe: Probe) -> list[dict[str, Any]]:
    """fastdp's kernels (numba, cython) and the peers ({label: contender}; "pytorch" where torch
    is installed) on the case's shard, checked against the reference, then timed in interleaved
    rounds with the bandwidth probe: a row per peer, with its ceiling."""
    shard = make_shard(case)
    ref = reference(case, shard)
    contenders = {name: make_kernel(case, name, shard) for name in ("numba", "cython", "numpy")}
    if "pytorch" in peers.values() and _torch() is not None:
        contenders["pytorch"] = torch_logistic(*shard)
    for run in contenders.values():
        assert_matches(case, run(), ref)
    times = interleaved_best({**contenders, PROBE: probe[0]}, rounds)
    one_pass = bytes_of_x(shard.X) * times[PROBE] / probe[1]  # X once at the probe's bandwidth
    fastdp = min(times["numba"], times["cython"])
    return [_row(task, label, times.get(name), fastdp, one_pass) for label, name in peers.items()]


def sgd_epoch(rows: int, rounds: int) -> list[dict[str, Any]]:
    """One epoch of hinge-loss SGD on hashed text: fastdp against scikit-learn's SGDClassifier."""
    from sklearn.linear_model import SGDClassifier

    from ..train import fit

    shard = make_shard(Case("hinge", "csr", rows, 2**20))
    X = shard.X.tocsr() if hasattr(shard.X, "tocsr") else shard.X

    def fastdp() -> None:
        fit(X, shard.y, loss="hinge", solver="sgd", batch_size=256, max_iter=1, alpha=1e-4,
            learning_rate=0.1, tol=0)

    def sklearn() -> None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # one epoch does not converge
            SGDClassifier(alpha=1e-4, max_iter=1, tol=None, random_state=0).fit(X, shard.y)

    mine = best_time(fastdp, max(1, rounds // 2))
    return [_row(f"SGD epoch, CSR {rows} x 2^20", "scikit-learn SGDClassifier",
                 best_time(sklearn, max(1, rounds // 2)), mine)]


def _row(task: str, peer: str, peer_seconds: float | None, fastdp_seconds: float,
         one_pass_seconds: float | None = None) -> dict[str, Any]:
    """A table row; "ceiling" (None where not measured): peer_seconds over one_pass_seconds."""
    return {"task": task, "peer": peer, "peer_s": peer_seconds, "fastdp_s": fastdp_seconds,
            "fastdp_x": None if peer_seconds is None else peer_seconds / fastdp_seconds,
            "ceiling": (None if peer_seconds is None or one_pass_seconds is None
                        else peer_seconds / one_pass_seconds)}


FASTDP_STEP = """
import json, sys, time
import numpy as np
from fastdp import partition, train, world
rows, features, steps, out = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
comm = world()
mine = partition.contiguous_range(rows, comm.size, comm.rank)
rng = np.random.default_rng(comm.rank)
X = rng.standard_normal((len(mine), features))
y = np.where(X @ np.linspace(-1, 1, features) + rng.standard_normal(len(mine)) > 0, 1.0, -1.0)
stamps = []
train.fit(X, y, loss="logistic", solver="gd", max_iter=steps, tol=0,
          callback=lambda *a: stamps.append(time.perf_counter()))
if comm.rank == 0:
    json.dump(float(np.mean(np.diff(stamps)[1:])), open(out, "w"))
"""

DDP_STEP = """
import json, os, sys, time
import numpy as np
import torch
import torch.distributed as dist
rows, features, steps, out = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
rank, size = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
torch.set_num_threads(1)
dist.init_process_group("gloo", rank=rank, world_size=size)
rng = np.random.default_rng(rank)
n = rows // size + (rank < rows % size)
X = torch.from_numpy(rng.standard_normal((n, features)))
y = torch.from_numpy(np.where(X.numpy() @ np.linspace(-1, 1, features)
                              + rng.standard_normal(n) > 0, 1.0, 0.0))
model = torch.nn.parallel.DistributedDataParallel(torch.nn.Linear(features, 1, dtype=torch.float64))
optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
stamps = []
for _ in range(steps + 1):
    optimizer.zero_grad()
    loss = torch.nn.functional.binary_cross_entropy_with_logits(model(X).squeeze(1), y,
                                                                reduction="sum") / rows
    loss.backward()
    optimizer.step()
    stamps.append(time.perf_counter())
if rank == 0:
    json.dump(float(np.mean(np.diff(stamps)[1:])), open(out, "w"))
dist.destroy_process_group()
"""


def two_process_step(rows: int, features: int) -> list[dict[str, Any]]:
    """Mean full-batch step time on 2 processes of 1 thread: fastdp under mpiexec, PyTorch DDP."""
    from ..demo import find_mpiexec

    env = dict(os.environ, NUMBA_NUM_THREADS="1", OMP_NUM_THREADS="1")
    with tempfile.TemporaryDirectory() as tmp:
        script, out = os.path.join(tmp, "fastdp_step.py"), os.path.join(tmp, "fastdp.json")
        with open(script, "w") as f:
            f.write(FASTDP_STEP)
        subprocess.run([find_mpiexec(), "-n", "2", sys.executable, script, str(rows),
                        str(features), str(DDP_STEPS), out], env=env, check=True, timeout=600)
        fastdp = json.load(open(out))
        ddp = None
        if _torch() is not None:
            script, out = os.path.join(tmp, "ddp_step.py"), os.path.join(tmp, "ddp.json")
            with open(script, "w") as f:
                f.write(DDP_STEP)
            port = str(29500 + os.getpid() % 1000)
            procs = [subprocess.Popen([sys.executable, script, str(rows), str(features),
                                       str(DDP_STEPS), out],
                                      env=dict(env, RANK=str(r), WORLD_SIZE="2",
                                               MASTER_ADDR="127.0.0.1", MASTER_PORT=port))
                     for r in range(2)]
            if any(p.wait(timeout=600) for p in procs):
                raise RuntimeError("the PyTorch DDP processes failed")
            ddp = json.load(open(out))
    return [_row(f"GD step, 2 processes x 1 thread, {rows} x {features}",
                 "pytorch DDP (gloo)", ddp, fastdp)]


def format_table(rows: list[dict[str, Any]]) -> str:
    """The printed ratio table."""
    width = max(len(r["task"]) for r in rows)
    lines = [f"{'task':<{width}} {'peer':<27} {'peer ms':>9} {'fastdp ms':>10} {'fastdp x':>9}"
             f" {'ceiling':>8}"]
    for r in rows:
        peer = "not installed" if r["peer_s"] is None else f"{r['peer_s'] * 1e3:.1f}"
        ratio = "-" if r["fastdp_x"] is None else f"{r['fastdp_x']:.2f}"
        ceiling = "-" if r["ceiling"] is None else f"{r['ceiling']:.2f}"
        lines.append(f"{r['task']:<{width}} {r['peer']:<27} {peer:>9} "
                     f"{r['fastdp_s'] * 1e3:>10.1f} {ratio:>9} {ceiling:>8}")
    lines.append("ceiling: the peer's time over one pass over X at the read bandwidth of the "
                 "probe timed in the same rounds")
    return "\n".join(lines)


def plot(rows: list[dict[str, Any]], out: str) -> str:
    """Horizontal bars: how many times faster fastdp is than each peer (1 = as fast)."""
    plt = report.pyplot()
    shown = [r for r in rows if r["fastdp_x"] is not None]
    fig, ax = plt.subplots(figsize=(7, 0.5 + 0.5 * len(shown)))
    ax.barh([f"{r['task']}\nvs {r['peer']}" for r in shown], [r["fastdp_x"] for r in shown])
    ax.axvline(1.0, color="black", linestyle="--")
    ax.set_xlabel("peer time / fastdp time")
    ax.tick_params(axis="y", labelsize=7)
    return report.save_figure(fig, out, "peers")


def main(argv: list[str] | None = None) -> int:
    """Entry point of `fastdp bench peers`."""
    parser = argparse.ArgumentParser(prog="fastdp bench peers", description=report.summary(__doc__))
    parser.add_argument("--rows", type=int, default=4_000_000,
                        help="rows of the dense tasks (default 4000000)")
    parser.add_argument("--features", type=int, default=32,
                        help="features of the dense tasks (default 32)")
    parser.add_argument("--csr-rows", type=int, default=200_000,
                        help="rows of the hashed-text CSR tasks (default 200000)")
    parser.add_argument("--rounds", type=int, default=5,
                        help="timing rounds of each task; each contender keeps its best (default 5)")
    parser.add_argument("--skip", nargs="*", default=[], choices=["dense", "csr", "ddp", "sgd"],
                        help="tasks to leave out: the dense and CSR gradients, the 2-process "
                             "DDP step, the SGD epoch")
    parser.add_argument("--bandwidth-bytes", type=int, default=DEFAULT_BYTES,
                        help=f"size of the read-bandwidth probe's array (default {DEFAULT_BYTES})")
    parser.add_argument("--out", default=report.DEFAULT_OUT,
                        help=f"directory for peers.json and peers.png (default {report.DEFAULT_OUT})")
    args = parser.parse_args(argv)
    if (args.rows < 2 or args.features < 1 or args.rounds < 1 or args.csr_rows < 1
            or args.bandwidth_bytes < 8):
        parser.error("--rows must be >= 2, --features, --csr-rows and --rounds >= 1, "
                     "--bandwidth-bytes >= 8")
    rows: list[dict[str, Any]] = []
    probe = (bandwidth_probe(args.bandwidth_bytes)
             if "dense" not in args.skip or "csr" not in args.skip else None)
    if "dense" not in args.skip:
        rows += dense_gradient(args.rows, args.features, args.rounds, probe)
    if "csr" not in args.skip:
        rows += csr_gradient(args.csr_rows, args.rounds, probe)
    probe = None  # its array (1 GiB by default) back before the training tasks
    if "ddp" not in args.skip:
        rows += two_process_step(args.rows, args.features)
    if "sgd" not in args.skip:
        rows += sgd_epoch(args.csr_rows, args.rounds)
    print(report.describe())
    print(format_table(rows), flush=True)
    torch = _torch()
    report.write_json(args.out, "peers", {"rows": rows, "torch": None if torch is None
                                          else torch.__version__})
    plot(rows, args.out)
    return 0
