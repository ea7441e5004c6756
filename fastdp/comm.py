"""Communicators: MPI.COMM_WORLD wrapped for numpy buffers, or a serial stand-in with the same face.

    comm = fastdp.comm.world()
    comm.rank, comm.size, comm.local_size      # local_size: ranks sharing this node
    comm.allreduce_sum_(buf)                   # in place, MPI.IN_PLACE, uppercase buffer API
    request = comm.iallreduce_sum_(buf)        # the same, non-blocking (MPI_Iallreduce); buf is
    request.test(); request.wait()             # the sum once test() is True or wait() returned
    comm.bcast_(buf, root=0)                   # in place
    comm.barrier()                             # sleeps while it waits: cheap for idle ranks
    comm.allgather_obj(obj)                    # pickled; small metadata only, never on a hot path
    comm.bcast_obj(obj, root=0)                # pickled; small metadata only
    comm.scatter_obj(objs, root=0)             # pickled; objs[r] to rank r (e.g. CSR row blocks)
    comm.alltoall_rows(rows, send, recv)       # send[q] rows to rank q, recv[q] from it (Alltoallv)
    comm.send_obj(obj, dest, tag)              # point to point, pickled (work queues)
    comm.recv_obj(source=None, tag=None)       # -> (obj, source, tag); None: any
    comm.iprobe(source=None, tag=None)         # is a message waiting?
    comm.scatter_rows(X, counts, root=0)       # root's rows, counts[r] of them to rank r (Scatterv)
    comm.gather_rows(local, counts, root=0)    # every rank's rows, in rank order, on root (Gatherv)
                                               # or on all ranks with root=None (Allgatherv)
    fastdp.comm.set_watchdog(seconds, abort_seconds)  # warn / MPI_Abort when a collective has
                                               # waited longer (0: off; see Watchdog below)

MPI is used only when this process was started by an MPI launcher (mpiexec, srun, ...) or when
mpi4py.MPI is already imported; otherwise `world()` is the serial communicator and MPI is never
initialized, so `import fastdp` works with no MPI runtime at all.

Failures. Under MPI with more than one rank, `world()` installs an exception hook: an uncaught
exception on any rank prints its traceback (each line prefixed by the rank), waits ABORT_GRACE_S
for the launcher to forward it, and calls MPI_Abort, so the job ends with a non-zero exit within a
few seconds instead of leaving the other ranks waiting in a collective (tests/test_failures_mpi.py
measures it). A rank that dies without Python's help (SIGKILL, the OOM killer, a segfault) is
the launcher's to handle: MPICH's hydra tears the whole job down at once ("BAD TERMINATION", exit
status the signal's number). With `mpiexec -disable-auto-cleanup` hydra leaves the survivors
running: a rank that next starts an operation with the dead one fails (fatally: the job ends),
but one already blocked in a collective with it waits until MPICH's network layer notices
(measured with the mpich wheel, 2 ranks on one node: at once in about half the runs, else after
10 to 20 s, once over 60 s). For a bound in that mode, or on any hang, set
FASTDP_WATCHDOG_ABORT_SECONDS (below).

Watchdog. A rank that neither fails nor arrives (a hang, a livelock, a stopped or much slower
rank) leaves the others blocked in a collective; the watchdog says so. Each MPIComm counts the
collectives it enters (#1, #2, ...: the same numbers on every rank, as MPI runs collectives in the
same order everywhere) and, while in one, holds its number and kind in two attributes: a few
stores around the blocking MPI call (no clock read, no polling; allreduce_sum_ costs what it did
before, as it no longer looks up MPI.IN_PLACE and MPI.SUM), so the fast path stays the bare call
(fastdp bench comm, 34 values on 2 ranks: fastdp/bare 1.03 to 1.05). A background thread per rank
("fastdp-watchdog": started when a limit is > 0 and there are >= 2 ranks; it needs
MPI_THREAD_MULTIPLE, mpi4py's default, which MPICH's wheel provides) wakes every
min(limit/4, WATCHDOG_TICK_S) and sends its messages only on a private duplicate of the
communicator:
  - a rank that the thread has seen in the same collective #N for longer than the limit reports
    (N, kind, wait) to rank 0, once per collective (the wait is timed from the thread's first
    sight of it: the warning comes between limit and limit + one wake-up after the wait began);
  - rank 0's thread, on a report (its own included), asks every rank that has not reported for
    its count; one whose count is < N has not arrived, nor has one that does not answer within
    min(limit, ANSWER_WAIT_S) (its main thread holds the GIL outside MPI, or it is gone: a rank
    blocked in MPI has released the GIL, so its thread answers at once);
  - rank 0 then writes one line on stderr, e.g.
      fastdp: watchdog: rank 0 has waited 60.2 s in allreduce #1234; ranks not arrived: 1, 3
    naming also ranks that are at #N in another kind of collective (a program bug), if any.
The watchdog warns, once per collective; the collective keeps waiting, unless an abort limit is
set: a rank whose thread has seen it in one collective for longer than that writes why on stderr
and calls MPI_Abort (the job ends, as on an uncaught exception; off by default, as a legitimate
wait, e.g. ranks in a barrier while rank 0 works alone, may be long). The limits are
FASTDP_WATCHDOG_SECONDS (default 60; 0: no warnings) and FASTDP_WATCHDOG_ABORT_SECONDS (default 0:
never abort), read when the communicator is made (negative or non-numeric values raise ValueError
naming the variable), or set_watchdog(seconds, abort_seconds) (this module's function: the world
communicator and those made later; MPIComm.set_watchdog or MPIComm(..., watchdog_seconds=,
abort_seconds=): one communicator). Set them the same on every rank. Watched: every
collective of MPIComm (allreduce_sum_, the wait() of iallreduce_sum_'s request, bcast_, barrier,
the *_obj and *_rows collectives); not test(), not point-to-point messages. A design that polled a
non-blocking collective from the main thread could not ask a missing rank anything (its main
thread is elsewhere), hence the thread. The threads are daemons and stop before MPI_Finalize,
whether mpi4py calls it at exit or the program calls MPI.Finalize() itself.

This module knows nothing of models or kernels.
"""

from __future__ import annotations

import atexit
import math
import os
import sys
import threading
import time
import traceback
import warnings
from collections.abc import Sequence
from typing import Any, Protocol

import numpy as np

BARRIER_POLL_SECONDS = 0.001
ABORT_GRACE_S = 1.0  # seconds an aborting rank waits for its stderr to be forwarded
LAUNCHER_VARIABLES = ("PMI_RANK", "PMI_SIZE", "PMIX_RANK", "OMPI_COMM_WORLD_SIZE", "MPI_LOCALNRANKS")
WATCHDOG_VARIABLE = "FASTDP_WATCHDOG_SECONDS"
ABORT_VARIABLE = "FASTDP_WATCHDOG_ABORT_SECONDS"
DEFAULT_WATCHDOG_SECONDS = 60.0
WATCHDOG_TICK_S = 0.5  # the watchdog thread wakes every min(limit / 4, WATCHDOG_TICK_S)
ANSWER_WAIT_S = 2.0  # rank 0 waits at most min(limit, this) for the ranks' counts


class Request(Protocol):
    """A non-blocking operation in flight; its buffer must not be touched until it completes."""

    def test(self) -> bool: ...  # has it completed? (drives progress under MPI)
    def wait(self) -> None: ...  # block until it has


class Comm(Protocol):
    """What fastdp asks of a communicator."""

    rank: int
    size: int
    local_size: int

    def allreduce_sum_(self, buf: np.ndarray) -> np.ndarray: ...
    def iallreduce_sum_(self, buf: np.ndarray) -> Request: ...
    def bcast_(self, buf: np.ndarray, root: int = 0) -> np.ndarray: ...
    def barrier(self) -> None: ...
    def allgather_obj(self, obj: Any) -> list[Any]: ...
    def bcast_obj(self, obj: Any, root: int = 0) -> Any: ...
    def scatter_obj(self, objs: Sequence[Any] | None, root: int = 0) -> Any: ...
    def scatter_rows(self, X: np.ndarray | None, counts: Sequence[int], root: int = 0) -> np.ndarray: ...
    def alltoall_rows(self, rows: np.ndarray, send: Sequence[int],
                      recv: Sequence[int]) -> np.ndarray: ...
    def send_obj(self, obj: Any, dest: int, tag: int = 0) -> None: ...
    def recv_obj(self, source: int | None = None, tag: int | None = None) -> tuple[Any, int, int]: ...
    def iprobe(self, source: int | None = None, tag: int | None = None) -> bool: ...
    def gather_rows(self, local: np.ndarray, counts: Sequence[int],
                    root: int | None = 0) -> np.ndarray | None: ...


def _row_layout(counts: Sequence[int], row_size: int) -> tuple[list[int], list[int]]:
    """Element counts and displacements of consecutive blocks of counts[r] rows of row_size each."""
    sizes = [int(c) * row_size for c in counts]
    return sizes, [sum(sizes[:r]) for r in range(len(sizes))]


class Completed:
    """A request that completed when it was made (the serial communicator's)."""

    def test(self) -> bool:
        return True

    def wait(self) -> None:
        """Nothing to wait for."""


class MPIRequest:
    """An mpi4py Request behind the Request face (its own lowercase test() returns a tuple).
    comm and number: the MPIComm whose watchdog watches wait(), and the collective's number."""

    __slots__ = ("_request", "_comm", "_number")

    def __init__(self, request: Any, comm: MPIComm | None = None, number: int = 0) -> None:
        self._request = request
        self._comm = comm
        self._number = number

    def test(self) -> bool:
        """MPI_Test: True once complete; each call also runs MPICH's progress engine."""
        return bool(self._request.Test())

    def wait(self) -> None:
        """MPI_Wait (watched by the communicator's watchdog)."""
        comm = self._comm
        if comm is None:
            self._request.Wait()
            return
        comm._kind = "iallreduce"  # the kind before the number (_Watchdog._current)
        comm._in = self._number
        try:
            self._request.Wait()
        finally:
            comm._in = 0


_COMPLETED = Completed()


class SerialComm:
    """One process: every collective is the identity."""

    rank = 0
    size = 1
    local_size = 1

    def allreduce_sum_(self, buf: np.ndarray) -> np.ndarray:
        """Sum of buf over all ranks, in place: with one rank, buf itself."""
        return buf

    def iallreduce_sum_(self, buf: np.ndarray) -> Request:
        """Non-blocking sum of buf over all ranks, in place: with one rank, already complete."""
        return _COMPLETED

    def bcast_(self, buf: np.ndarray, root: int = 0) -> np.ndarray:
        """Root's buf on every rank, in place: with one rank, buf itself."""
        if root != 0:
            raise ValueError(f"root must be 0 on a serial communicator, got {root}")
        return buf

    def barrier(self) -> None:
        """Wait for all ranks: with one rank, return."""

    def allgather_obj(self, obj: Any) -> list[Any]:
        """Every rank's obj, in rank order: with one rank, [obj]."""
        return [obj]

    def bcast_obj(self, obj: Any, root: int = 0) -> Any:
        """Root's obj on every rank: with one rank, obj."""
        return obj

    def scatter_obj(self, objs: Sequence[Any] | None, root: int = 0) -> Any:
        """objs[r] to rank r: with one rank, objs[0]."""
        return objs[0]

    def scatter_rows(self, X: np.ndarray | None, counts: Sequence[int], root: int = 0) -> np.ndarray:
        """counts[r] rows of root's X to rank r: with one rank, X itself."""
        if list(counts) != [len(X)]:
            raise ValueError(f"counts must be [{len(X)}] for one rank, got {list(counts)}")
        return X

    def gather_rows(self, local: np.ndarray, counts: Sequence[int],
                    root: int | None = 0) -> np.ndarray | None:
        """Every rank's rows in rank order: with one rank, local itself."""
        return local

    def alltoall_rows(self, rows: np.ndarray, send: Sequence[int],
                      recv: Sequence[int]) -> np.ndarray:
        """Rows exchanged between ranks: with one rank, rows itself."""
        if list(send) != [len(rows)] or list(recv) != [len(rows)]:
            raise ValueError(f"send and recv must be [{len(rows)}] for one rank, got "
                             f"{list(send)} and {list(recv)}")
        return rows

    def send_obj(self, obj: Any, dest: int, tag: int = 0) -> None:
        """Point to point: there is no other rank to send to."""
        raise ValueError(f"a serial communicator has no rank {dest} to send to")

    def recv_obj(self, source: int | None = None, tag: int | None = None) -> tuple[Any, int, int]:
        """Point to point: there is no other rank to receive from."""
        raise ValueError("a serial communicator has no other rank to receive from")

    def iprobe(self, source: int | None = None, tag: int | None = None) -> bool:
        """No message ever waits on a serial communicator."""
        return False


class MPIComm:
    """An mpi4py intracommunicator; data moves through the buffer (uppercase) methods.

    watchdog_seconds, abort_seconds: the watchdog's limits (module docstring); None: the value
    given to set_watchdog() if it was called, else FASTDP_WATCHDOG_SECONDS (default 60) and
    FASTDP_WATCHDOG_ABORT_SECONDS (default 0); 0: no warning, no abort.
    """

    def __init__(self, mpi_comm: Any, watchdog_seconds: float | None = None,
                 abort_seconds: float | None = None) -> None:
        from mpi4py import MPI

        seconds, abort = _WATCHDOG_SET if _WATCHDOG_SET is not None else watchdog_from_env()
        seconds = seconds if watchdog_seconds is None else watchdog_seconds
        abort = abort if abort_seconds is None else abort_seconds
        self._MPI = MPI
        self._IN_PLACE, self._SUM = MPI.IN_PLACE, MPI.SUM
        self._comm = mpi_comm
        self.rank = mpi_comm.Get_rank()
        self.size = mpi_comm.Get_size()
        node = mpi_comm.Split_type(MPI.COMM_TYPE_SHARED)
        self.local_size = node.Get_size()
        node.Free()
        # The watchdog's view of this rank, written by the caller's thread only: collectives
        # entered, the number of the one it is in (0: none) and its kind.
        self._count = 0
        self._in = 0
        self._kind = ""
        self._side = mpi_comm.Dup() if self.size > 1 else None  # the watchdog's messages only
        self._watchdog: _Watchdog | None = None
        self.watchdog_seconds = self.abort_seconds = 0.0
        self.set_watchdog(seconds, abort)

    def set_watchdog(self, seconds: float, abort_seconds: float | None = None) -> None:
        """Warn (rank 0, on stderr) when a collective of this communicator has waited longer than
        seconds, naming the ranks that have not arrived, and MPI_Abort when this rank has waited
        in one longer than abort_seconds (None: unchanged); 0 turns either off. Local: call it
        with the same values on every rank."""
        seconds = _check_seconds(seconds, "watchdog seconds")
        abort = self.abort_seconds if abort_seconds is None else _check_seconds(
            abort_seconds, "watchdog abort seconds", "the abort")
        self.watchdog_seconds, self.abort_seconds = seconds, abort
        if (seconds == 0 and abort == 0) or self._side is None:
            if self._watchdog is not None:
                self._watchdog.stop()
                self._watchdog = None
            return
        if self._watchdog is not None:
            self._watchdog.set_limits(seconds, abort)
            return
        level = self._MPI.Query_thread()
        if level < self._MPI.THREAD_MULTIPLE:
            if self.rank == 0:
                warnings.warn(f"fastdp: no watchdog: its thread needs MPI_THREAD_MULTIPLE, and MPI "
                              f"was initialized with thread level {level} (mpi4py.rc.thread_level); "
                              f"{WATCHDOG_VARIABLE}=0 silences this", RuntimeWarning, stacklevel=3)
            return
        self._watchdog = _Watchdog(self, seconds, abort)

    def _enter(self, kind: str) -> None:
        """This rank enters a watched collective (leave it with self._in = 0). The kind is
        stored before the number, which _Watchdog._current relies on."""
        self._kind = kind
        self._count = self._in = self._count + 1

    def allreduce_sum_(self, buf: np.ndarray) -> np.ndarray:
        """Sum of the C-contiguous buf over all ranks, in place (MPI_IN_PLACE)."""
        self._kind = "allreduce"  # (_enter, inline)
        self._count = self._in = self._count + 1
        try:
            self._comm.Allreduce(self._IN_PLACE, buf, op=self._SUM)
        finally:
            self._in = 0
        return buf

    def iallreduce_sum_(self, buf: np.ndarray) -> Request:
        """Start the sum of the C-contiguous buf over all ranks, in place (MPI_Iallreduce with
        MPI_IN_PLACE); buf holds the sum once the request completes and must not be touched
        before. Every rank starts the same non-blocking collectives in the same order."""
        self._count = number = self._count + 1
        return MPIRequest(self._comm.Iallreduce(self._IN_PLACE, buf, op=self._SUM), self, number)

    def bcast_(self, buf: np.ndarray, root: int = 0) -> np.ndarray:
        """Root's C-contiguous buf copied into buf on every rank."""
        self._enter("bcast")
        try:
            self._comm.Bcast(buf, root=root)
        finally:
            self._in = 0
        return buf

    def barrier(self) -> None:
        """Wait for all ranks, sleeping between polls (MPI_Ibarrier), so ranks that wait while
        another one works leave it the cores instead of spinning."""
        self._enter("barrier")
        try:
            request = self._comm.Ibarrier()
            while not request.Test():
                time.sleep(BARRIER_POLL_SECONDS)
        finally:
            self._in = 0

    def allgather_obj(self, obj: Any) -> list[Any]:
        """Every rank's obj, in rank order (pickled: for small metadata)."""
        self._enter("allgather_obj")
        try:
            return self._comm.allgather(obj)
        finally:
            self._in = 0

    def bcast_obj(self, obj: Any, root: int = 0) -> Any:
        """Root's obj on every rank (pickled: for small metadata)."""
        self._enter("bcast_obj")
        try:
            return self._comm.bcast(obj, root=root)
        finally:
            self._in = 0

    def scatter_obj(self, objs: Sequence[Any] | None, root: int = 0) -> Any:
        """Root's objs[r] to rank r (pickled); objs is ignored on the other ranks."""
        self._enter("scatter_obj")
        try:
            return self._comm.scatter(objs, root=root)
        finally:
            self._in = 0

    def scatter_rows(self, X: np.ndarray | None, counts: Sequence[int], root: int = 0) -> np.ndarray:
        """Rows of root's numeric array X, consecutive blocks of counts[r] rows to rank r
        (MPI_Scatterv); X is ignored on the other ranks. Root checks the counts and tells every
        rank the dtype and row shape, or the error, so a bad call raises everywhere."""
        self._enter("scatter_rows")
        try:
            return self._scatter_rows(X, counts, root)
        finally:
            self._in = 0

    def _scatter_rows(self, X: np.ndarray | None, counts: Sequence[int], root: int) -> np.ndarray:
        meta = None
        if self.rank == root:
            X = np.ascontiguousarray(X)
            if X.ndim == 0 or sum(counts) != X.shape[0] or len(counts) != self.size:
                meta = f"counts {list(counts)} do not split X of shape {X.shape} over {self.size} ranks"
            else:
                meta = (X.dtype.str, X.shape[1:])
        meta = self._comm.bcast(meta, root=root)
        if isinstance(meta, str):
            raise ValueError(meta)
        dtype, tail = np.dtype(meta[0]), tuple(meta[1])
        local = np.empty((int(counts[self.rank]),) + tail, dtype)
        sizes, displs = _row_layout(counts, int(np.prod(tail, dtype=np.int64)))
        send = [X, (sizes, displs)] if self.rank == root else None
        self._comm.Scatterv(send, local, root=root)
        return local

    def alltoall_rows(self, rows: np.ndarray, send: Sequence[int],
                      recv: Sequence[int]) -> np.ndarray:
        """Consecutive blocks of send[q] of this rank's rows go to rank q, and recv[q] rows come
        from rank q, stacked in rank order (MPI_Alltoallv). Every rank's rows share dtype and
        row shape."""
        rows = np.ascontiguousarray(rows)
        row_size = int(np.prod(rows.shape[1:], dtype=np.int64))
        out = np.empty((sum(int(c) for c in recv),) + rows.shape[1:], rows.dtype)
        self._enter("alltoall_rows")
        try:
            self._comm.Alltoallv([rows, _row_layout(send, row_size)],
                                 [out, _row_layout(recv, row_size)])
        finally:
            self._in = 0
        return out

    def send_obj(self, obj: Any, dest: int, tag: int = 0) -> None:
        """obj to rank dest (pickled, MPI_Send)."""
        self._comm.send(obj, dest=dest, tag=tag)

    def recv_obj(self, source: int | None = None, tag: int | None = None) -> tuple[Any, int, int]:
        """(obj, source, tag) of the next message from source with tag (None: any), waiting for
        it with sleeps between polls, like barrier()."""
        source = self._MPI.ANY_SOURCE if source is None else source
        tag = self._MPI.ANY_TAG if tag is None else tag
        status = self._MPI.Status()
        while not self._comm.Iprobe(source=source, tag=tag, status=status):
            time.sleep(BARRIER_POLL_SECONDS)
        obj = self._comm.recv(source=status.Get_source(), tag=status.Get_tag())
        return obj, status.Get_source(), status.Get_tag()

    def iprobe(self, source: int | None = None, tag: int | None = None) -> bool:
        """True when a message from source with tag (None: any) is waiting."""
        return bool(self._comm.Iprobe(source=self._MPI.ANY_SOURCE if source is None else source,
                                      tag=self._MPI.ANY_TAG if tag is None else tag))

    def gather_rows(self, local: np.ndarray, counts: Sequence[int],
                    root: int | None = 0) -> np.ndarray | None:
        """Every rank's rows of a numeric array, in rank order (MPI_Gatherv), on root (None
        elsewhere), or on every rank when root is None (MPI_Allgatherv). All ranks' local arrays
        share dtype and row shape; counts[r] is rank r's row count."""
        local = np.ascontiguousarray(local)
        sizes, displs = _row_layout(counts, int(np.prod(local.shape[1:], dtype=np.int64)))
        shape = (sum(int(c) for c in counts),) + local.shape[1:]
        self._enter("gather_rows")
        try:
            if root is None:
                out = np.empty(shape, local.dtype)
                self._comm.Allgatherv(local, [out, (sizes, displs)])
                return out
            out = np.empty(shape, local.dtype) if self.rank == root else None
            self._comm.Gatherv(local, [out, (sizes, displs)] if self.rank == root else None,
                               root=root)
            return out
        finally:
            self._in = 0


def _check_seconds(value: Any, name: str, off: str = "the watchdog") -> float:
    """value as a watchdog limit in seconds (a finite number >= 0), or ValueError naming name."""
    try:
        seconds = float(value)
    except (TypeError, ValueError):
        seconds = math.nan
    if isinstance(value, bool) or not math.isfinite(seconds) or seconds < 0:
        raise ValueError(f"{name} must be a number of seconds >= 0 (0 turns {off} off), "
                         f"got {value!r}")
    return seconds


def watchdog_from_env(environ: dict[str, str] | None = None) -> tuple[float, float]:
    """The watchdog's limits (warn, abort) in FASTDP_WATCHDOG_SECONDS (DEFAULT_WATCHDOG_SECONDS
    when unset or empty) and FASTDP_WATCHDOG_ABORT_SECONDS (0 when unset or empty); ValueError
    naming the variable when one is negative or not a number."""
    environ = os.environ if environ is None else environ
    limits = []
    for name, default, off in ((WATCHDOG_VARIABLE, DEFAULT_WATCHDOG_SECONDS, "the watchdog"),
                               (ABORT_VARIABLE, 0.0, "the abort")):
        value = environ.get(name, "").strip()
        limits.append(default if value == "" else _check_seconds(value, name, off))
    return limits[0], limits[1]


def _ranks_text(ranks: Sequence[int]) -> str:
    """Sorted ranks as text, runs of three or more as first-last: "1, 3, 5-9"."""
    ranks, parts, i = sorted(ranks), [], 0
    while i < len(ranks):
        j = i
        while j + 1 < len(ranks) and ranks[j + 1] == ranks[j] + 1:
            j += 1
        parts.append(f"{ranks[i]}-{ranks[j]}" if j - i >= 2 else
                     ", ".join(str(r) for r in ranks[i:j + 1]))
        i = j + 1
    return ", ".join(parts)


class _Watchdog:
    """The watchdog thread of one MPIComm (the module docstring has the protocol). All its MPI
    calls are on the communicator's private duplicate, from this thread only."""

    REPORT, QUERY, ANSWER = 1, 2, 3  # tags: waiting rank -> 0, 0 -> rank, rank -> 0

    def __init__(self, comm: MPIComm, seconds: float, abort_seconds: float) -> None:
        self.comm, self.side, self.MPI = comm, comm._side, comm._MPI
        self.rank, self.size = comm.rank, comm.size
        self.set_limits(seconds, abort_seconds)
        self.sends: list[Any] = []  # isend requests not yet complete
        self.reported = 0  # the last collective this rank reported waiting in
        self.seen = (0, 0.0)  # (collective this rank is in, 0: none; when this thread saw it first)
        self.reports: dict[int, dict[int, tuple[str, float]]] = {}  # rank 0: number -> {rank:
        # (kind, monotonic time it began waiting, in rank 0's clock)}
        self.queries: dict[int, tuple[float, list[int], dict[int, Any]]] = {}  # rank 0: number
        # -> (deadline, ranks asked, {rank: (count, (number, kind) or None)})
        self.closed: set[int] = set()  # rank 0: collectives already judged
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._run, name="fastdp-watchdog", daemon=True)
        _RUNNING.add(self)
        _register_stops(self.MPI)
        self.thread.start()

    def set_limits(self, seconds: float, abort_seconds: float) -> None:
        """Warn after seconds, abort after abort_seconds (0: never); one of them > 0."""
        self.seconds, self.abort_seconds = seconds, abort_seconds
        self.tick = min(min(t for t in (seconds, abort_seconds) if t > 0) / 4, WATCHDOG_TICK_S)
        self.answer_wait = min(seconds, ANSWER_WAIT_S)

    def stop(self) -> None:
        """End the thread (before MPI_Finalize: _register_stops)."""
        self.stopping.set()
        if self.thread is not threading.current_thread():
            self.thread.join()
        _RUNNING.discard(self)

    def _run(self) -> None:
        try:
            while not self.stopping.wait(min(self.tick, 0.02) if self.queries else self.tick):
                self._step(time.monotonic())  # (rank 0 looks again soon for the answers it awaits)
        except Exception as exc:  # never take the rank down: say it and stop watching
            sys.stderr.write(f"[rank {self.rank}] fastdp: watchdog stopped: {exc!r}\n")
            sys.stderr.flush()

    def _send(self, obj: Any, dest: int, tag: int) -> None:
        self.sends.append(self.side.isend(obj, dest=dest, tag=tag))

    def _step(self, now: float) -> None:
        if self.MPI.Is_finalized():  # (never: _register_stops stops the thread before)
            self.stopping.set()
            return
        self.sends = [request for request in self.sends if not request.Test()]
        status = self.MPI.Status()
        while self.side.Iprobe(source=self.MPI.ANY_SOURCE, tag=self.MPI.ANY_TAG, status=status):
            source, tag = status.Get_source(), status.Get_tag()
            message = self.side.recv(source=source, tag=tag)
            if tag == self.QUERY:
                self._send((message, self.comm._count, self._current()), source, self.ANSWER)
            elif tag == self.REPORT:
                number, kind, waited = message
                self._report(number, source, kind, now - waited)
            elif tag == self.ANSWER and message[0] in self.queries:
                self.queries[message[0]][2][source] = message[1:]
        current = self._current()
        if current is None:
            self.seen = (0, now)
        elif current[0] != self.seen[0]:
            self.seen = (current[0], now)
        elif self.abort_seconds and now - self.seen[1] > self.abort_seconds:
            self._abort(current, now - self.seen[1])
        elif self.seconds and current[0] != self.reported and now - self.seen[1] > self.seconds:
            self.reported = current[0]
            if self.rank == 0:
                self._report(current[0], 0, current[1], self.seen[1])
            else:
                self._send((current[0], current[1], now - self.seen[1]), 0, self.REPORT)
        if self.rank == 0:
            self._judge(now)

    def _current(self) -> tuple[int, str] | None:
        """(number, kind) of the collective this rank is in, or None."""
        # The caller's thread stores the kind, then the number, and each number is one
        # collective's: the same nonzero number read before and after the kind means the kind
        # is that collective's (not the one's before or after it).
        comm = self.comm
        while True:
            number = comm._in
            if not number:
                return None
            kind = comm._kind
            if comm._in == number:
                return number, kind

    def _abort(self, current: tuple[int, str], waited: float) -> None:
        """This rank has waited in one collective longer than the abort limit: end the job."""
        sys.stderr.write(f"[rank {self.rank}] fastdp: watchdog: waited {waited:.1f} s in "
                         f"{current[1]} #{current[0]}, longer than the abort limit "
                         f"({ABORT_VARIABLE}) of {self.abort_seconds:g} s: aborting all ranks "
                         f"(MPI_Abort)\n")
        sys.stderr.flush()
        time.sleep(ABORT_GRACE_S)  # let the launcher forward it (see _abort_on_uncaught)
        self.MPI.COMM_WORLD.Abort(1)

    def _report(self, number: int, rank: int, kind: str, since: float) -> None:
        if number not in self.closed:
            self.reports.setdefault(number, {})[rank] = (kind, since)

    def _judge(self, now: float) -> None:
        """Rank 0: ask about each reported collective, and once every rank asked has answered
        (or ANSWER_WAIT_S passed), warn if some have not arrived."""
        for number, waiting in list(self.reports.items()):
            if number not in self.queries:
                asked = [r for r in range(1, self.size) if r not in waiting]
                for r in asked:
                    self._send(number, r, self.QUERY)
                self.queries[number] = (now + self.answer_wait, asked, {})
            deadline, asked, answers = self.queries[number]
            if len(answers) < len(asked) and now < deadline:
                continue
            del self.reports[number], self.queries[number]
            self.closed.add(number)
            self._warn(number, waiting, asked, answers, now)

    def _warn(self, number: int, waiting: dict[int, tuple[str, float]], asked: list[int],
              answers: dict[int, Any], now: float) -> None:
        first = min(waiting, key=lambda r: (waiting[r][1], r))
        kind, since = waiting[first]
        missing, silent, elsewhere = [], [], []
        if 0 not in waiting and self.comm._count < number:
            missing.append(0)
        for r in asked:
            if r in waiting:  # it reported after it was asked
                continue
            if r not in answers:
                missing.append(r)
                silent.append(r)
            elif answers[r][0] < number:
                missing.append(r)
            elif answers[r][1] and answers[r][1][0] == number and answers[r][1][1] != kind:
                elsewhere.append(f"{r} ({answers[r][1][1]})")
        if not missing and not elsewhere:
            return  # everyone is there: the collective was slow, or is completing now
        text = f"fastdp: watchdog: rank {first} has waited {now - since:.1f} s in {kind} #{number}"
        if len(waiting) > 1:
            text += f" (past the {self.seconds:g} s limit: ranks {_ranks_text(list(waiting))})"
        text += f"; ranks not arrived: {_ranks_text(missing) or 'none'}"
        if silent:
            text += f" (not answering: {_ranks_text(silent)})"
        if elsewhere:
            text += f"; ranks in another collective #{number}: {', '.join(elsewhere)}"
        sys.stderr.write(text + "\n")
        sys.stderr.flush()


_RUNNING: set[_Watchdog] = set()
_STOPS_REGISTERED = False


def _register_stops(MPI: Any) -> None:
    """Stop the watchdog threads before MPI ends, so none makes an MPI call after MPI_Finalize
    (MPICH ends the process with "Attempting to use an MPI routine ... after finalizing MPICH"):
    at exit, before mpi4py's MPI_Finalize (a C-level exit function, run after Python's atexit
    handlers), and at the start of an explicit MPI.Finalize() (MPI_Finalize deletes the
    attributes of MPI_COMM_SELF first, the standard's at-finalize hook)."""
    global _STOPS_REGISTERED
    if not _STOPS_REGISTERED:
        atexit.register(_stop_watchdogs)
        keyval = MPI.COMM_SELF.Create_keyval(delete_fn=_stop_watchdogs_at_finalize)
        MPI.COMM_SELF.Set_attr(keyval, "fastdp watchdogs")
        _STOPS_REGISTERED = True


def _stop_watchdogs() -> None:
    for watchdog in list(_RUNNING):
        watchdog.stop()


def _stop_watchdogs_at_finalize(comm: Any, keyval: int, value: Any) -> None:
    """MPI_COMM_SELF's attribute delete callback (a comm, keyval, value signature)."""
    _stop_watchdogs()


_WATCHDOG_SET: tuple[float, float] | None = None  # set_watchdog's (seconds, abort_seconds)


def set_watchdog(seconds: float, abort_seconds: float | None = None) -> None:
    """The watchdog's limits, in seconds, for the world communicator (now, if it exists) and the
    MPIComms made later without their own, in place of FASTDP_WATCHDOG_SECONDS and (unless
    abort_seconds is None) FASTDP_WATCHDOG_ABORT_SECONDS: warn after seconds, MPI_Abort after
    abort_seconds; 0 turns either off. Call it with the same values on every rank. Without MPI it
    only checks them."""
    global _WATCHDOG_SET
    seconds = _check_seconds(seconds, "watchdog seconds")
    if abort_seconds is None:
        abort_seconds = (_WATCHDOG_SET or watchdog_from_env())[1]
    _WATCHDOG_SET = (seconds, _check_seconds(abort_seconds, "watchdog abort seconds", "the abort"))
    if isinstance(_WORLD, MPIComm):
        _WORLD.set_watchdog(*_WATCHDOG_SET)


def launched_by_mpi(environ: dict[str, str] | None = None) -> bool:
    """True when an MPI launcher started this process (it set one of LAUNCHER_VARIABLES)."""
    environ = os.environ if environ is None else environ
    return any(name in environ for name in LAUNCHER_VARIABLES)


def raise_if_any(comm: Comm, error: str | None, exc_type: type[Exception] = ValueError) -> None:
    """Collective check: if any rank passes an error message, raise exc_type on EVERY rank.

    Each rank's message is prefixed by its rank when there is more than one. Call it on all ranks,
    before the next collective, so one rank's bad input never leaves the others waiting.
    """
    errors = comm.allgather_obj(error)
    found = [(rank, e) for rank, e in enumerate(errors) if e is not None]
    if found:
        if comm.size == 1:
            raise exc_type(found[0][1])
        raise exc_type("; ".join(f"rank {rank}: {e}" for rank, e in found))


def _abort_on_uncaught(comm: Any):
    def hook(exc_type, exc, tb):
        lines = traceback.format_exception(exc_type, exc, tb)
        rank = comm.Get_rank()
        sys.stderr.write("".join(f"[rank {rank}] {line}" for line in "".join(lines).splitlines(True)))
        sys.stderr.write(f"[rank {rank}] fastdp: uncaught exception, aborting all ranks (MPI_Abort)\n")
        sys.stderr.flush()
        # The launcher forwards stderr asynchronously and MPI_Abort tears the job down at once;
        # without a pause the message can be lost (seen under load with MPICH's hydra).
        time.sleep(ABORT_GRACE_S)
        comm.Abort(1)

    return hook


_WORLD: Comm | None = None


def world() -> Comm:
    """The process-wide communicator: MPI.COMM_WORLD when running under MPI, else SerialComm."""
    global _WORLD
    if _WORLD is None:
        if launched_by_mpi() or "mpi4py.MPI" in sys.modules:
            from mpi4py import MPI

            _WORLD = MPIComm(MPI.COMM_WORLD)
            if _WORLD.size > 1:
                sys.excepthook = _abort_on_uncaught(MPI.COMM_WORLD)
        else:
            _WORLD = SerialComm()
    return _WORLD
