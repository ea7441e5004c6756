"""The test launcher (conftest's mpirun and command fixtures) leaves no process behind: on a hang
it kills mpiexec, hydra's proxies and ranks (each in a session of its own, out of reach of a
process-group kill) and what the ranks started; a job that ends but leaves a process running
fails its test, and the process is killed."""

from __future__ import annotations

import time

import pytest

pytestmark = pytest.mark.mpi

HANG = """
import os, subprocess, sys, time
rank = int(os.environ["PMI_RANK"])
pids = [os.getpid(), os.getppid()]  # the rank, hydra's proxy
if rank == 0:  # and a process of its own session, which outlives the rank and the proxy
    pids.append(subprocess.Popen(["sleep", "3600"], start_new_session=True,
                                 stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                 stderr=subprocess.DEVNULL).pid)
with open(os.path.join({directory!r}, f"pids_{{rank}}.tmp"), "w") as out:
    out.write(" ".join(map(str, pids)))
os.replace(os.path.join({directory!r}, f"pids_{{rank}}.tmp"),
           os.path.join({directory!r}, f"pids_{{rank}}"))
{tail}
"""


def alive(pid: int) -> bool:
    """Is the process running (not gone, not a zombie awaiting its reaper)?"""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] not in ("Z", "X", "x")
    except OSError:
        return False


def launched_pids(directory, n: int) -> set[int]:
    files = sorted(directory.glob("pids_*[0-9]"))
    assert len(files) == n, f"not every rank started: {files}"
    return {int(pid) for file in files for pid in file.read_text().split()}


def test_a_job_that_hangs_past_its_timeout_leaves_no_process(mpirun, tmp_path):
    """Rank 1 sleeps, rank 0 waits for it in MPI_Barrier, rank 0 started a process in a session
    of its own: after the timeout the test fails, and the ranks, the proxy and that process are
    gone."""
    directory = tmp_path / "pids"
    directory.mkdir()
    code = HANG.format(directory=str(directory), tail="""
from mpi4py import MPI
if rank == 1:
    time.sleep(3600)
MPI.COMM_WORLD.Barrier()
""")
    with pytest.raises(pytest.fail.Exception, match=r"timed out after 15 s \(a hang\)"):
        mpirun(2, code, timeout=15)
    pids = launched_pids(directory, 2)
    assert len(pids) == 4  # two ranks, one proxy, the sleep
    assert not [pid for pid in pids if alive(pid)], pids


def test_a_process_that_outlives_its_job_fails_the_test_and_is_killed(mpirun, tmp_path,
                                                                        monkeypatch):
    """Both ranks exit at once, but rank 0 left a process running in a session of its own."""
    monkeypatch.setitem(mpirun.__globals__, "LEFTOVER_GRACE_S", 1.0)
    directory = tmp_path / "pids"
    directory.mkdir()
    started = time.monotonic()
    with pytest.raises(pytest.fail.Exception, match=r"processes \[\d+\] of the job outlived it "
                                                    r"by 1.0 s \(killed now\)"):
        mpirun(2, HANG.format(directory=str(directory), tail=""), timeout=60)
    assert time.monotonic() - started < 30
    pids = launched_pids(directory, 2)
    assert not [pid for pid in pids if alive(pid)], pids


def test_a_job_that_ends_cleanly_passes(mpirun, command):
    # one write per rank: with PYTHONUNBUFFERED set, print('RANK', r) writes its pieces one by one
    # and the two ranks' pieces interleaved ('RANKRANK 1') in a CI run
    code = "import os, sys; sys.stdout.write(f\"RANK {os.environ['PMI_RANK']}\\n\")"
    assert mpirun(2, code, timeout=60).lines("RANK") == ["RANK 0", "RANK 1"]
    assert command("sh", "-c", "echo done", timeout=60).stdout == "done\n"
