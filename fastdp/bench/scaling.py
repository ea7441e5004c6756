"""`fastdp bench scaling`: strong or weak scaling of full-batch training over ranks and threads on
this machine, and the alpha-beta model's prediction for 8 to 1024 nodes (fastdp.bench.alphabeta).

For each (ranks, threads) it launches `mpiexec -n RANKS python -m fastdp.bench.scaling --worker
train ...` with NUMBA_NUM_THREADS = OMP_NUM_THREADS = threads. Each rank generates its own rows
(fastdp.synthetic.linear_regression), fits them with `fastdp.train.fit(solver="gd", tol=0)` (the
default backend, "auto"; each run records the one it picked) once for WARMUP_STEPS steps
(compilation, first touch of the pages), then again for --steps steps, timed; rank 0 reports
the step time and the compute and Allreduce-wait seconds of `result.report`. Speedup and
efficiency are against the run with the fewest ranks of the same threads (1 rank by default):
strong (fixed total rows) T_b / T_p and b*T_b / (p*T_p); weak (fixed rows per rank)
(p/b) * T_b / T_p and T_b / T_p.

Then it launches `--worker comm` on COMM_RANKS ranks (fastdp.bench.comm.measure at MODEL_SIZES),
fits alpha and beta, takes one node's compute rate from the run with the fewest ranks (and the most
threads), and prints alphabeta.model_table with its assumptions. Writes scaling.json,
scaling.png (speedup and efficiency against ranks) and scaling_model.png (the model's efficiency
against nodes, one line per parameter count) into --out.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from typing import Any

import numpy as np

from .. import partition, synthetic, train
from ..comm import launched_by_mpi, world
from ..threads import available_cores
from . import alphabeta, report
from .comm import int_list, measure, run_under_mpiexec

MODULE = "fastdp.bench.scaling"
DEFAULT_ROWS = 2_000_000
DEFAULT_FEATURES = 32
DEFAULT_STEPS = 20
WARMUP_STEPS = 2
COMM_RANKS = 2
MODEL_SIZES = (1, 16, 256, 4096, 65536, 1048576)  # float64 values of the alpha-beta measurement
MODEL_REPEATS = 50


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="fastdp bench scaling",
        description="Strong or weak scaling of gradient-descent training over ranks x threads "
                    "(launches mpiexec), and the alpha-beta model for 8-1024 nodes.")
    parser.add_argument("--np", type=int_list, default=[1, 2],
                        help="rank counts, comma-separated (default 1,2)")
    parser.add_argument("--threads", type=int_list, default=[1],
                        help="threads per rank, comma-separated (default 1)")
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--strong", dest="scaling", action="store_const", const="strong",
                      help="fixed total rows (the default)")
    mode.add_argument("--weak", dest="scaling", action="store_const", const="weak",
                      help="fixed rows per rank")
    parser.set_defaults(scaling="strong")
    parser.add_argument("--rows", type=int, default=DEFAULT_ROWS,
                        help=f"total rows (strong) or rows per rank (weak); default {DEFAULT_ROWS}")
    parser.add_argument("--features", type=int, default=DEFAULT_FEATURES,
                        help=f"float64 features per row (default {DEFAULT_FEATURES})")
    parser.add_argument("--steps", type=int, default=DEFAULT_STEPS,
                        help=f"timed gradient-descent steps (default {DEFAULT_STEPS})")
    parser.add_argument("--out", default=report.DEFAULT_OUT,
                        help="directory for scaling.json and the PNGs")
    parser.add_argument("--worker", choices=("train", "comm"), help=argparse.SUPPRESS)
    parser.add_argument("--report", help=argparse.SUPPRESS)
    return parser


def _train_worker(args: argparse.Namespace) -> dict[str, Any]:
    """One timed fit on this job's ranks; the same record on every rank."""
    comm = world()
    total = args.rows if args.scaling == "strong" else args.rows * comm.size
    X, y = synthetic.linear_regression(total, args.features,
                                       partition.contiguous_range(total, comm.size, comm.rank))
    train.fit(X, y, solver="gd", max_iter=WARMUP_STEPS, tol=0)
    result = train.fit(X, y, solver="gd", max_iter=args.steps, tol=0)
    ranks, evaluations = result.report["ranks"], result.report["evaluations"]
    return {"ranks": comm.size, "threads": result.threads[result.backend],
            "backend": result.backend, "rows": total,
            "rows_per_rank": max(r["rows"] for r in ranks), "evaluations": evaluations,
            "step_s": result.seconds / evaluations,
            "compute_s": float(np.mean([r["compute_s"] for r in ranks])) / evaluations,
            "compute_max_s": max(r["compute_s"] for r in ranks) / evaluations,
            "wait_s": float(np.mean([r["wait_s"] for r in ranks])) / evaluations}


def _worker(args: argparse.Namespace) -> int:
    """--worker: run under mpiexec; rank 0 writes the record to --report."""
    if args.worker == "train":
        record: Any = _train_worker(args)
    else:
        record = measure(world(), MODEL_SIZES, MODEL_REPEATS)
    if world().rank == 0:
        with open(args.report, "w") as f:
            json.dump(record, f)
    return 0


def _launch(ranks: int, threads: int, argv: list[str], path: str) -> Any:
    """Launch a worker on ranks ranks with threads threads per rank; its record, which it writes
    to path."""
    env = dict(os.environ, NUMBA_NUM_THREADS=str(threads), OMP_NUM_THREADS=str(threads))
    code = run_under_mpiexec(ranks, MODULE, [*argv, f"--report={path}"], env=env)
    if code != 0 or not os.path.exists(path):
        raise RuntimeError(f"the worker on {ranks} ranks x {threads} threads failed (exit {code}): "
                           f"{MODULE} {' '.join(argv)}")
    with open(path) as f:
        return json.load(f)


def add_scaling(runs: list[dict[str, Any]], scaling: str) -> list[dict[str, Any]]:
    """Each run with "speedup" and "efficiency" against the run of the same threads with the
    fewest ranks b (module docstring), and "compute_share" = compute_s / step_s."""
    if scaling not in alphabeta.SCALINGS:
        raise ValueError(f"scaling must be one of {list(alphabeta.SCALINGS)}, got {scaling!r}")
    out = []
    for run in runs:
        base = min((r for r in runs if r["threads"] == run["threads"]), key=lambda r: r["ranks"])
        ratio = base["step_s"] / run["step_s"]
        share = base["ranks"] / run["ranks"]
        if scaling == "strong":
            speedup, efficiency = ratio, ratio * share
        else:
            speedup, efficiency = ratio / share, ratio
        out.append(run | {"speedup": speedup, "efficiency": efficiency,
                          "compute_share": run["compute_s"] / run["step_s"]})
    return out


def node_rate(runs: list[dict[str, Any]]) -> tuple[float, dict[str, Any]]:
    """(rows per second of one node, the run it comes from): the run with the fewest ranks, then
    the most threads; its rows over its slowest rank's compute seconds per step (the kernels'
    time, without the Allreduce and the update)."""
    run = min(runs, key=lambda r: (r["ranks"], -r["threads"]))
    return run["rows"] / run["compute_max_s"], run


def run_suite(args: argparse.Namespace) -> dict[str, Any]:
    """Launch every (ranks, threads) run and the alpha-beta measurement; the suite's record."""
    worker = ["--worker", "train", f"--rows={args.rows}", f"--features={args.features}",
              f"--steps={args.steps}", f"--{args.scaling}"]
    cores = available_cores()
    with tempfile.TemporaryDirectory(prefix="fastdp-scaling-") as tmp:
        runs = [_launch(n, t, worker, os.path.join(tmp, f"train-{n}x{t}.json"))
                | {"oversubscribed": n * t > cores} for t in args.threads for n in args.np]
        measured = _launch(COMM_RANKS, 1, ["--worker", "comm"], os.path.join(tmp, "comm.json"))
    alpha, beta = alphabeta.fit([m["bytes"] for m in measured],
                                [m["bare_median_s"] for m in measured], COMM_RANKS)
    rate, source = node_rate(runs)
    model = {"alpha_s": alpha, "beta_s_per_byte": beta, "comm_ranks": COMM_RANKS,
             "comm": measured, "rows_per_s": rate,
             "rate_from": {"ranks": source["ranks"], "threads": source["threads"]},
             "rows": args.rows, "assumptions": list(alphabeta.ASSUMPTIONS),
             "table": alphabeta.model_table(args.rows, rate, alpha, beta, scaling=args.scaling)}
    return {"scaling": args.scaling, "rows": args.rows, "features": args.features,
            "steps": args.steps, "warmup_steps": WARMUP_STEPS, "cores": cores,
            "runs": add_scaling(runs, args.scaling), "model": model}


def print_tables(record: dict[str, Any]) -> None:
    """The measured table, then the model's parameters, assumptions and predictions."""
    rows = "total rows" if record["scaling"] == "strong" else "rows per rank"
    print(f"fastdp bench scaling: {record['scaling']} scaling, {record['rows']} {rows} x "
          f"{record['features']} float64 features, gd, {record['steps']} timed steps after "
          f"{record['warmup_steps']} warm-up steps; {record['cores']} cores")
    print(report.describe())
    header = (f"{'ranks':>6}{'threads':>8}{'rows/rank':>11}{'step ms':>10}{'speedup':>9}"
              f"{'efficiency':>12}{'compute share':>15}")
    print(header)
    print("-" * len(header))
    for run in record["runs"]:
        mark = " *" if run["oversubscribed"] else ""
        print(f"{run['ranks']:>6}{run['threads']:>8}{run['rows_per_rank']:>11}"
              f"{run['step_s'] * 1e3:>10.3f}{run['speedup']:>9.3f}{run['efficiency']:>12.3f}"
              f"{run['compute_share']:>15.3f}{mark}")
    if any(run["oversubscribed"] for run in record["runs"]):
        print("* ranks x threads exceed the cores: oversubscribed")
    model = record["model"]
    print(f"\nalpha-beta model ({record['scaling']} scaling, {model['rows']} {rows}): "
          f"alpha = {model['alpha_s'] * 1e6:.3f} µs, beta = {model['beta_s_per_byte'] * 1e9:.4f} "
          f"ns/byte (fitted on {model['comm_ranks']} ranks of this machine); one node computes "
          f"{model['rows_per_s']:.4g} rows/s (measured on {model['rate_from']['ranks']} rank x "
          f"{model['rate_from']['threads']} threads)")
    print("assumptions:")
    for line in model["assumptions"]:
        print(f"  - {line}")
    params = sorted({r["params"] for r in model["table"]})
    for title, key, scale, fmt in (("efficiency", "efficiency", 1, ".3f"),
                                   ("Allreduce µs per step", "comm_s", 1e6, ".1f")):
        print(f"{title} by nodes (rows) and parameters (columns):")
        print(f"{'nodes':>6}" + "".join(f"{p:>12}" for p in params))
        for nodes in sorted({r["nodes"] for r in model["table"]}):
            cells = {r["params"]: r[key] * scale for r in model["table"] if r["nodes"] == nodes}
            print(f"{nodes:>6}" + "".join(f"{cells[p]:>12{fmt}}" for p in params))


def plot(record: dict[str, Any], out: str) -> list[str]:
    """scaling.png (measured speedup and efficiency against ranks, one line per threads) and
    scaling_model.png (the model's efficiency against nodes, one line per parameter count)."""
    plt = report.pyplot()
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.5))
    ranks = sorted({r["ranks"] for r in record["runs"]})
    for threads in sorted({r["threads"] for r in record["runs"]}):
        runs = sorted((r for r in record["runs"] if r["threads"] == threads),
                      key=lambda r: r["ranks"])
        x = [r["ranks"] for r in runs]
        left.plot(x, [r["speedup"] for r in runs], "o-", label=f"threads/rank = {threads}")
        right.plot(x, [r["efficiency"] for r in runs], "o-", label=f"threads/rank = {threads}")
    left.plot(ranks, [r / ranks[0] for r in ranks], "k--", label="ideal")
    right.axhline(1.0, color="k", linestyle="--", label="ideal")
    for ax, name in ((left, "speedup"), (right, "efficiency")):
        ax.set_xlabel("ranks")
        ax.set_ylabel(name)
        ax.set_xticks(ranks)
        ax.grid(True, alpha=0.3)
        ax.legend()
    fig.suptitle(f"{record['scaling']} scaling, {record['rows']} rows x {record['features']} "
                 "features")
    paths = [report.save_figure(fig, out, "scaling")]
    fig, ax = plt.subplots(figsize=(7, 4.5))
    table = record["model"]["table"]
    for params in sorted({r["params"] for r in table}):
        points = [r for r in table if r["params"] == params]
        ax.plot([r["nodes"] for r in points], [r["efficiency"] for r in points], "o-",
                label=f"{params:,} parameters")
    nodes = sorted({r["nodes"] for r in table})
    ax.set_xscale("log", base=2)
    ax.set_xticks(nodes, [str(n) for n in nodes])
    ax.set_xlabel("nodes")
    ax.set_ylabel("predicted efficiency")
    ax.set_ylim(0, 1.05)
    ax.set_title(f"alpha-beta model, {record['scaling']} scaling, {record['model']['rows']} rows")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    paths.append(report.save_figure(fig, out, "scaling_model"))
    return paths


def main(argv: list[str] | None = None) -> int:
    """`fastdp bench scaling`; returns the exit status."""
    parser = _parser()
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    for name in ("rows", "features", "steps"):
        if getattr(args, name) < 1:
            parser.error(f"--{name} must be >= 1, got {getattr(args, name)}")
    if args.worker is not None:
        return _worker(args)
    if args.scaling == "strong" and args.rows < max(args.np):
        parser.error(f"--rows must be >= the largest --np for strong scaling, got {args.rows}")
    if launched_by_mpi():
        parser.error("run it plainly: it launches mpiexec itself")
    try:
        record = run_suite(args)
    except (OSError, RuntimeError) as exc:
        print(f"fastdp bench scaling: error: {exc}", file=sys.stderr)
        return 1
    print_tables(record)
    paths = plot(record, args.out)
    print(f"wrote {report.write_json(args.out, 'scaling', record)}, {', '.join(paths)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
