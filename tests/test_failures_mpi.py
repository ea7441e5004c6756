"""A failing rank ends the job under mpiexec, fast and loudly; it never hangs (issue 6).

- An uncaught exception on one rank (fastdp's exception hook: traceback on stderr prefixed by the
  rank, then MPI_Abort) ends every process within EXCEPTION_DEADLINE_S of the raise, with a
  non-zero exit status.
- A rank killed by SIGKILL (no Python code runs) is MPICH hydra's to handle: it tears the job
  down at once ("BAD TERMINATION", exit status 9) by default, within SIGKILL_DEADLINE_S whether
  the survivors wait in a collective or compute. With -disable-auto-cleanup a rank blocked in a
  collective with the dead one waits until MPICH's network layer notices (unbounded in practice);
  the watchdog's abort limit (FASTDP_WATCHDOG_ABORT_SECONDS) bounds it, as it bounds any hang.

Times are measured from a timestamp the failing rank writes just before it fails to the moment
the mpiexec subprocess is over (its pipes closed: mpiexec, its proxies and every rank gone), and
every rank's pid is checked to be gone. Pids and timestamps go to a file per rank, not through
hydra: a job torn down by a kill can lose the output hydra had not forwarded yet.
"""

from __future__ import annotations

import os
import re
import tempfile
import textwrap
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.mpi

EXCEPTION_DEADLINE_S = 10.0
SIGKILL_DEADLINE_S = 30.0
LAUNCH_TIMEOUT_S = 90.0  # a hang fails the test after this (and every process of the job is killed)

PRELUDE = """
import os, signal, sys, time
import numpy as np
from fastdp import world
comm = world()
MARKS = os.open(f"{os.environ['MARKS']}.{comm.rank}", os.O_WRONLY | os.O_CREAT | os.O_APPEND)
os.write(MARKS, f"PID {comm.rank} {os.getpid()}\\n".encode())  # one write: whole lines
comm.barrier()  # every rank has written its pid

def mark(what):  # the failing rank's timestamp, just before it fails (a kill cannot lose it)
    os.write(MARKS, f"{what} {time.time()!r}\\n".encode())
"""


def launch(mpirun, n: int, code: str, mpiexec_args: tuple[str, ...] = (), **env: str):
    """Run PRELUDE and code on n ranks with the mpirun fixture (a hang fails the test after
    LAUNCH_TIMEOUT_S and kills every process of the job), with extra mpiexec options and
    environment variables; returns (returncode, stdout followed by the ranks' PID and mark lines,
    stderr, the time.time() at which the job was over)."""
    with tempfile.TemporaryDirectory() as marks:
        result = mpirun(n, textwrap.dedent(PRELUDE) + textwrap.dedent(code), timeout=LAUNCH_TIMEOUT_S,
                        env=dict(os.environ, MARKS=str(Path(marks) / "rank"), **env),
                        mpiexec_args=mpiexec_args)
        written = "".join(path.read_text() for path in sorted(Path(marks).iterdir()))
    return result.returncode, result.stdout.rstrip("\n") + "\n" + written, result.stderr, result.ended


KILLED_IN_ALLREDUCE = """
buf = np.zeros(34)
for step in range(10**9):
    if comm.rank == 1 and step == 50:
        time.sleep(1.0)  # rank 0 is blocked in the next Allreduce by now
        mark("KILL")
        os.kill(os.getpid(), signal.SIGKILL)
    comm.allreduce_sum_(buf)
"""


def rank_pids(stdout: str) -> list[int]:
    return [int(pid) for pid in re.findall(r"^PID \d+ (\d+)$", stdout, flags=re.M)]


def timestamp(stdout: str, what: str) -> float:
    found = re.findall(rf"^{what} (\S+)$", stdout, flags=re.M)
    assert len(found) == 1, stdout
    return float(found[0])


def alive(pid: int) -> bool:
    """Is the process running (not gone, not a zombie awaiting its reaper)?"""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] not in ("Z", "X")
    except (FileNotFoundError, ProcessLookupError):
        return False


def assert_all_gone(stdout: str, n: int, by: float) -> None:
    """Every rank's process has ended by the time.time() `by` (the launcher can be gone a moment
    before the rank that called MPI_Abort has finished exiting)."""
    pids = rank_pids(stdout)
    assert len(pids) == n, stdout
    while any(alive(pid) for pid in pids) and time.time() < by:
        time.sleep(0.05)
    assert not [pid for pid in pids if alive(pid)], f"rank processes alive after the deadline: {pids}"


@pytest.mark.parametrize("n", [2, 3])
def test_exception_on_one_rank_while_the_others_wait_ends_every_rank_within_10_s(mpirun, n):
    code, out, err, ended = launch(mpirun, n, """
buf = np.ones(34)
comm.allreduce_sum_(buf)
if comm.rank == 1:
    time.sleep(0.5)  # the others are blocked in the next Allreduce by now
    mark("RAISE")
    raise RuntimeError("boom on rank 1 while the others wait")
comm.allreduce_sum_(buf)
print("FINISHED", comm.rank, flush=True)
""")
    seconds = ended - timestamp(out, "RAISE")
    print(f"{n} ranks: job over {seconds:.2f} s after the raise")
    assert code != 0
    assert seconds < EXCEPTION_DEADLINE_S, (seconds, out, err)
    assert "FINISHED" not in out
    assert "[rank 1] Traceback (most recent call last):" in err, err
    assert "[rank 1] RuntimeError: boom on rank 1 while the others wait" in err, err
    assert re.search(r"\[rank 1\]   File \".*script_\d\.py\", line \d+, in <module>", err), err
    assert "[rank 1] fastdp: uncaught exception, aborting all ranks (MPI_Abort)" in err
    assert_all_gone(out, n, timestamp(out, "RAISE") + EXCEPTION_DEADLINE_S)


def test_exception_in_fit_on_one_rank_ends_every_rank_within_10_s(mpirun):
    code, out, err, ended = launch(mpirun, 2, """
from fastdp import partition, synthetic
from fastdp.train import fit

X, y = synthetic.linear_regression(2000, 4, partition.contiguous_range(2000, 2, comm.rank))

def callback(step, theta, objective):
    if comm.rank == 1 and step == 5:
        mark("RAISE")
        raise ValueError("callback failed at step 5 on rank 1")

fit(X, y, solver="sgd", batch_size=64, learning_rate=0.01, max_iter=1_000_000, tol=0,
    callback=callback)
print("FINISHED", comm.rank, flush=True)
""")
    seconds = ended - timestamp(out, "RAISE")
    print(f"fit: job over {seconds:.2f} s after the raise")
    assert code != 0
    assert seconds < EXCEPTION_DEADLINE_S, (seconds, out, err)
    assert "FINISHED" not in out
    assert "[rank 1] ValueError: callback failed at step 5 on rank 1" in err, err
    assert re.search(r"\[rank 1\]   File .*, in callback", err), err
    assert re.search(r"\[rank 1\]   File .*train\.py\", line \d+, in fit", err), err
    assert "[rank 1] fastdp: uncaught exception, aborting all ranks (MPI_Abort)" in err
    assert_all_gone(out, 2, timestamp(out, "RAISE") + EXCEPTION_DEADLINE_S)


def test_sigkill_of_one_rank_while_another_waits_in_allreduce_ends_the_job(mpirun):
    """Rank 1 dies after 50 steps while rank 0 is blocked in the next Allreduce: hydra (default
    options) ends the job at once."""
    code, out, err, ended = launch(mpirun, 2, KILLED_IN_ALLREDUCE)
    seconds = ended - timestamp(out, "KILL")
    print(f"SIGKILL: job over {seconds:.2f} s after it")
    assert code != 0
    assert seconds < SIGKILL_DEADLINE_S, (seconds, out, err)
    assert "BAD TERMINATION" in out + err and "Killed (signal 9)" in out + err, (out, err)
    assert_all_gone(out, 2, timestamp(out, "KILL") + SIGKILL_DEADLINE_S)


@pytest.mark.parametrize("warn", ["2", "0"])
def test_sigkill_under_disable_auto_cleanup_ends_the_job_by_the_abort_limit(mpirun, warn):
    """mpiexec -disable-auto-cleanup: hydra leaves rank 0 blocked in its Allreduce with the dead
    rank until MPICH's network layer notices (often at once, else 10 to 20 s, seen over 60 s).
    FASTDP_WATCHDOG_ABORT_SECONDS=5 bounds it: the job ends within about 6 s whichever comes,
    with warnings after 2 s or none."""
    code, out, err, ended = launch(mpirun, 2, KILLED_IN_ALLREDUCE, ("-disable-auto-cleanup",),
                                   FASTDP_WATCHDOG_SECONDS=warn, FASTDP_WATCHDOG_ABORT_SECONDS="5")
    seconds = ended - timestamp(out, "KILL")
    how = "by the abort limit" if "aborting all ranks" in err else "by MPICH"
    print(f"SIGKILL, -disable-auto-cleanup: job over {seconds:.2f} s after it ({how})")
    assert code != 0
    assert seconds < 5 + 1 + 3, (seconds, out, err)  # abort limit, grace, wake-ups and teardown
    if how == "by the abort limit":
        assert re.search(r"^\[rank 0\] fastdp: watchdog: waited [5-9]\.\d s in allreduce #\d+, "
                         r"longer than the abort limit \(FASTDP_WATCHDOG_ABORT_SECONDS\) of 5 s: "
                         r"aborting all ranks \(MPI_Abort\)$", err, flags=re.M), err
        warned = re.findall(r"^fastdp: watchdog: rank 0 has waited \d\.\d s in allreduce #\d+; "
                            r"ranks not arrived: 1 \(not answering: 1\)$", err, flags=re.M)
        assert len(warned) == (warn != "0"), err
    assert_all_gone(out, 2, timestamp(out, "KILL") + SIGKILL_DEADLINE_S)


def test_abort_limit_ends_a_job_whose_rank_hangs(mpirun):
    """Rank 1 hangs (sleeps for an hour) before an Allreduce: with FASTDP_WATCHDOG_SECONDS=1 rank
    0 names it, and with FASTDP_WATCHDOG_ABORT_SECONDS=3 the waiting ranks end the job."""
    code, out, err, ended = launch(mpirun, 3, """
buf = np.ones(34)
comm.allreduce_sum_(buf)
if comm.rank == 1:
    mark("HANG")
    time.sleep(3600)
comm.allreduce_sum_(buf)
print("FINISHED", comm.rank, flush=True)
""", FASTDP_WATCHDOG_SECONDS="1", FASTDP_WATCHDOG_ABORT_SECONDS="3")
    seconds = ended - timestamp(out, "HANG")
    print(f"hung rank, abort limit 3 s: job over {seconds:.2f} s after the hang began")
    assert code != 0
    assert 3 < seconds < 3 + 1 + 3, (seconds, out, err)
    assert "FINISHED" not in out
    # barrier #1 (the prelude), allreduce #2, then the one rank 1 never reaches: #3
    assert re.search(r"^fastdp: watchdog: rank [02] has waited \d\.\d s in allreduce #3"
                     r"( \(past the 1 s limit: ranks 0, 2\))?; ranks not arrived: 1$", err,
                     flags=re.M), err
    assert re.search(r"^\[rank [02]\] fastdp: watchdog: waited [3-5]\.\d s in allreduce #3, longer "
                     r"than the abort limit", err, flags=re.M), err
    assert_all_gone(out, 3, timestamp(out, "HANG") + 3 + 1 + 3)


def test_sigkill_of_one_rank_while_another_computes_ends_the_job(mpirun):
    """Rank 0 is outside MPI (computing) when rank 1 dies: hydra ends it all the same."""
    code, out, err, ended = launch(mpirun, 3, """
buf = np.zeros(34)
comm.allreduce_sum_(buf)
if comm.rank == 1:
    mark("KILL")
    os.kill(os.getpid(), signal.SIGKILL)
if comm.rank == 0:
    time.sleep(60)  # no MPI call for a minute: only the launcher can end this rank in time
comm.allreduce_sum_(buf)
print("FINISHED", comm.rank, flush=True)
""")
    seconds = ended - timestamp(out, "KILL")
    print(f"SIGKILL while rank 0 computes: job over {seconds:.2f} s after it")
    assert code != 0
    assert seconds < SIGKILL_DEADLINE_S, (seconds, out, err)
    assert "FINISHED" not in out
    assert_all_gone(out, 3, timestamp(out, "KILL") + SIGKILL_DEADLINE_S)
