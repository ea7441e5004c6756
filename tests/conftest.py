"""Shared test helpers: launching scripts under mpiexec with a timeout, so a hang fails a test."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from dataclasses import dataclass

import pytest

from fastdp.demo import find_mpiexec


@dataclass
class MPIResult:
    returncode: int
    stdout: str
    stderr: str

    def lines(self, prefix: str) -> list[str]:
        """stdout lines that start with prefix, sorted (ranks print in any order)."""
        return sorted(line for line in self.stdout.splitlines() if line.startswith(prefix))


def _run(cmd: list[str], timeout: float, env: dict[str, str] | None = None) -> MPIResult:
    """Run cmd in its own process group; on timeout kill the whole group and fail the test."""
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True, env=env)
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, err = proc.communicate()
        pytest.fail(f"timed out after {timeout} s (a hang): {' '.join(cmd)}\n{out}\n{err}")
    return MPIResult(proc.returncode, out, err)


@pytest.fixture
def mpirun(tmp_path):
    """mpirun(n, code, timeout=120) runs the Python source `code` on n ranks under mpiexec."""
    mpiexec = find_mpiexec()
    if mpiexec is None:
        pytest.fail("mpiexec not found: install the test extras (pip install -e '.[test]')")

    def run(n: int, code: str, timeout: float = 120, env: dict[str, str] | None = None) -> MPIResult:
        script = tmp_path / f"script_{n}.py"
        script.write_text(textwrap.dedent(code))
        return _run([mpiexec, "-n", str(n), sys.executable, str(script)], timeout, env)

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
