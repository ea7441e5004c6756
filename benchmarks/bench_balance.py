"""Load balancing with a slowed rank: step time of the static partition, after rebalancing, and
the ideal (total work / total capacity), measured in one run.

    python benchmarks/bench_balance.py [--rows 400000] [--features 32] [--steps 120] [--slowdown 2.0]

Launches `mpiexec -n 2` with FASTDP_SLOWDOWN=1:<slowdown> (rank 1 takes <slowdown> times as long
for its kernel work) and fits full-batch gradient descent twice, without and with rebalance=True.
Step times are taken on rank 0 between consecutive callbacks (one per step), over the second half
of the steps, after the balancer has settled. The ideal step is rows / (rate_0 + rate_1), the
ranks' rows per second measured in the static run (rows / kernel time per step).
"""

import argparse
import os
import subprocess
import sys
import tempfile
import textwrap

from fastdp.demo import find_mpiexec

SCRIPT = """
import json, time, sys
import numpy as np
from fastdp import partition, synthetic, train, world
rows, features, steps, out = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
comm = world()
X, y = synthetic.linear_regression(rows, features, partition.contiguous_range(rows, comm.size, comm.rank))
results = {}
for label, rebalance in (("warm-up", False), ("static", False), ("rebalanced", True)):
    stamps = []
    r = train.fit(X, y, solver="gd", learning_rate=0.5, max_iter=steps, tol=0, rebalance=rebalance,
                  rebalance_every=5, callback=lambda t, theta, f: stamps.append(time.perf_counter()))
    half = np.diff(stamps)[len(stamps) // 2:]
    results[label] = {"step_s": float(np.mean(half)), "report": r.report}
if comm.rank == 0:
    json.dump(results, open(out, "w"))
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=400_000)
    parser.add_argument("--features", type=int, default=32)
    parser.add_argument("--steps", type=int, default=120)
    parser.add_argument("--slowdown", type=float, default=2.0)
    args = parser.parse_args()
    import json

    with tempfile.TemporaryDirectory() as tmp:
        script, out = os.path.join(tmp, "run.py"), os.path.join(tmp, "out.json")
        with open(script, "w") as f:
            f.write(textwrap.dedent(SCRIPT))
        env = dict(os.environ, FASTDP_SLOWDOWN=f"1:{args.slowdown}")
        subprocess.run([find_mpiexec(), "-n", "2", sys.executable, script, str(args.rows),
                        str(args.features), str(args.steps), out], env=env, check=True, timeout=600)
        results = json.load(open(out))
    static, balanced = results["static"], results["rebalanced"]
    evaluations = static["report"]["evaluations"]
    rates = [r["rows"] / (r["compute_s"] / evaluations) for r in static["report"]["ranks"]]
    ideal = args.rows / sum(rates)
    print(f"2 ranks, rank 1 slowed {args.slowdown}x, {args.rows} x {args.features}, "
          f"{args.steps} gradient-descent steps")
    print(f"{'partition':<12} {'rows per rank':<18} {'step (ms)':>10} {'x ideal':>8}")
    for label, result in (("static", static), ("rebalanced", balanced)):
        rows = "/".join(str(r["rows"]) for r in result["report"]["ranks"])
        print(f"{label:<12} {rows:<18} {result['step_s'] * 1e3:>10.2f} "
              f"{result['step_s'] / ideal:>8.2f}")
    print(f"{'ideal':<12} {'':<18} {ideal * 1e3:>10.2f} {1.0:>8.2f}")
    print(f"rebalanced / static step time: {balanced['step_s'] / static['step_s']:.2f} "
          f"(target <= 0.75); {balanced['report']['rebalances']} rebalance(s)")


if __name__ == "__main__":
    main()
