"""Load balancing with a slowed rank: step time of the static partition, after rebalancing, and
the ideal (total work / total capacity), measured in one run.

    python benchmarks/bench_balance.py [--loss softmax squared] [--steps 150] [--slowdown 2.0]

For each loss, launches `mpiexec -n 2` with FASTDP_SLOWDOWN=1:<slowdown> (rank 1 does its kernel
work <slowdown> times) and fits full-batch gradient descent twice, without and with rebalance=True.
The two losses show the two regimes of a slowed rank on ranks that share one memory bus:

- softmax, K = 10 classes, 100,000 x 64 (compute-bound: 1,280 multiply-adds per 512-byte row).
  Repeating the kernel costs rank 1 CPU time only, as on a slower node: the balancer should reach
  the ideal step and beat the static partition by the slowdown's margin.
- squared, 400,000 x 32 (bandwidth-bound: 64 multiply-adds per 256-byte row). Repeating the
  kernel also reads X again through the bus the two ranks share, so the slowed rank slows the
  other one too: moving rows cannot shorten the step much, whatever the balancer does.

Step times are taken on rank 0 between consecutive callbacks (one per step), over the second half
of the steps, after the balancer has settled. The ideal step is rows / (rate_0 + rate_1), the
ranks' rows per second measured in the static run (rows / kernel time per step).
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import textwrap

from fastdp.demo import find_mpiexec

SHAPES = {"softmax": (100_000, 64), "squared": (400_000, 32)}  # loss: (rows, features)

SCRIPT = """
import json, time, sys
import numpy as np
from fastdp import partition, synthetic, train, world
rows, features, steps, out = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
comm = world()
loss = sys.argv[5]
mine = partition.contiguous_range(rows, comm.size, comm.rank)
if loss == "softmax":
    X = np.random.default_rng(mine.start).standard_normal((len(mine), features))
    y = (X[:, :10].argmax(axis=1) + (mine.start % 3)) % 10
else:
    X, y = synthetic.linear_regression(rows, features, mine)
classes = {"n_classes": 10} if loss == "softmax" else {}
results = {}
for label, rebalance in (("warm-up", False), ("static", False), ("rebalanced", True)):
    stamps = []
    r = train.fit(X, y, loss=loss, **classes, solver="gd", learning_rate=0.5, max_iter=steps, tol=0, rebalance=rebalance,
                  rebalance_every=5, callback=lambda t, theta, f: stamps.append(time.perf_counter()))
    half = np.diff(stamps)[len(stamps) // 2:]
    results[label] = {"step_s": float(np.mean(half)), "report": r.report}
if comm.rank == 0:
    json.dump(results, open(out, "w"))
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--loss", nargs="+", choices=sorted(SHAPES), default=["softmax", "squared"])
    parser.add_argument("--steps", type=int, default=150)
    parser.add_argument("--slowdown", type=float, default=2.0)
    args = parser.parse_args()
    for loss in args.loss:
        run(loss, *SHAPES[loss], args.steps, args.slowdown)


def run(loss: str, rows: int, features: int, steps: int, slowdown: float) -> None:
    """Fit static and rebalanced on 2 ranks with rank 1 slowed; print the step times."""
    with tempfile.TemporaryDirectory() as tmp:
        script, out = os.path.join(tmp, "run.py"), os.path.join(tmp, "out.json")
        with open(script, "w") as f:
            f.write(textwrap.dedent(SCRIPT))
        env = dict(os.environ, FASTDP_SLOWDOWN=f"1:{slowdown}")
        subprocess.run([find_mpiexec(), "-n", "2", sys.executable, script, str(rows),
                        str(features), str(steps), out, loss], env=env, check=True, timeout=600)
        results = json.load(open(out))
    static, balanced = results["static"], results["rebalanced"]
    evaluations = static["report"]["evaluations"]
    rates = [r["rows"] / (r["compute_s"] / evaluations) for r in static["report"]["ranks"]]
    ideal = rows / sum(rates)
    print(f"{loss} loss: 2 ranks, rank 1 slowed {slowdown}x, {rows} x {features}, "
          f"{steps} gradient-descent steps")
    print(f"{'partition':<12} {'rows per rank':<18} {'step (ms)':>10} {'x ideal':>8}")
    for label, result in (("static", static), ("rebalanced", balanced)):
        rows = "/".join(str(r["rows"]) for r in result["report"]["ranks"])
        print(f"{label:<12} {rows:<18} {result['step_s'] * 1e3:>10.2f} "
              f"{result['step_s'] / ideal:>8.2f}")
    print(f"{'ideal':<12} {'':<18} {ideal * 1e3:>10.2f} {1.0:>8.2f}")
    print(f"rebalanced / static step time: {balanced['step_s'] / static['step_s']:.2f} "
          f"(target <= 0.75); {balanced['report']['rebalances']} rebalance(s)\n")


if __name__ == "__main__":
    main()
