"""`fastdp bench kernels`: the loss-gradient kernels against the machine's read bandwidth and
the NumPy/SciPy two-pass reference, measured in one run.

    fastdp bench kernels [--cases NAME ...] [--rounds 10] [--scale 1.0] [--out bench-results]

For each case (fastdp.bench.cases.CASES) every contender's result is checked against the
reference once, then the contenders and the read-bandwidth probe (a parallel sum over 1 GiB,
fastdp.bench.bandwidth) are timed in interleaved rounds (read, numba, cython, numpy, read, ...:
drifts of a shared machine hit all alike; a float32 case and its float64 case share their
rounds, case_groups), each call after 0.15 s idle so that no thread pool of the previous one
still spins (fastdp.bench.timing.interleaved_times), and each keeps its best time.
The probe runs in every case's rounds because the machine's bandwidth moves: on this 2-vCPU VM
two threads read 33-35 GB/s for minutes, then 50-60 GB/s for 10-20 s (the host runs the vCPUs on
one core's two hyperthreads, then on two cores), so a probe measured once, apart from the
kernels, compares a kernel with another machine. Prints a table (per case: the probe's best
GB/s, then each contender's best ms, GB/s of X, % of the probe's best, the median over the rounds
of its ratio to the probe in the same round, x the reference, rows/s) and the issue's targets
with the ratios this run measured; writes kernels.json and kernels.png (GB/s against each
case's bandwidth). --scale multiplies every case's rows (tests run the suite at 1e-3).
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any

import numpy as np

from . import report
from .bandwidth import DEFAULT_BYTES, PROBE, Probe, bandwidth_probe
from .cases import CASES, CONTENDERS, Case, assert_matches, bytes_of_x, make_kernel, make_shard, \
    reference
from .timing import interleaved_times

# (description, case, contender, over case, over contender, minimum ratio of rows/s); "bandwidth"
# as the contender over means the fraction of the measured read bandwidth.
TARGETS = [
    ("dense squared f64: % of read bandwidth", "squared-dense-4e6x32", "best", None, "bandwidth", 0.80),
    ("dense logistic f64: % of read bandwidth", "logistic-dense-4e6x32", "best", None, "bandwidth",
     0.80),
    ("dense squared f64: x NumPy two-pass", "squared-dense-4e6x32", "best", None, "numpy", 4.0),
    ("dense logistic f64: x NumPy two-pass", "logistic-dense-4e6x32", "best", None, "numpy", 4.0),
    ("dense squared: float32 / float64 rows/s", "squared-dense-4e6x32-f32", "best",
     "squared-dense-4e6x32", "best", 1.8),
    ("dense logistic: float32 / float64 rows/s", "logistic-dense-4e6x32-f32", "best",
     "logistic-dense-4e6x32", "best", 1.8),
    ("CSR logistic: x SciPy two-pass", "logistic-csr-2e5x2^20", "best", None, "numpy", 3.0),
    ("softmax K=10 dense: x NumPy", "softmax10-dense-1e6x64", "best", None, "numpy", 3.0),
]


def time_cases(cases: dict[str, Case], rounds: int, probe: Probe
               ) -> tuple[dict[str, dict[str, Any]], float]:
    """Check every contender on each case's shard, then time them all and the bandwidth probe
    (run, bytes) in the same interleaved rounds. Returns ({case: {contender: best seconds, and at
    the best: GB/s of X, rows/s, share of the read bandwidth; the seconds of every round}}, the
    probe's best GB/s in these rounds).

    The share is the contender's best GB/s over the probe's best GB/s in the same rounds, as every
    other ratio of the suite is best over best; "share_median" is the median over the rounds of
    the contender's GB/s over the probe's in the same round, which shows how steady the share
    was while the machine's state moved. Cases timed together (case_groups: float32 with its
    float64 case) meet the machine's fast and slow stretches alike, so their ratio compares the
    kernels, not two moments of the host."""
    shards = {name: make_shard(case) for name, case in cases.items()}
    runs: dict[str, Callable[[], Any]] = {PROBE: probe[0]}
    for name, case in cases.items():
        ref = reference(case, shards[name])
        for contender in CONTENDERS:
            run = make_kernel(case, contender, shards[name])
            assert_matches(case, run(), ref)
            runs[f"{name}/{contender}"] = run
    times = interleaved_times(runs, rounds)
    read = probe[1] / np.array(times[PROBE])
    results: dict[str, dict[str, Any]] = {}
    for name, case in cases.items():
        n_bytes = bytes_of_x(shards[name].X)
        results[name] = {}
        for contender in CONTENDERS:
            seconds = np.array(times[f"{name}/{contender}"])
            best = float(seconds.min())
            results[name][contender] = {
                "seconds": best, "gb_per_s": n_bytes / best / 1e9, "rows_per_s": case.rows / best,
                "bandwidth_share": n_bytes / best / read.max(),
                "share_median": float(np.median(n_bytes / seconds / read)),
                "round_seconds": seconds.tolist()}
    return results, float(read.max()) / 1e9


def case_groups(names: list[str]) -> list[list[str]]:
    """The cases to time, in the order given, each group timed in its own rounds: a case alone,
    or with the case a target compares it with (TARGETS' over case: float32 with float64) when
    both are selected."""
    pairs = {frozenset((case, over_case)) for _, case, _, over_case, _, _ in TARGETS
             if over_case is not None}
    groups: list[list[str]] = []
    placed: set[str] = set()
    for name in names:
        if name not in placed:
            group = [name] + [other for other in names if other not in placed and other != name
                              and frozenset((name, other)) in pairs]
            placed.update(group)
            groups.append(group)
    return groups


def _best_compiled(result: dict[str, Any]) -> dict[str, Any]:
    return min((result[name] for name in ("numba", "cython")), key=lambda r: r["seconds"])


def _rows_per_s_by_round(result: dict[str, Any]) -> np.ndarray:
    """A contender's rows/s in each round (its rows are its best rows/s times its best seconds)."""
    return result["rows_per_s"] * result["seconds"] / np.array(result["round_seconds"])


def evaluate_targets(results: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """The issue's targets that this run's cases cover, each with its measured ratio (best round
    over best round, as every ratio of the suite; the share of the read bandwidth as time_cases
    measured it) and, beside it, "paired": the median over the rounds of the same ratio formed
    within each round (the contenders of a target are timed in the same rounds), which a fast or
    slow stretch of the host moves less. A ratio of rows/s also gets its "ceiling": the ratio the
    kernel would reach reading X at the probe's best bandwidth of its rounds (measured over the
    kernel's share of it). Every kernel reads all of X, so where the ceiling is below the minimum
    no kernel meets the target on this host in this state (None for the bandwidth targets,
    whose ceiling is 1)."""
    rows = []
    for description, case, who, over_case, over, minimum in TARGETS:
        if case not in results or (over_case is not None and over_case not in results):
            continue
        mine = _best_compiled(results[case]) if who == "best" else results[case][who]
        if over == "bandwidth":
            ratio, paired, ceiling = mine["bandwidth_share"], mine["share_median"], None
        else:
            other = (_best_compiled(results[over_case]) if over_case is not None
                     else results[case][over])
            ratio = mine["rows_per_s"] / other["rows_per_s"]
            paired = float(np.median(_rows_per_s_by_round(mine) / _rows_per_s_by_round(other)))
            ceiling = ratio / mine["bandwidth_share"]
        rows.append({"target": description, "measured": ratio, "paired": paired,
                     "minimum": minimum, "ceiling": ceiling, "met": bool(ratio >= minimum)})
    return rows


def format_table(results: dict[str, dict[str, Any]], bandwidth: dict[str, float],
                 targets: list[dict[str, Any]]) -> str:
    """The printed report: per case the probe's line, then one line per contender; the targets."""
    width = max(len(c) for c in results)
    lines = ["read: the bandwidth probe (parallel sum over a large array), timed in each round of "
             "the case. Every figure is a best round, except 'med %': the median over the rounds "
             "of the contender's GB/s over the probe's in the same round.", "",
             f"{'case':<{width}} {'kernel':<7} {'ms':>8} {'GB/s':>7} {'% bw':>6} {'med %':>6} "
             f"{'x numpy':>8} {'Mrows/s':>8}"]
    for case, result in results.items():
        lines.append(f"{case:<{width}} {PROBE:<7} {'':>8} {bandwidth[case]:>7.2f} {100.0:>6.1f} "
                     f"{'':>6} {'':>8} {'':>8}")
        for name, r in result.items():
            lines.append(f"{case:<{width}} {name:<7} {r['seconds'] * 1e3:>8.2f} "
                         f"{r['gb_per_s']:>7.2f} {100 * r['bandwidth_share']:>6.1f} "
                         f"{100 * r['share_median']:>6.1f} "
                         f"{result['numpy']['seconds'] / r['seconds']:>8.2f} "
                         f"{r['rows_per_s'] / 1e6:>8.1f}")
    if targets:
        lines += ["", "measured: best round over best round; paired: the median over the rounds of "
                  "the ratio within each round; ceiling: the ratio at the probe's bandwidth.",
                  f"{'target':<44} {'measured':>9} {'paired':>7} {'minimum':>8} {'ceiling':>8}  met"]
        lines += [f"{t['target']:<44} {t['measured']:>9.2f} {t['paired']:>7.2f} "
                  f"{t['minimum']:>8.2f} "
                  + (f"{t['ceiling']:>8.2f}" if t["ceiling"] is not None else f"{'-':>8}")
                  + f"  {'yes' if t['met'] else 'NO'}" for t in targets]
    return "\n".join(lines)


def plot(results: dict[str, dict[str, Any]], bandwidth: dict[str, float], out: str) -> str:
    """Bar chart of GB/s per case and contender, each case's read bandwidth a line over its bars."""
    plt = report.pyplot()
    fig, ax = plt.subplots(figsize=(max(6.0, 1.2 * len(results)), 4))
    width = 0.8 / len(CONTENDERS)
    for k, name in enumerate(CONTENDERS):
        ax.bar(np.arange(len(results)) + k * width, [r[name]["gb_per_s"] for r in results.values()],
               width, label=name)
    ax.hlines([bandwidth[case] for case in results], np.arange(len(results)) - width / 2,
              np.arange(len(results)) + width * (len(CONTENDERS) - 0.5), color="black",
              linestyle="--", label="read bandwidth (in the case's rounds)")
    ax.set_xticks(np.arange(len(results)) + width * (len(CONTENDERS) - 1) / 2)
    ax.set_xticklabels(list(results), rotation=30, ha="right", fontsize=8)
    ax.set_ylabel("GB/s of X read")
    ax.set_title("loss + gradient kernels against the read-bandwidth roofline")
    ax.legend(fontsize=8)
    return report.save_figure(fig, out, "kernels")


def main(argv: list[str] | None = None) -> int:
    """Entry point of `fastdp bench kernels`."""
    parser = argparse.ArgumentParser(prog="fastdp bench kernels", description=report.summary(__doc__))
    parser.add_argument("--cases", nargs="+", choices=list(CASES), default=list(CASES),
                        metavar="CASE", help="cases to run (default all): " + ", ".join(CASES))
    parser.add_argument("--rounds", type=int, default=10,
                        help="interleaved timing rounds; each contender keeps its best (default 10)")
    parser.add_argument("--scale", type=float, default=1.0,
                        help="multiply every case's rows (default 1.0)")
    parser.add_argument("--bandwidth-bytes", type=int, default=DEFAULT_BYTES,
                        help=f"size of the read-bandwidth probe's array (default {DEFAULT_BYTES})")
    parser.add_argument("--out", default=report.DEFAULT_OUT,
                        help=f"directory for kernels.json and kernels.png (default {report.DEFAULT_OUT})")
    args = parser.parse_args(argv)
    if args.rounds < 1 or not args.scale > 0 or args.bandwidth_bytes < 8:
        parser.error("--rounds must be >= 1, --scale > 0 and --bandwidth-bytes >= 8")
    probe = bandwidth_probe(args.bandwidth_bytes)
    results, bandwidth = {}, {}
    for group in case_groups(args.cases):
        scaled = {name: CASES[name]._replace(rows=max(1, int(CASES[name].rows * args.scale)))
                  for name in group}
        timed, read = time_cases(scaled, args.rounds, probe)
        for name in group:
            results[name], bandwidth[name] = timed[name], read
    targets = evaluate_targets(results)
    print(report.describe())
    print(format_table(results, bandwidth, targets), flush=True)
    report.write_json(args.out, "kernels", {"bandwidth_gb_per_s": bandwidth, "results": results,
                                            "targets": targets, "scale": args.scale})
    plot(results, bandwidth, args.out)
    return 0
