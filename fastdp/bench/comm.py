"""`fastdp bench comm`: Allreduce time against message size, bare mpi4py against fastdp's
communicator, and the latency alpha and inverse bandwidth beta fitted to it
(fastdp.bench.alphabeta).

Started plainly, it relaunches itself as `mpiexec -n NP python -m fastdp.bench.comm ...`. Under
mpiexec, for each size every rank times, interleaved and each after an MPI Barrier, the bare
`MPI.COMM_WORLD.Allreduce(MPI.IN_PLACE, buf, op=MPI.SUM)` and fastdp's `comm.allreduce_sum_(buf)`
of a float64 buffer; a call's time is the slowest rank's. Rank 0 prints the table and writes
comm.json and comm.png into --out.

The issue target: fastdp's per-step communication (one `allreduce_sum_` of the step's buffer)
within TARGET_RATIO of a bare Allreduce of the same buffer.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from typing import Any

import numpy as np

from ..comm import Comm, launched_by_mpi, world
from ..demo import find_mpiexec
from . import alphabeta, report

TARGET_RATIO = 1.1
DEFAULT_SIZES = tuple(4**k for k in range(12))  # float64 values: 1 .. 2**22 (8 B .. 32 MiB)
DEFAULT_REPEATS = 200
MIN_REPEATS = 5
BYTES_PER_SIZE = 2**30  # at most this many bytes reduced per size and variant: fewer large calls
WARMUP_CALLS = 3
LAUNCH_TIMEOUT_S = 1800


def int_list(text: str) -> list[int]:
    """Comma-separated integers >= 1 (an argparse type), e.g. "1,2,4"."""
    try:
        values = [int(part) for part in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected comma-separated integers, got {text!r}") from None
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError(f"expected integers >= 1, got {text!r}")
    return values


def run_under_mpiexec(ranks: int, module: str, argv: Sequence[str],
                      env: dict[str, str] | None = None,
                      timeout: float = LAUNCH_TIMEOUT_S) -> int:
    """Run `python -m module argv...` on ranks ranks under mpiexec (fastdp.demo.find_mpiexec), in
    its own process group; returns its exit status. OSError when there is no mpiexec;
    TimeoutError (after killing the whole group) when it runs past timeout seconds."""
    mpiexec = find_mpiexec()
    if mpiexec is None:
        raise OSError("mpiexec not found; install an MPI runtime with pip install 'fastdp[mpi]' "
                      "(or put a system MPI on PATH)")
    cmd = [mpiexec, "-n", str(ranks), sys.executable, "-m", module, *argv]
    proc = subprocess.Popen(cmd, env=env, start_new_session=True)
    try:
        return proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        raise TimeoutError(f"timed out after {timeout} s: {' '.join(cmd)}") from None


def repeats_for(n_bytes: int, repeats: int) -> int:
    """Timed calls of one variant for an n_bytes message: repeats, fewer for large messages (at
    most BYTES_PER_SIZE bytes in all), never fewer than MIN_REPEATS."""
    return max(MIN_REPEATS, min(repeats, BYTES_PER_SIZE // max(n_bytes, 1)))


def measure(comm: Comm, sizes: Sequence[int], repeats: int) -> list[dict[str, Any]]:
    """Collective, on >= 2 ranks under MPI, comm being fastdp.comm.world(): time the bare
    MPI.COMM_WORLD Allreduce and comm.allreduce_sum_ of float64 buffers of each size (values),
    interleaved (alternating which goes first), each call after an MPI Barrier; a call's time is
    the slowest rank's.

    Returns, the same on every rank, per size {"values", "bytes", "repeats", "bare_median_s",
    "bare_min_s", "fastdp_median_s", "fastdp_min_s"}.
    """
    if comm.size < 2:
        raise ValueError(f"comm must have >= 2 ranks to measure an Allreduce, got {comm.size}")
    from mpi4py import MPI

    mpi = MPI.COMM_WORLD
    results = []
    for values in sizes:
        buf = np.zeros(values)  # zeros: the sums stay 0 however often they are taken
        n = repeats_for(buf.nbytes, repeats)
        for _ in range(WARMUP_CALLS):
            mpi.Allreduce(MPI.IN_PLACE, buf, op=MPI.SUM)
            comm.allreduce_sum_(buf)
        times = np.empty((2, n))
        for i in range(n):
            for variant in ((0, 1) if i % 2 == 0 else (1, 0)):
                mpi.Barrier()
                if variant == 0:
                    start = time.perf_counter()
                    mpi.Allreduce(MPI.IN_PLACE, buf, op=MPI.SUM)
                    times[0, i] = time.perf_counter() - start
                else:
                    start = time.perf_counter()
                    comm.allreduce_sum_(buf)
                    times[1, i] = time.perf_counter() - start
        mpi.Allreduce(MPI.IN_PLACE, times, op=MPI.MAX)
        results.append({"values": int(values), "bytes": int(buf.nbytes), "repeats": n,
                        "bare_median_s": float(np.median(times[0])),
                        "bare_min_s": float(times[0].min()),
                        "fastdp_median_s": float(np.median(times[1])),
                        "fastdp_min_s": float(times[1].min())})
    return results


def summarize(measured: list[dict[str, Any]], ranks: int) -> dict[str, Any]:
    """The suite's record: the measurements with the fastdp/bare ratio and the model's time, the
    alpha and beta fitted to the bare medians, and whether the target ratio is met."""
    alpha, beta = alphabeta.fit([m["bytes"] for m in measured],
                                [m["bare_median_s"] for m in measured], ranks)
    sizes = [m | {"ratio": m["fastdp_median_s"] / m["bare_median_s"],
                  "model_s": alphabeta.allreduce_seconds(m["bytes"], ranks, alpha, beta)}
             for m in measured]
    worst = max(sizes, key=lambda m: m["ratio"])
    return {"ranks": ranks, "sizes": sizes, "alpha_s": alpha, "beta_s_per_byte": beta,
            "model": "T(n) = 2*ceil(log2 p)*alpha + 2*(p-1)/p*n*beta (n bytes, p ranks)",
            "target": {"ratio": TARGET_RATIO, "met": worst["ratio"] <= TARGET_RATIO,
                       "worst_ratio": worst["ratio"], "worst_bytes": worst["bytes"]}}


def print_table(record: dict[str, Any]) -> None:
    """The suite's table, the fitted parameters and the target, on stdout."""
    header = (f"{'values':>9}{'bytes':>11}{'repeats':>8}{'bare µs':>11}{'fastdp µs':>11}"
              f"{'fastdp/bare':>13}{'model µs':>11}")
    print(f"fastdp bench comm: Allreduce(SUM, IN_PLACE) of float64 buffers on {record['ranks']} "
          "ranks; median over timed calls, each call the slowest rank's time")
    print(report.describe())
    print(header)
    print("-" * len(header))
    for m in record["sizes"]:
        print(f"{m['values']:>9}{m['bytes']:>11}{m['repeats']:>8}{m['bare_median_s'] * 1e6:>11.2f}"
              f"{m['fastdp_median_s'] * 1e6:>11.2f}{m['ratio']:>13.3f}{m['model_s'] * 1e6:>11.2f}")
    beta = record["beta_s_per_byte"]
    bandwidth = f"{1e-9 / beta:.2f} GB/s" if beta > 0 else "unbounded"
    print(f"fit to the bare medians: {record['model']}; alpha = {record['alpha_s'] * 1e6:.3f} µs, "
          f"beta = {beta * 1e9:.4f} ns/byte ({bandwidth})")
    target = record["target"]
    print(f"target: fastdp per-step communication within {target['ratio']}x of a bare Allreduce of "
          f"the same buffer: {'met' if target['met'] else 'NOT met'} "
          f"(worst fastdp/bare {target['worst_ratio']:.3f} at {target['worst_bytes']} bytes)")


def plot(record: dict[str, Any], out: str) -> str:
    """comm.png: Allreduce time against message size, log-log: both variants' medians and the
    fitted model; returns the path."""
    plt = report.pyplot()
    sizes = np.array([m["bytes"] for m in record["sizes"]], dtype=np.float64)
    line = np.geomspace(sizes.min(), sizes.max(), 200)
    model = [alphabeta.allreduce_seconds(n, record["ranks"], record["alpha_s"],
                                         record["beta_s_per_byte"]) * 1e6 for n in line]
    fig, ax = plt.subplots(figsize=(7, 4.5))
    ax.loglog(sizes, [m["bare_median_s"] * 1e6 for m in record["sizes"]], "o", label="bare mpi4py")
    ax.loglog(sizes, [m["fastdp_median_s"] * 1e6 for m in record["sizes"]], "x",
              label="fastdp allreduce_sum_")
    ax.loglog(line, model, "-", label=f"model: α={record['alpha_s'] * 1e6:.2f} µs, "
                                      f"β={record['beta_s_per_byte'] * 1e9:.3f} ns/B")
    ax.set_xlabel("message size (bytes)")
    ax.set_ylabel("Allreduce time (µs, median)")
    ax.set_title(f"Allreduce on {record['ranks']} ranks")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    return report.save_figure(fig, out, "comm")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="fastdp bench comm",
        description="Allreduce time against message size (bare mpi4py and fastdp), with the "
                    "latency and bandwidth fitted to it; relaunches itself under mpiexec.")
    parser.add_argument("--out", default=report.DEFAULT_OUT, help="directory for comm.json/.png")
    parser.add_argument("--np", type=int, default=2, help="ranks to launch (>= 2; default 2)")
    parser.add_argument("--sizes", type=int_list, default=list(DEFAULT_SIZES),
                        help="message sizes in float64 values, comma-separated "
                             "(default 1,4,16,...,4194304)")
    parser.add_argument("--repeats", type=int, default=DEFAULT_REPEATS,
                        help=f"timed calls per size and variant (default {DEFAULT_REPEATS}; "
                             f"fewer for large messages, at least {MIN_REPEATS})")
    return parser


def main(argv: list[str] | None = None) -> int:
    """`fastdp bench comm`; returns the exit status."""
    argv = sys.argv[1:] if argv is None else argv
    parser = _parser()
    args = parser.parse_args(argv)
    if args.np < 2:
        parser.error(f"--np must be >= 2 (an Allreduce needs two ranks), got {args.np}")
    if args.repeats < 1:
        parser.error(f"--repeats must be >= 1, got {args.repeats}")
    if not launched_by_mpi():
        try:
            return run_under_mpiexec(args.np, "fastdp.bench.comm", argv)
        except OSError as exc:
            print(f"fastdp bench comm: error: {exc}", file=sys.stderr)
            return 2
    comm = world()
    if comm.size < 2:
        print("fastdp bench comm: error: run it plainly (it launches mpiexec -n NP) or under "
              f"mpiexec with >= 2 ranks, not {comm.size}", file=sys.stderr)
        return 2
    measured = measure(comm, args.sizes, args.repeats)
    if comm.rank == 0:
        record = summarize(measured, comm.size)
        print_table(record)
        print(f"wrote {report.write_json(args.out, 'comm', record)} and {plot(record, args.out)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
