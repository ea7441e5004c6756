"""Overlapping the Allreduce with the next batch's preparation (fit(..., overlap=True)):
mini-batch SGD step time with overlap False and True, measured in the same run, and the gain
the alpha-beta model predicts on a network.

    python benchmarks/bench_overlap.py [--case dense csr] [--epochs 1] [--rounds 5]
                                       [--progress default async] [--alpha 2e-6]
                                       [--bandwidth 10e9] [--nodes 64]

For each case, launches `mpiexec -n 2` and fits mini-batch SGD on the same shards with
overlap=False and overlap=True, interleaved over rounds (the order alternates from round to round,
so drift in the machine's load falls on both alike), after one warm-up fit of each:

- dense: squared loss, 400,000 x 256 float64, batch 8,192 (4,096 rows a rank a step gathered
  by kernels.take_rows, 8 MiB): a 259-value buffer (2 KiB) per Allreduce;
- csr: logistic loss, hashed text 200,000 x 2**18 with 50-150 (mean 100) non-zeros a row
  (fastdp.bench.cases.hashed_text), batch 1,024 (about 512 rows a rank a step, selected by
  scipy): a 262,147-value buffer (2 MiB) per Allreduce.

Printed per setting: the step time (rank 0, between consecutive callbacks, one per step: the
median over the steps of all rounds, and the smallest of the rounds' medians), the preparation
per step (the time in Batches.prepare: the batch's rows of the permutation and their gather; with
overlap it runs while the reduction is in flight) and compute/wait per step from the training
report (mean over the ranks; compute includes the preparation, wait is the time blocked in the
reduction). "gain" is the median step without overlap over the median step with it (> 1:
faster); "noise" is the largest over the smallest of one setting's per-round medians: a gain
closer to 1 than that is no measured difference. "Allreduce alone" is the mean time of blocking
Allreduces of the step's buffer back to back (the ranks in lockstep): the most the overlap could
hide on this machine is min(Allreduce, preparation); "Iallreduce + wait alone" is the same for
the non-blocking call overlap=True makes (MPI may run another algorithm for it).

Then the prediction for --nodes nodes on a network of latency --alpha and bandwidth --bandwidth
(T: fastdp.bench.alphabeta.allreduce_seconds of the buffer), each node with the part of the
batch a rank has here (the global batch grows with the nodes): step = work + T without overlap,
work + T - min(T, preparation) with it. A node's work per step is bracketed: at least the
compute measured here (preparation and kernels; the update left out), at most the fastest
round's median step without overlap minus the Allreduce alone (which still holds this machine's
waiting for the other rank); the two give the two ends of the predicted gain. It assumes the
reduction progresses while the batch is prepared (MPICH moves it forward at the request.test()
calls between gather pieces, or all along with asynchronous progress).

--progress async runs the same again with MPIR_CVAR_ASYNC_PROGRESS=1 (MPICH's progress thread
per rank; on a node with no spare core it takes one from the ranks).
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import textwrap

from fastdp.bench import alphabeta
from fastdp.demo import find_mpiexec

# loss, rows, features, batch
CASES = {"dense": ("squared", 400_000, 256, 8192), "csr": ("logistic", 200_000, 2**18, 1024)}
SETTINGS = (False, True)

SCRIPT = """
import json, sys, time
import numpy as np
from fastdp import partition, synthetic, train, world
from fastdp.bench.cases import hashed_text
case, loss, rows, features, batch, epochs, rounds, out = sys.argv[1:9]
rows, features, batch = int(rows), int(features), int(batch)
epochs, rounds = int(epochs), int(rounds)
ALONE_SECONDS = 0.5
comm = world()
mine = partition.contiguous_range(rows, comm.size, comm.rank)
if case == "csr":
    rng = np.random.default_rng(1 + comm.rank)
    X = hashed_text(len(mine), features, rng)
    y = np.where(X @ rng.standard_normal(features) > 0, 1.0, -1.0)
else:
    X, y = synthetic.linear_regression(rows, features, mine)

prepare_s = [0.0]  # time in Batches.prepare, this rank
prepare = train.Batches.prepare

def timed_prepare(self, *args, **kwargs):
    start = time.perf_counter()
    batch = prepare(self, *args, **kwargs)
    prepare_s[0] += time.perf_counter() - start
    return batch

train.Batches.prepare = timed_prepare

def run(overlap, epochs):
    stamps = []
    prepare_s[0] = 0.0
    r = train.fit(X, y, loss=loss, solver="sgd", batch_size=batch, learning_rate=0.01,
                  max_iter=epochs, tol=0, overlap=overlap,
                  callback=lambda t, theta, f: stamps.append(time.perf_counter()))
    steps = r.report["evaluations"]
    prepared = comm.allgather_obj(prepare_s[0] / steps)
    return (np.diff(stamps).tolist(), sum(prepared) / len(prepared),
            sum(rank["compute_s"] for rank in r.report["ranks"]) / comm.size / steps,
            sum(rank["wait_s"] for rank in r.report["ranks"]) / comm.size / steps)

for overlap in (False, True):  # warm-up: JIT, caches, page faults
    run(overlap, 1)
buf = np.zeros(features + 3)  # the step's buffer: [gradient, intercept, loss, rows]
comm.allreduce_sum_(buf)  # back to back, the ranks run in lockstep after the first call
start = time.perf_counter()
comm.allreduce_sum_(buf)
calls = max(20, int(ALONE_SECONDS / max(time.perf_counter() - start, 1e-6)))
calls = comm.bcast_obj(calls)
comm.barrier()
start = time.perf_counter()
for _ in range(calls):
    comm.allreduce_sum_(buf)
alone = (time.perf_counter() - start) / calls
comm.barrier()
start = time.perf_counter()
for _ in range(calls):
    comm.iallreduce_sum_(buf).wait()
ialone = (time.perf_counter() - start) / calls
results = {str(o): {"step_s": [], "prepare_s": [], "compute_s": [], "wait_s": []}
           for o in (False, True)}
for i in range(rounds):
    for overlap in ((False, True) if i % 2 == 0 else (True, False)):
        entry = results[str(overlap)]
        for key, value in zip(("step_s", "prepare_s", "compute_s", "wait_s"), run(overlap, epochs)):
            entry[key].append(value)
results["alone_s"], results["ialone_s"] = comm.allgather_obj((alone, ialone))[0]
if comm.rank == 0:
    json.dump(results, open(out, "w"))
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--case", nargs="+", choices=sorted(CASES), default=["dense", "csr"])
    parser.add_argument("--epochs", type=int, default=1, help="epochs per timed fit")
    parser.add_argument("--rounds", type=int, default=5, help="timed fits per setting")
    parser.add_argument("--progress", nargs="+", choices=["default", "async"],
                        default=["default"])
    parser.add_argument("--alpha", type=float, default=2e-6, help="network latency (s)")
    parser.add_argument("--bandwidth", type=float, default=10e9, help="network bytes/s")
    parser.add_argument("--nodes", type=int, default=64, help="nodes of the prediction")
    args = parser.parse_args()
    for case in args.case:
        for progress in args.progress:
            run(case, args.epochs, args.rounds, progress, args.alpha, 1 / args.bandwidth,
                args.nodes)


def run(case: str, epochs: int, rounds: int, progress: str, alpha: float, beta: float,
        nodes: int) -> None:
    """Fit on 2 ranks with and without overlap; print the measured and the predicted gains."""
    loss, rows, features, batch = CASES[case]
    with tempfile.TemporaryDirectory() as tmp:
        script, out = os.path.join(tmp, "run.py"), os.path.join(tmp, "out.json")
        with open(script, "w") as f:
            f.write(textwrap.dedent(SCRIPT))
        env = dict(os.environ)
        if progress == "async":
            env["MPIR_CVAR_ASYNC_PROGRESS"] = "1"
        subprocess.run([find_mpiexec(), "-n", "2", sys.executable, script, case, loss, str(rows),
                        str(features), str(batch), str(epochs), str(rounds), out],
                       env=env, check=True, timeout=1200)
        results = json.load(open(out))
    buffer_bytes = (features + 3) * alphabeta.FLOAT64_BYTES
    print(f"{case}: {loss} loss, 2 ranks, {rows:,} x {features:,}, batch {batch:,}, buffer "
          f"{features + 3:,} values ({buffer_bytes / 1024:.0f} KiB), {progress} MPI progress, "
          f"{rounds} x {epochs} epoch(s) per setting")
    alone = results["alone_s"]
    print(f"Allreduce alone: {alone * 1e6:.1f} us; Iallreduce + wait alone: "
          f"{results['ialone_s'] * 1e6:.1f} us")
    print(f"{'overlap':<8} {'step (ms)':>10} {'min round':>10} {'prepare':>8} {'compute':>8} "
          f"{'wait':>8} {'gain':>6} {'noise':>6}")
    summary = {}
    for overlap in SETTINGS:
        entry = results[str(overlap)]
        step = statistics.median(s for steps in entry["step_s"] for s in steps)
        per_round = [statistics.median(steps) for steps in entry["step_s"]]
        summary[overlap] = step, statistics.median(entry["prepare_s"])
        base = summary[False][0]
        compute, wait = (statistics.median(entry[key]) for key in ("compute_s", "wait_s"))
        print(f"{str(overlap):<8} {step * 1e3:>10.3f} {min(per_round) * 1e3:>10.3f} "
              f"{summary[overlap][1] * 1e3:>8.3f} {compute * 1e3:>8.3f} {wait * 1e3:>8.3f} "
              f"{base / step:>6.3f} {max(per_round) / min(per_round):>6.3f}")
    plain = results["False"]
    prepared = summary[False][1]
    comm = alphabeta.allreduce_seconds(buffer_bytes, nodes, alpha, beta)
    hidden = min(comm, prepared)
    works = (statistics.median(plain["compute_s"]),  # preparation and kernels only
             min(statistics.median(steps) for steps in plain["step_s"]) - alone)
    gains = [(work + comm) / (work + comm - hidden) for work in works]
    print(f"predicted on {nodes} nodes (alpha {alpha * 1e6:g} us, {1 / beta / 1e9:g} GB/s): "
          f"Allreduce T = {comm * 1e6:.1f} us, hidden min(T, prepare) = {hidden * 1e6:.1f} us; "
          f"node work {works[0] * 1e3:.3f} to {works[1] * 1e3:.3f} ms a step: "
          f"gain {gains[0]:.3f} to {gains[1]:.3f}")
    print()


if __name__ == "__main__":
    main()
