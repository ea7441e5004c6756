"""The MPI communicator under mpiexec: buffer collectives, metadata, threads per rank, the
watchdog."""

import os
import re

import pytest

from fastdp import threads

pytestmark = pytest.mark.mpi


@pytest.mark.parametrize("n", [2, 3])
def test_collectives(mpirun, n):
    result = mpirun(n, """
import sys
import numpy as np
from fastdp import comm, kernels, threads
c = comm.world()
assert isinstance(c, comm.MPIComm)
buf = np.arange(4.0) * (c.rank + 1)
assert c.allreduce_sum_(buf) is buf
expected = np.arange(4.0) * sum(range(1, c.size + 1))
assert np.array_equal(buf, expected), buf
b = np.full(3, float(c.rank))
c.bcast_(b, root=c.size - 1)
assert np.array_equal(b, np.full(3, c.size - 1.0))
assert c.allgather_obj(("rank", c.rank)) == [("rank", r) for r in range(c.size)]
assert c.local_size == c.size  # every rank on this one node
used = threads.configure(c.local_size, environ={})
assert used == {"numba": threads.threads_per_rank(c.size)} | {"cython": threads.threads_per_rank(c.size)}
assert sys.excepthook is not sys.__excepthook__
try:
    comm.raise_if_any(c, "bad shard" if c.rank == 1 else None)
except ValueError as exc:
    caught = f"CAUGHT {c.rank} {exc}"
lines = c.allgather_obj([caught, f"OK {c.rank} {c.size} {used['numba']}"])
if c.rank == 0:
    print("\\n".join(line for pair in lines for line in pair))
""", timeout=60)
    assert result.returncode == 0, result.stderr
    assert len(result.lines("OK")) == n
    assert result.lines("CAUGHT") == [f"CAUGHT {r} rank 1: bad shard" for r in range(n)]
    per_rank = threads.threads_per_rank(n)
    assert all(line.endswith(f" {per_rank}") for line in result.lines("OK"))


def test_scatter_and_gather_rows_keep_the_order(mpirun):
    result = mpirun(3, """
import numpy as np
from fastdp import world
comm = world()
X = np.arange(7 * 2, dtype=np.float32).reshape(7, 2) if comm.rank == 0 else None
counts = [3, 0, 4]
mine = comm.scatter_rows(X, counts)
back = comm.gather_rows(mine * 10, counts, root=0)
everywhere = comm.gather_rows(np.full((counts[comm.rank], 2), comm.rank, np.int64), counts, root=None)
try:
    comm.scatter_rows(X, [1, 1, 1])
    error = None
except ValueError as exc:
    error = str(exc)
lines = comm.allgather_obj(f"RANK {comm.rank} {mine.dtype} {mine.tolist()} "
                           f"{None if back is None else back.ravel().tolist()} "
                           f"{everywhere[:, 0].tolist()} {error}")
if comm.rank == 0:
    print("\\n".join(lines), flush=True)
""", timeout=60)
    assert result.returncode == 0, result.stderr
    lines = result.lines("RANK")
    full = [float(v) * 10 for v in range(14)]
    error = "counts [1, 1, 1] do not split X of shape (7, 2) over 3 ranks"
    assert lines[0] == f"RANK 0 float32 [[0.0, 1.0], [2.0, 3.0], [4.0, 5.0]] {full} [0, 0, 0, 2, 2, 2, 2] {error}"
    assert lines[1] == f"RANK 1 float32 [] None [0, 0, 0, 2, 2, 2, 2] {error}"
    assert lines[2].startswith("RANK 2 float32 [[6.0, 7.0], [8.0, 9.0], [10.0, 11.0], [12.0, 13.0]] None")


@pytest.mark.parametrize("n", [2, 3])
def test_iallreduce_sums_in_flight_while_the_rank_computes(mpirun, n):
    """Several Iallreduces in flight at once, started in the same order on every rank, each
    buffer summed in place; test() drives them while the rank does other work."""
    result = mpirun(n, """
import numpy as np
from fastdp import comm
c = comm.world()
bufs = [np.arange(5_000.0) * (c.rank + 1) + chunk for chunk in range(4)]
requests = []
for chunk, buf in enumerate(bufs):
    requests.append(c.iallreduce_sum_(buf))
    np.linalg.norm(np.random.default_rng(chunk).standard_normal(200_000))  # work in between
    done = [request.test() for request in requests]
    assert all(type(flag) is bool for flag in done), done
for request in requests:
    assert request.wait() is None
assert all(request.test() for request in requests)  # complete stays complete
total = sum(range(1, c.size + 1))
ok = all(np.array_equal(buf, np.arange(5_000.0) * total + chunk * c.size)
         for chunk, buf in enumerate(bufs))
lines = c.allgather_obj(f"IALLREDUCE {c.rank} {ok}")
if c.rank == 0:
    print("\\n".join(lines))
""", timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.lines("IALLREDUCE") == [f"IALLREDUCE {r} True" for r in range(n)]


WATCHDOG_LINE = re.compile(r"^fastdp: watchdog: rank (\d+) has waited (\d+\.\d) s in (\w+) #(\d+)"
                           r"(?: \(past the [\d.]+ s limit: ranks [\d, -]+\))?"
                           r"; ranks not arrived: ([\d, -]+)(?: \(not answering: ([\d, -]+)\))?$")


def watchdog_warnings(stderr: str) -> list[tuple[int, float, str, int, str, str | None]]:
    """(waiting rank, seconds, kind, collective number, ranks not arrived, not answering) of each
    watchdog line on stderr; any other line that mentions the watchdog fails the test."""
    found = []
    for line in stderr.splitlines():
        if "watchdog" in line:
            match = WATCHDOG_LINE.match(line)
            assert match, line
            rank, seconds, kind, number, missing, silent = match.groups()
            found.append((int(rank), float(seconds), kind, int(number), missing, silent))
    return found


def test_watchdog_names_the_rank_that_has_not_arrived(mpirun):
    """FASTDP_WATCHDOG_SECONDS=1; one rank 3.5 s late to each of four collectives: rank 0 warns
    once per collective, naming the late rank (rank 0 itself included), and the results are
    right."""
    result = mpirun(3, """
import threading, time
import numpy as np
from fastdp import comm as fc
c = fc.world()
LATE = 3.5

def late(rank):
    if c.rank == rank:
        time.sleep(LATE)

assert c.watchdog_seconds == 1.0
assert [t.name for t in threading.enumerate()].count("fastdp-watchdog") == 1
buf = np.full(34, c.rank + 1.0)
late(1)
c.allreduce_sum_(buf)                                      # 1
late(2)
ranks = c.allgather_obj(c.rank)                            # 2
late(0)
word = c.bcast_obj("from 0" if c.rank == 0 else None)      # 3
late(1)
buf2 = np.arange(5.0)
c.iallreduce_sum_(buf2).wait()                             # 4
ok = (np.array_equal(buf, np.full(34, 6.0)) and ranks == [0, 1, 2] and word == "from 0"
      and np.array_equal(buf2, 3 * np.arange(5.0)))
lines = c.allgather_obj(f"WATCHED {c.rank} {ok}")          # 5
if c.rank == 0:
    print("\\n".join(lines), flush=True)
""", timeout=90, env=dict(os.environ, FASTDP_WATCHDOG_SECONDS="1"))
    assert result.returncode == 0, result.stderr
    assert result.lines("WATCHED") == [f"WATCHED {r} True" for r in range(3)]
    found = watchdog_warnings(result.stderr)
    assert [(kind, number, missing, silent) for _, _, kind, number, missing, silent in found] == [
        ("allreduce", 1, "1", None), ("allgather_obj", 2, "2", None), ("bcast_obj", 3, "0", None),
        ("iallreduce", 4, "1", None)], result.stderr
    for rank, seconds, kind, number, missing, _ in found:
        assert rank != int(missing) and 1.0 <= seconds < 3.5, found


def test_watchdog_says_a_stopped_rank_does_not_answer(mpirun):
    """Rank 1 stopped (SIGSTOP, 3 s, then SIGCONT from a helper): its watchdog thread cannot
    answer either; rank 0 names it as not answering, and the job then finishes right."""
    result = mpirun(2, """
import os, signal, subprocess
import numpy as np
from fastdp import comm as fc
fc.set_watchdog(1)
c = fc.world()
buf = np.full(34, c.rank + 1.0)
c.allreduce_sum_(buf)
if c.rank == 1:
    subprocess.Popen(["sh", "-c", f"sleep 3; kill -CONT {os.getpid()}"])
    os.kill(os.getpid(), signal.SIGSTOP)
c.allreduce_sum_(buf)
lines = c.allgather_obj(f"STOPPED {c.rank} {buf[0]}")
if c.rank == 0:
    print("\\n".join(lines), flush=True)
""", timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.lines("STOPPED") == ["STOPPED 0 6.0", "STOPPED 1 6.0"]
    found = watchdog_warnings(result.stderr)
    assert [(rank, kind, number, missing, silent) for rank, _, kind, number, missing, silent
            in found] == [(0, "allreduce", 2, "1", "1")], result.stderr


def test_watchdog_is_quiet_when_everyone_arrives_in_time(mpirun):
    """set_watchdog(2) before world(); ranks take turns being 0.2 s late to 30 collectives, then
    run 2000 quick ones: no warning. MPIComm(..., watchdog_seconds=) and set_watchdog(0) too."""
    result = mpirun(3, """
import threading, time
import numpy as np
from mpi4py import MPI
from fastdp import comm as fc

def watchdogs():
    return [t.name for t in threading.enumerate()].count("fastdp-watchdog")

fc.set_watchdog(2)
c = fc.world()
assert c.watchdog_seconds == 2.0 and watchdogs() == 1
buf = np.empty(34)
ok = True
for i in range(30):
    if c.rank == i % c.size:
        time.sleep(0.2)
    buf[:] = c.rank
    (c.allreduce_sum_, c.allgather_obj, c.bcast_obj)[i % 3](buf)
for i in range(2000):
    buf[:] = 1.0
    c.allreduce_sum_(buf)
    ok &= bool(buf[0] == 3.0)
other = fc.MPIComm(MPI.COMM_WORLD, watchdog_seconds=1.5)
assert other.watchdog_seconds == 1.5 and watchdogs() == 2
other.set_watchdog(0)
fc.set_watchdog(0)
assert c.watchdog_seconds == 0 and watchdogs() == 0
fc.set_watchdog(5)
assert c.watchdog_seconds == 5 and watchdogs() == 1
lines = c.allgather_obj(f"QUIET {c.rank} {ok} {c._count}")
if c.rank == 0:
    print("\\n".join(lines), flush=True)
""", timeout=90)
    assert result.returncode == 0, result.stderr
    assert result.lines("QUIET") == [f"QUIET {r} True 2030" for r in range(3)]
    assert "watchdog" not in result.stderr, result.stderr


@pytest.mark.parametrize("value", ["0", "-3", "soon"])
def test_watchdog_setting_from_the_environment(mpirun, tmp_path, value):
    """0: no watchdog thread; negative or non-numeric: ValueError naming the variable on every
    rank (before any collective), and a non-zero exit. Each rank's stderr goes to its own file:
    the two ranks' tracebacks interleave mid-line on a shared stderr."""
    result = mpirun(2, """
import threading
from fastdp import comm as fc
c = fc.world()
names = [t.name for t in threading.enumerate()]
lines = c.allgather_obj(f"OFF {c.rank} {c.watchdog_seconds} {names.count('fastdp-watchdog')}")
if c.rank == 0:
    print("\\n".join(lines), flush=True)
""", timeout=60, env=dict(os.environ, FASTDP_WATCHDOG_SECONDS=value),
                    mpiexec_args=("-errfile-pattern", str(tmp_path / "err.%r")))
    if value == "0":
        assert result.returncode == 0, result.stderr
        assert result.lines("OFF") == ["OFF 0 0.0 0", "OFF 1 0.0 0"]
    else:
        assert result.returncode != 0
        message = (f"ValueError: FASTDP_WATCHDOG_SECONDS must be a number of seconds >= 0 "
                   f"(0 turns the watchdog off), got '{value}'")
        for rank in range(2):
            err = (tmp_path / f"err.{rank}").read_text()
            assert err.count(message) == 1, err


def test_no_watchdog_below_mpi_thread_multiple(mpirun):
    """MPI initialized with MPI_THREAD_FUNNELED: no watchdog thread (rank 0 warns once), and the
    collectives work as before."""
    result = mpirun(2, """
import threading, warnings
import mpi4py
mpi4py.rc.thread_level = "funneled"
import numpy as np
from fastdp import comm as fc
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    c = fc.world()
buf = np.full(3, c.rank + 1.0)
c.allreduce_sum_(buf)
names = [t.name for t in threading.enumerate()]
lines = c.allgather_obj(f"FUNNELED {c.rank} {buf.tolist()} {names.count('fastdp-watchdog')} "
                        f"{[str(w.message) for w in caught]}")
if c.rank == 0:
    print("\\n".join(lines), flush=True)
""", timeout=60)
    assert result.returncode == 0, result.stderr
    lines = result.lines("FUNNELED")
    assert lines[1] == "FUNNELED 1 [3.0, 3.0, 3.0] 0 []"
    assert lines[0].startswith("FUNNELED 0 [3.0, 3.0, 3.0] 0 ['fastdp: no watchdog: its thread "
                               "needs MPI_THREAD_MULTIPLE, and MPI was initialized with thread "
                               "level 1"), lines[0]


def test_watchdog_threads_stop_before_an_explicit_mpi_finalize(mpirun):
    """MPI.Finalize() called by the program (not at exit) with watchdogs running, one waking
    every millisecond: MPI_Finalize stops them first (no MPI call after it, which MPICH answers
    by ending the process), and the process goes on and exits 0. The threads are daemons."""
    result = mpirun(2, """
import os, threading
import numpy as np
from mpi4py import MPI
from fastdp import comm as fc
fc.set_watchdog(0.004)
c = fc.world()
other = fc.MPIComm(MPI.COMM_WORLD, watchdog_seconds=60)
watchdogs = [t for t in threading.enumerate() if t.name == "fastdp-watchdog"]
buf = np.ones(4)
for _ in range(100):
    c.allreduce_sum_(buf)
MPI.Finalize()
alive = [t for t in watchdogs if t.is_alive()]
os.write(1, f"FINALIZED {c.rank} {len(watchdogs)} {[t.daemon for t in watchdogs]} {alive}\\n"
         .encode())  # one write: whole lines (no collective left to gather them with)
""", timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.lines("FINALIZED") == [f"FINALIZED {r} 2 [True, True] []" for r in range(2)]
    assert "MPI routine" not in result.stderr and "watchdog stopped" not in result.stderr, \
        result.stderr
