"""The cost of deterministic mode (fit(..., deterministic=True)): step time with deterministic
False and True, measured in the same run, on 1 and 2 ranks.

    python benchmarks/bench_deterministic.py [--case gd sgd csr] [--ranks 1 2] [--rounds 3]

For each case and rank count, launches `mpiexec -n RANKS` and fits the same shards with
deterministic=False and True, interleaved over rounds (the order alternates from round to round,
so drift in the machine's load falls on both alike), after one warm-up fit of each:

- gd:  full-batch gradient descent, squared loss, 1,000,000 x 32 float64 (244 blocks of
       deterministic.BLOCK_ROWS rows), 20 steps a fit;
- sgd: mini-batch SGD, squared loss, the same data, batch 1,024, one epoch (977 steps) a fit;
- csr: full-batch gradient descent, logistic loss, hashed text 200,000 x 2**18 with about 100
       non-zeros a row (fastdp.bench.cases.hashed_text), 10 steps a fit: wide rows, where the
       Allgatherv of the tree's nodes (262,146 values each) is no longer small. Not run by default.

Printed per setting: the step time (rank 0, between consecutive callbacks, one per step: the
median over the steps of all rounds, and the smallest of the rounds' medians), compute and wait
per step from the training report (mean over the ranks: compute is the kernels, the batch's
preparation and, deterministic, the rank's part of the tree; wait is the Allreduce, or the
Allgatherv of the tree's nodes and the rest of the tree), the bytes each rank puts into the step's
collective, and "cost": the median step with deterministic=True over the median step without
(> 1: slower), "cost min" the same ratio of the fastest rounds' medians; "noise" is the largest
over the smallest of one setting's per-round medians. compute and wait are means over the steps
(one slow step weighs in), the step times medians.
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

# solver, loss, rows, features, batch (None: full batch), max_iter (steps or epochs)
CASES = {"gd": ("gd", "squared", 1_000_000, 32, None, 20),
         "sgd": ("sgd", "squared", 1_000_000, 32, 1024, 1),
         "csr": ("gd", "logistic", 200_000, 2**18, None, 10)}

SCRIPT = """
import json, sys, time
import numpy as np
from fastdp import partition, synthetic, train, world
from fastdp.bench.cases import hashed_text
case, solver, loss, rows, features, batch, max_iter, rounds, out = sys.argv[1:10]
rows, features, max_iter, rounds = int(rows), int(features), int(max_iter), int(rounds)
batch = None if batch == "None" else int(batch)
comm = world()
mine = partition.contiguous_range(rows, comm.size, comm.rank)
if case == "csr":
    rng = np.random.default_rng(1 + comm.rank)
    X = hashed_text(len(mine), features, rng)
    y = np.where(X @ np.random.default_rng(0).standard_normal(features) > 0, 1.0, -1.0)
else:
    X, y = synthetic.linear_regression(rows, features, mine)

def run(det, max_iter):
    stamps = []
    r = train.fit(X, y, loss=loss, solver=solver, batch_size=batch, learning_rate=0.01,
                  max_iter=max_iter, tol=0, deterministic=det,
                  callback=lambda t, theta, f: stamps.append(time.perf_counter()))
    steps = r.report["evaluations"]
    return (np.diff(stamps).tolist(),
            sum(rank["compute_s"] for rank in r.report["ranks"]) / comm.size / steps,
            sum(rank["wait_s"] for rank in r.report["ranks"]) / comm.size / steps,
            r.report["partition"])

for det in (False, True):  # warm-up: JIT, caches, page faults
    run(det, 1 if batch else 2)
results = {str(d): {"step_s": [], "compute_s": [], "wait_s": []} for d in (False, True)}
for i in range(rounds):
    for det in ((False, True) if i % 2 == 0 else (True, False)):
        entry = results[str(det)]
        steps, compute, wait, parts = run(det, max_iter)
        entry["step_s"].append(steps)
        entry["compute_s"].append(compute)
        entry["wait_s"].append(wait)
        entry["partition"] = parts
if comm.rank == 0:
    json.dump(results, open(out, "w"))
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--case", nargs="+", choices=sorted(CASES), default=["gd", "sgd"])
    parser.add_argument("--ranks", nargs="+", type=int, default=[1, 2])
    parser.add_argument("--rounds", type=int, default=3, help="timed fits per setting")
    args = parser.parse_args()
    for case in args.case:
        for ranks in args.ranks:
            run(case, ranks, args.rounds)


def nodes_sent(partition: list[list[int]], rank: int, batch: int | None) -> int:
    """Rows of the tree a rank sends in a step: its cover nodes and the signal row. Full batch:
    the leaves are the blocks of its rows; mini-batch: the batch's rows, a rank holding about
    batch / ranks of them (taken as an even split here)."""
    from fastdp import deterministic

    if batch is None:
        n_rows = partition[-1][1]
        lo, hi = deterministic.block_range(range(*partition[rank]))
        return len(deterministic.cover(lo, hi, deterministic.n_leaves(n_rows))) + 1
    ranks = len(partition)
    lo, hi = batch * rank // ranks, batch * (rank + 1) // ranks
    return len(deterministic.cover(lo, hi, batch)) + 1


def run(case: str, ranks: int, rounds: int) -> None:
    """Fit on `ranks` ranks with deterministic False and True; print step times and the cost."""
    solver, loss, rows, features, batch, max_iter = CASES[case]
    with tempfile.TemporaryDirectory() as tmp:
        script, out = os.path.join(tmp, "run.py"), os.path.join(tmp, "out.json")
        with open(script, "w") as f:
            f.write(textwrap.dedent(SCRIPT))
        subprocess.run([find_mpiexec(), "-n", str(ranks), sys.executable, script, case, solver,
                        loss, str(rows), str(features), str(batch), str(max_iter), str(rounds),
                        out], check=True, timeout=1800)
        results = json.load(open(out))
    width = features + 2  # [grad_coef, grad_intercept, loss] of the scalar losses
    normal_bytes = (width + 2) * 8
    tree_rows = max(nodes_sent(results["True"]["partition"], r, batch) for r in range(ranks))
    what = f"batch {batch:,}" if batch else "full batch"
    print(f"{case}: {solver}, {loss} loss, {ranks} rank(s), {rows:,} x {features:,}, {what}, "
          f"{rounds} fit(s) per setting")
    print(f"collective per step and rank: deterministic=False Allreduce of {normal_bytes:,} B; "
          f"True Allgatherv, each rank sending {'about ' if batch else ''}{tree_rows} rows x "
          f"{width * 8:,} B = {tree_rows * width * 8:,} B")
    print(f"{'deterministic':<14} {'step (ms)':>10} {'min round':>10} {'compute':>8} {'wait':>8} "
          f"{'cost':>6} {'cost min':>8} {'noise':>6}")
    base = None
    for det in ("False", "True"):
        entry = results[det]
        step = statistics.median(s for steps in entry["step_s"] for s in steps)
        per_round = [statistics.median(steps) for steps in entry["step_s"]]
        base = (step, min(per_round)) if base is None else base
        compute, wait = (statistics.median(entry[key]) for key in ("compute_s", "wait_s"))
        print(f"{det:<14} {step * 1e3:>10.3f} {min(per_round) * 1e3:>10.3f} {compute * 1e3:>8.3f} "
              f"{wait * 1e3:>8.3f} {step / base[0]:>6.3f} {min(per_round) / base[1]:>8.3f} "
              f"{max(per_round) / min(per_round):>6.3f}")
    print()


if __name__ == "__main__":
    main()
