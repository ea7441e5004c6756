"""Shared test helpers: launching scripts under mpiexec with a timeout, so a hang fails a test.

Every launched command gets a variable of its own in its environment (JOB_VARIABLE=<unique id>),
which mpiexec passes on to its proxies and ranks. MPICH's hydra starts each proxy and each rank in
a session of its own, so killing the command's process group on a hang would leave them running,
orphaned; instead the job is every descendant of the command plus every process whose environment
holds the job's variable (found under /proc: it finds a rank whose proxy is gone, and the
processes a rank started in sessions of their own), and all of them are killed. A job that ends
on its own but leaves such a process behind fails its test too (after the process is killed).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
import uuid
from dataclasses import dataclass

import pytest

from fastdp.demo import find_mpiexec

JOB_VARIABLE = "FASTDP_TEST_JOB"
LEFTOVER_GRACE_S = 10.0  # how long a job's processes may outlive the command (a rank calling
# MPI_Abort can still be exiting when mpiexec is gone) before the test fails


@dataclass
class MPIResult:
    returncode: int
    stdout: str
    stderr: str
    ended: float = 0.0  # time.time() when the command was over (its pipes closed)

    def lines(self, prefix: str) -> list[str]:
        """stdout lines that start with prefix, sorted (ranks print in any order)."""
        return sorted(line for line in self.stdout.splitlines() if line.startswith(prefix))


def _stat(pid: int) -> tuple[int, str] | None:
    """(parent pid, state letter) of a process, or None when it is gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as stat:
            fields = stat.read().rsplit(b")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return int(fields[1]), fields[0].decode()


def job_processes(marker: str, root: int | None = None) -> set[int]:
    """Live processes (zombies left out) whose environment holds marker ("NAME=value"), and the
    descendants of the process root (None: none; pass it only while root is not yet reaped, as
    its pid could be another process's after). Empty where there is no /proc."""
    if not os.path.isdir("/proc/self"):
        return set()
    needle, children, found = marker.encode(), {}, set()
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        pid = int(entry)
        stat = _stat(pid)
        if stat is None or stat[1] in ("Z", "X", "x"):
            continue
        children.setdefault(stat[0], []).append(pid)
        try:
            with open(f"/proc/{pid}/environ", "rb") as environ:
                if needle in environ.read().split(b"\0"):
                    found.add(pid)
        except OSError:  # gone, or another user's
            pass
    stack, seen = ([root] if root is not None and _stat(root) is not None else []), set()
    while stack:
        pid = stack.pop()
        if pid not in seen:
            seen.add(pid)
            stack.extend(children.get(pid, ()))
    found |= seen
    found.discard(os.getpid())
    return found


def kill_job(marker: str, root: int | None = None) -> set[int]:
    """SIGKILL every process of the job (job_processes), again until none is left (a process can
    start another between the look and the kill); returns the pids killed."""
    killed: set[int] = set()
    for _ in range(100):
        pids = job_processes(marker, root)
        if not pids:
            break
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        killed |= pids
        time.sleep(0.02)
    return killed


def _run(cmd: list[str], timeout: float, env: dict[str, str] | None = None) -> MPIResult:
    """Run cmd in its own session with a job variable of its own (module docstring); on timeout
    kill the job (cmd, hydra's proxies, the ranks and what they started) and fail the test, and
    fail it too when a process of the job outlives cmd by LEFTOVER_GRACE_S."""
    marker = f"{JOB_VARIABLE}={uuid.uuid4().hex}"
    env = dict(os.environ if env is None else env)
    env[JOB_VARIABLE] = marker.split("=", 1)[1]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True, env=env)
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        kill_job(marker, proc.pid)  # before the wait: proc.pid is still proc's
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        out, err = proc.communicate()
        kill_job(marker)
        pytest.fail(f"timed out after {timeout} s (a hang): {' '.join(cmd)}\n{out}\n{err}")
    ended = time.time()
    deadline = time.monotonic() + LEFTOVER_GRACE_S
    while job_processes(marker) and time.monotonic() < deadline:
        time.sleep(0.05)
    left = kill_job(marker)
    if left:
        pytest.fail(f"processes {sorted(left)} of the job outlived it by {LEFTOVER_GRACE_S} s "
                    f"(killed now): {' '.join(cmd)}\n{out}\n{err}")
    return MPIResult(proc.returncode, out, err, ended)


@pytest.fixture
def mpirun(tmp_path):
    """mpirun(n, code, timeout=120, env=None, mpiexec_args=()) runs the Python source `code` on n
    ranks under mpiexec (with mpiexec_args before -n)."""
    mpiexec = find_mpiexec()
    if mpiexec is None:
        pytest.fail("mpiexec not found: install the test extras (pip install -e '.[test]')")

    def run(n: int, code: str, timeout: float = 120, env: dict[str, str] | None = None,
            mpiexec_args: tuple[str, ...] = ()) -> MPIResult:
        script = tmp_path / f"script_{n}.py"
        script.write_text(textwrap.dedent(code))
        return _run([mpiexec, *mpiexec_args, "-n", str(n), sys.executable, str(script)], timeout,
                    env)

    return run


@pytest.fixture
def command():
    """command(*argv, timeout=300) runs a command line with a timeout."""

    def run(*argv: str, timeout: float = 300) -> MPIResult:
        return _run(list(argv), timeout)

    return run


@pytest.fixture(scope="session")
def fortunes_dir():
    """Directory of the Debian "fortunes" corpus; installs the package (as root, with apt-get) if
    it is missing, and skips the test if it still is not there."""
    import shutil

    from fastdp.datasets import FORTUNES_DIR

    if os.path.isdir(FORTUNES_DIR):
        return FORTUNES_DIR
    tried = "not root or no apt-get, so no install was tried"
    if hasattr(os, "geteuid") and os.geteuid() == 0 and shutil.which("apt-get"):
        env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
        for argv in (["apt-get", "install", "-y", "-q", "fortunes"], ["apt-get", "update", "-q"],
                     ["apt-get", "install", "-y", "-q", "fortunes"]):
            try:
                done = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=300)
                tried = f"{' '.join(argv)} exited {done.returncode}: {done.stderr.strip()[-300:]}"
            except subprocess.TimeoutExpired:
                tried = f"{' '.join(argv)} timed out after 300 s"
            if os.path.isdir(FORTUNES_DIR):
                return FORTUNES_DIR
    pytest.skip(f"fortune corpus not found at {FORTUNES_DIR}: install the Debian package "
                f"'fortunes' (apt-get install fortunes); {tried}")
