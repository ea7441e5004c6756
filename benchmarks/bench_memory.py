"""Peak memory per rank against the input file's size: per-rank loading, and streaming prediction.

    python benchmarks/bench_memory.py [--part read|predict|both] [--gib 2.0] [--features 31]
                                      [--ranks 2] [--chunk-rows 65536] [--row-group-rows 131072]
                                      [--dir /tmp]

Each part writes its input of about --gib GiB block by block (so the writer never holds it), runs
`mpiexec -n --ranks` on it, and prints every rank's peak resident memory (getrusage ru_maxrss)
against the input file's size. The inputs live in a temporary directory under --dir, removed
after each part.

read:    a float64 .npy file (--features columns + 1 label column); each rank reads its rows with
         fastdp.data.read_rows and runs three steps of data-parallel gradient descent on them.
         Target (the issue's): each rank's peak below 0.75x the file size on 2 ranks.
predict: a Parquet file of --features float64 columns (no label), row groups of --row-group-rows
         rows. A ridge model is first trained serially (`fastdp train`) on a small .npy file of the
         same width; then `fastdp predict --input big.parquet --output preds.parquet` runs under
         mpiexec (through fastdp.cli.main in a wrapper that reports each rank's peak). predict
         streams the input: chunks of --chunk-rows rows go round-robin to the ranks and rank 0
         writes the predictions in order, so no rank holds more than about one chunk of the input
         (plus the row groups the Parquet reader decodes and keeps): the peak should not grow
         with the file. Printed beside it: each rank's peak after imports, before predict starts
         (the baseline), and the chunk and row group sizes in bytes. The output is checked: as
         many rows as the input (Parquet metadata), and its first and last 1000 predictions equal
         the model's predictions of the same input rows.
"""

import argparse
import os
import subprocess
import sys
import tempfile
import textwrap
import time

import numpy as np

from fastdp.cli import CHUNK_ROWS
from fastdp.demo import find_mpiexec

READ_SCRIPT = """
import resource, sys
from fastdp import data, train, world
comm = world()
shard = data.read_rows(sys.argv[1], rank=comm.rank, size=comm.size)
train.fit(shard.X, shard.y, solver="gd", learning_rate=0.1, max_iter=3, tol=0)
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # KiB on Linux
for line in comm.allgather_obj(f"{comm.rank} {len(shard.rows)} {shard.X.nbytes} {peak}"):
    if comm.rank == 0:
        print(line, flush=True)
"""

PREDICT_SCRIPT = """
import resource, sys
from fastdp import cli, world
comm = world()
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # KiB on Linux
status = cli.main(sys.argv[1:])
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
for line in comm.allgather_obj(f"rss {comm.rank} {status} {before} {peak}"):
    if comm.rank == 0:
        print(line, flush=True)
sys.exit(status)
"""

CHECK_ROWS = 1000  # predictions compared with the model's at each end of the output


def write_npy(path: str, rows: int, columns: int, block: int = 1 << 16) -> None:
    out = np.lib.format.open_memmap(path, mode="w+", dtype=np.float64, shape=(rows, columns))
    rng = np.random.default_rng(0)
    for start in range(0, rows, block):
        stop = min(rows, start + block)
        out[start:stop] = rng.standard_normal((stop - start, columns))
        out.flush()
    del out


def write_parquet(path: str, rows: int, features: int, group_rows: int) -> None:
    """rows x features float64 columns f0, f1, ..., one row group of group_rows rows at a time.
    Without dictionary encoding: a column chunk of distinct random doubles would otherwise be
    dictionary-encoded whole (8 bytes each plus an index), a file ~1.3x the data's size."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    schema = pa.schema([(f"f{j}", pa.float64()) for j in range(features)])
    rng = np.random.default_rng(1)
    with pq.ParquetWriter(path, schema, use_dictionary=False) as writer:
        for start in range(0, rows, group_rows):
            block = rng.standard_normal((features, min(rows, start + group_rows) - start))
            writer.write_table(pa.Table.from_arrays(list(block), schema=schema),
                               row_group_size=group_rows)


def parquet_rows(path: str, first: int, count: int) -> np.ndarray:
    """Rows first ... first + count - 1 of a Parquet file of numeric columns, as a 2-D float64
    array, reading only the row groups they overlap."""
    import pyarrow.parquet as pq

    file = pq.ParquetFile(path)
    meta, parts, start = file.metadata, [], 0
    for g in range(meta.num_row_groups):
        stop = start + meta.row_group(g).num_rows
        if start < first + count and first < stop:
            table = file.read_row_group(g)
            lo, hi = max(first, start) - start, min(first + count, stop) - start
            parts.append(np.column_stack([c.to_numpy() for c in table.slice(lo, hi - lo).columns]))
        start = stop
    return np.concatenate(parts)


def run_ranks(args: argparse.Namespace, script: str, argv: list[str]) -> tuple[str, float]:
    """stdout of `mpiexec -n ranks python script argv` and its wall time; exits on failure."""
    began = time.perf_counter()
    done = subprocess.run([find_mpiexec(), "-n", str(args.ranks), sys.executable, script, *argv],
                          capture_output=True, text=True, timeout=1200)
    if done.returncode:
        sys.exit(f"{script} failed (exit status {done.returncode}):\n{done.stdout}{done.stderr}")
    return done.stdout, time.perf_counter() - began


def write_script(directory: str, name: str, text: str) -> str:
    path = os.path.join(directory, name)
    with open(path, "w") as f:
        f.write(textwrap.dedent(text))
    return path


def part_read(args: argparse.Namespace) -> None:
    columns = args.features + 1
    rows = int(args.gib * 2**30) // (8 * columns)
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        path = os.path.join(tmp, "big.npy")
        write_npy(path, rows, columns)
        size = os.path.getsize(path)
        out, seconds = run_ranks(args, write_script(tmp, "read.py", READ_SCRIPT), [path])
    print(f"read: big.npy, {rows} rows x {columns} float64 columns, {size / 2**30:.2f} GiB, "
          f"{args.ranks} ranks, read_rows + 3 GD steps ({seconds:.1f} s)")
    print(f"{'rank':>4} {'rows':>10} {'X (GiB)':>8} {'peak RSS (GiB)':>15} {'x file':>7}")
    for line in out.split("\n"):
        if line.strip():
            rank, n, nbytes, peak = (int(v) for v in line.split())
            print(f"{rank:>4} {n:>10} {nbytes / 2**30:>8.2f} {peak / 2**30:>15.2f} "
                  f"{peak / size:>7.2f}")
    print("target: < 0.75x the file size per rank")


def part_predict(args: argparse.Namespace) -> None:
    import pyarrow.parquet as pq

    import fastdp

    rows = int(args.gib * 2**30) // (8 * args.features)
    fastdp_exe = os.path.join(os.path.dirname(sys.executable), "fastdp")
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        small, model_path = os.path.join(tmp, "small.npy"), os.path.join(tmp, "m.fdp")
        big, preds = os.path.join(tmp, "big.parquet"), os.path.join(tmp, "preds.parquet")
        rng = np.random.default_rng(2)
        X = rng.standard_normal((20_000, args.features))
        y = X @ rng.standard_normal(args.features) + 0.5 + 0.1 * rng.standard_normal(len(X))
        np.save(small, np.column_stack([X, y]))
        trained = subprocess.run([fastdp_exe, "train", "--data", small, "--model", "ridge",
                                  "--output", model_path], capture_output=True, text=True,
                                 timeout=600)
        if trained.returncode:
            sys.exit(f"fastdp train failed:\n{trained.stdout}{trained.stderr}")
        write_parquet(big, rows, args.features, args.row_group_rows)
        size = os.path.getsize(big)
        script = write_script(tmp, "predict.py", PREDICT_SCRIPT)
        out, seconds = run_ranks(args, script, [
            "predict", "--model", model_path, "--input", big, "--output", preds,
            "--chunk-rows", str(args.chunk_rows)])
        written = pq.ParquetFile(preds).metadata.num_rows
        if written != rows:
            sys.exit(f"{preds}: {written} rows, the input has {rows}")
        model = fastdp.load(model_path)
        worst = 0.0
        for first in (0, max(0, rows - CHECK_ROWS)):
            count = min(CHECK_ROWS, rows - first)
            expected = model.predict(parquet_rows(big, first, count))
            got = parquet_rows(preds, first, count)[:, 0]
            if not np.allclose(got, expected, rtol=1e-12, atol=1e-12):
                sys.exit(f"{preds}: rows {first}..{first + count - 1} differ from the model's "
                         f"predictions (max |diff| {np.max(np.abs(got - expected)):.3g})")
            worst = max(worst, float(np.max(np.abs(got - expected))))
    chunk_bytes = args.chunk_rows * args.features * 8
    group_bytes = args.row_group_rows * args.features * 8
    print(f"predict: big.parquet, {rows} rows x {args.features} float64 columns, "
          f"{size / 2**30:.2f} GiB ({rows * args.features * 8 / 2**30:.2f} GiB as float64), "
          f"{args.ranks} ranks ({seconds:.1f} s)")
    print(f"chunks of {args.chunk_rows} rows = {chunk_bytes / 2**20:.1f} MiB; row groups of "
          f"{args.row_group_rows} rows = {group_bytes / 2**20:.1f} MiB; output {written} rows, "
          f"first and last {CHECK_ROWS} equal the model's predictions (max |diff| {worst:.3g})")
    print(f"{'rank':>4} {'baseline (GiB)':>15} {'peak RSS (GiB)':>15} {'x file':>7} "
          f"{'peak - baseline (MiB)':>22}")
    for line in out.split("\n"):
        if line.startswith("rss "):
            rank, _, before, peak = (int(v) for v in line.split()[1:])
            print(f"{rank:>4} {before / 2**30:>15.2f} {peak / 2**30:>15.2f} {peak / size:>7.3f} "
                  f"{(peak - before) / 2**20:>22.1f}")
    print("target: peak far below the file size, and not growing with it: about the baseline "
          "plus a few chunks and row groups")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--part", choices=("read", "predict", "both"), default="both")
    parser.add_argument("--gib", type=float, default=2.0)
    parser.add_argument("--features", type=int, default=31)
    parser.add_argument("--ranks", type=int, default=2)
    parser.add_argument("--chunk-rows", type=int, default=CHUNK_ROWS,
                        help="fastdp predict --chunk-rows")
    parser.add_argument("--row-group-rows", type=int, default=1 << 17,
                        help="rows per row group of the predict part's Parquet input")
    parser.add_argument("--dir", default=tempfile.gettempdir())
    args = parser.parse_args()
    if args.part in ("read", "both"):
        part_read(args)
    if args.part == "both":
        print()
    if args.part in ("predict", "both"):
        part_predict(args)


if __name__ == "__main__":
    main()
