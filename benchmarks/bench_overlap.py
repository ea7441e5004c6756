"""Overlapping the Allreduce with compute (fit(..., overlap_chunks=k)): mini-batch SGD step time
without overlap and with k = 2, 4 chunks per step, measured in one run.

    python benchmarks/bench_overlap.py [--loss squared softmax] [--epochs 2] [--rounds 2]
                                       [--progress default async]

For each loss, launches `mpiexec -n 2` and fits mini-batch SGD on the same shards with
overlap_chunks None, 2 and 4, interleaved over rounds (so drift in the machine's load falls on
every setting alike), after one warm-up fit:

- squared, 400,000 x 256, batch 8,192: a 259-value buffer (2 KiB) per Allreduce, bandwidth-bound
  kernels of a few ms per step;
- softmax, K = 10 classes, 100,000 x 512, batch 2,048: a 5,132-value buffer (40 KiB) per
  Allreduce, compute-bound kernels.

The step time is taken on rank 0 between consecutive callbacks (one per step; median over the
steps of all rounds); compute and wait per step come from the training report (mean over the
ranks of compute_s and wait_s, divided by the steps). "gain" is the step time without overlap
over the step time with it (> 1: faster). "noise" is the largest over the smallest of one
setting's per-round medians: a gain closer to 1 than that is no measured difference.
"Allreduce alone" is the mean time of 1,000 blocking Allreduces of the step's buffer back to back
(the ranks in lockstep, nothing else to wait for): what the communication itself costs a step,
hence the most any overlap could save. --progress async runs the same again with
MPIR_CVAR_ASYNC_PROGRESS=1 (MPICH's progress thread per rank).
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import textwrap

from fastdp.demo import find_mpiexec

SHAPES = {"squared": (400_000, 256, 8192), "softmax": (100_000, 512, 2048)}  # rows, features, batch
CHUNKS = (None, 2, 4)

SCRIPT = """
import json, sys, time
import numpy as np
from fastdp import partition, synthetic, train, world
loss, rows, features, batch, epochs, rounds, out = sys.argv[1:8]
rows, features, batch = int(rows), int(features), int(batch)
epochs, rounds = int(epochs), int(rounds)
settings = json.loads(sys.argv[8])
ALONE_CALLS = 1000
comm = world()
mine = partition.contiguous_range(rows, comm.size, comm.rank)
if loss == "softmax":
    X = np.random.default_rng(mine.start).standard_normal((len(mine), features))
    y = (X[:, :10].argmax(axis=1) + (mine.start % 3)) % 10
    kwargs = {"n_classes": 10}
else:
    X, y = synthetic.linear_regression(rows, features, mine)
    kwargs = {}

def run(chunks, epochs):
    stamps = []
    r = train.fit(X, y, loss=loss, solver="sgd", batch_size=batch, learning_rate=0.01,
                  max_iter=epochs, tol=0, overlap_chunks=chunks,
                  callback=lambda t, theta, f: stamps.append(time.perf_counter()), **kwargs)
    steps = r.report["evaluations"]
    return (np.diff(stamps).tolist(),
            [rank["compute_s"] / steps for rank in r.report["ranks"]],
            [rank["wait_s"] / steps for rank in r.report["ranks"]])

run(None, 1)  # warm-up: JIT, caches, page faults
K = kwargs.get("n_classes", 1)
buf = np.zeros(features * K + K + 2)  # the step's buffer: [gradient, loss, rows]
comm.allreduce_sum_(buf)  # back to back, the ranks run in lockstep after the first call
start = time.perf_counter()
for _ in range(ALONE_CALLS):
    comm.allreduce_sum_(buf)
alone = (time.perf_counter() - start) / ALONE_CALLS
results = {str(chunks): {"step_s": [], "compute_s": [], "wait_s": []} for chunks in settings}
for _ in range(rounds):
    for chunks in settings:
        steps, compute, wait = run(chunks, epochs)
        entry = results[str(chunks)]
        entry["step_s"].append(steps)
        entry["compute_s"].append(compute)
        entry["wait_s"].append(wait)
results["alone_s"] = comm.allgather_obj(alone)[0]
if comm.rank == 0:
    json.dump(results, open(out, "w"))
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--loss", nargs="+", choices=sorted(SHAPES), default=["squared", "softmax"])
    parser.add_argument("--epochs", type=int, default=2, help="epochs per timed fit")
    parser.add_argument("--rounds", type=int, default=2, help="timed fits per setting")
    parser.add_argument("--progress", nargs="+", choices=["default", "async"],
                        default=["default"])
    args = parser.parse_args()
    for loss in args.loss:
        for progress in args.progress:
            run(loss, *SHAPES[loss], args.epochs, args.rounds, progress)


def run(loss: str, rows: int, features: int, batch: int, epochs: int, rounds: int,
        progress: str) -> None:
    """Fit on 2 ranks with each overlap setting; print step, compute and wait times and gains."""
    with tempfile.TemporaryDirectory() as tmp:
        script, out = os.path.join(tmp, "run.py"), os.path.join(tmp, "out.json")
        with open(script, "w") as f:
            f.write(textwrap.dedent(SCRIPT))
        env = dict(os.environ)
        if progress == "async":
            env["MPIR_CVAR_ASYNC_PROGRESS"] = "1"
        subprocess.run([find_mpiexec(), "-n", "2", sys.executable, script, loss, str(rows),
                        str(features), str(batch), str(epochs), str(rounds), out,
                        json.dumps(CHUNKS)],
                       env=env, check=True, timeout=600)
        results = json.load(open(out))
    K = 10 if loss == "softmax" else 1
    print(f"{loss} loss: 2 ranks, {rows} x {features}, batch {batch}, buffer "
          f"{features * K + K + 2} values, {progress} MPI progress, {rounds} x {epochs} epoch(s) "
          f"per setting")
    print(f"Allreduce alone: {results['alone_s'] * 1e6:.1f} us")
    print(f"{'overlap_chunks':<15} {'step (ms)':>10} {'compute (ms)':>13} {'wait (ms)':>10} "
          f"{'gain':>6} {'noise':>6}")
    base = None
    for chunks in CHUNKS:
        entry = results[str(chunks)]
        step = statistics.median(s for steps in entry["step_s"] for s in steps)
        per_round = [statistics.median(steps) for steps in entry["step_s"]]
        compute = sum(sum(c) / len(c) for c in entry["compute_s"]) / len(entry["compute_s"])
        wait = sum(sum(w) / len(w) for w in entry["wait_s"]) / len(entry["wait_s"])
        base = base or step
        print(f"{str(chunks):<15} {step * 1e3:>10.2f} {compute * 1e3:>13.2f} {wait * 1e3:>10.3f} "
              f"{base / step:>6.3f} {max(per_round) / min(per_round):>6.3f}")
    print()


if __name__ == "__main__":
    main()
