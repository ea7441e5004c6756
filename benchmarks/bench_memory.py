"""Peak memory of per-rank loading: each rank reads only its rows of a large .npy file.

    python benchmarks/bench_memory.py [--gib 2.0] [--features 31] [--ranks 2] [--dir /tmp]

Writes a float64 .npy file of about --gib GiB (features + 1 label column, written block by block,
so the writer never holds it either), then under `mpiexec -n --ranks` each rank reads its rows
with fastdp.io.read_rows and runs three steps of data-parallel gradient descent on them, and
reports its peak resident memory (getrusage ru_maxrss) against the file's size. The issue's
target: below 0.75x the file size on 2 ranks. The file is removed afterwards.
"""

import argparse
import os
import subprocess
import sys
import tempfile
import textwrap

import numpy as np

from fastdp.demo import find_mpiexec

SCRIPT = """
import resource, sys
from fastdp import io, train, world
comm = world()
shard = io.read_rows(sys.argv[1], rank=comm.rank, size=comm.size)
train.fit(shard.X, shard.y, solver="gd", learning_rate=0.1, max_iter=3, tol=0)
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # KiB on Linux
for line in comm.allgather_obj(f"{comm.rank} {len(shard.rows)} {shard.X.nbytes} {peak}"):
    if comm.rank == 0:
        print(line, flush=True)
"""


def write_npy(path: str, rows: int, columns: int, block: int = 1 << 16) -> None:
    out = np.lib.format.open_memmap(path, mode="w+", dtype=np.float64, shape=(rows, columns))
    rng = np.random.default_rng(0)
    for start in range(0, rows, block):
        stop = min(rows, start + block)
        out[start:stop] = rng.standard_normal((stop - start, columns))
        out.flush()
    del out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gib", type=float, default=2.0)
    parser.add_argument("--features", type=int, default=31)
    parser.add_argument("--ranks", type=int, default=2)
    parser.add_argument("--dir", default=tempfile.gettempdir())
    args = parser.parse_args()
    columns = args.features + 1
    rows = int(args.gib * 2**30) // (8 * columns)
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        path, script = os.path.join(tmp, "big.npy"), os.path.join(tmp, "run.py")
        write_npy(path, rows, columns)
        with open(script, "w") as f:
            f.write(textwrap.dedent(SCRIPT))
        size = os.path.getsize(path)
        done = subprocess.run([find_mpiexec(), "-n", str(args.ranks), sys.executable, script, path],
                              capture_output=True, text=True, timeout=1200)
        if done.returncode:
            sys.exit(done.stderr)
    print(f"{path.rsplit(os.sep, 1)[-1]}: {rows} rows x {columns} float64 columns, "
          f"{size / 2**30:.2f} GiB, {args.ranks} ranks")
    print(f"{'rank':>4} {'rows':>10} {'X (GiB)':>8} {'peak RSS (GiB)':>15} {'x file':>7}")
    for line in done.stdout.split("\n"):
        if line.strip():
            rank, n, nbytes, peak = (int(v) for v in line.split())
            print(f"{rank:>4} {n:>10} {nbytes / 2**30:>8.2f} {peak / 2**30:>15.2f} {peak / size:>7.2f}")


if __name__ == "__main__":
    main()
