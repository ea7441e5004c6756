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

MPI is used only when this process was started by an MPI launcher (mpiexec, srun, ...) or when
mpi4py.MPI is already imported; otherwise `world()` is the serial communicator and MPI is never
initialized, so `import fastdp` works with no MPI runtime at all.

Under MPI with more than one rank, `world()` installs an exception hook: an uncaught exception on
any rank prints its traceback (prefixed by the rank) and calls MPI_Abort, so the job ends with a
non-zero exit instead of leaving the other ranks waiting in a collective.

Progress of non-blocking collectives: MPICH moves an Iallreduce forward only while some MPI call
runs on the rank (its progress engine), unless asynchronous progress is on
(MPIR_CVAR_ASYNC_PROGRESS=1: a progress thread per rank, which needs MPI_THREAD_MULTIPLE, mpi4py's
default). A caller that computes between the start and the wait should call request.test() at
its natural breaks (between kernel calls) so the reduction advances while it works. The progress
thread polls without pause: on a node with no spare core it takes one from the ranks (2 ranks on 2
cores: training steps 3 to 8 times slower, benchmarks/bench_overlap.py --progress async).

This module knows nothing of models or kernels.
"""

from __future__ import annotations

import os
import sys
import time
import traceback
from collections.abc import Sequence
from typing import Any, Protocol

import numpy as np

BARRIER_POLL_SECONDS = 0.001
ABORT_GRACE_S = 1.0  # seconds an aborting rank waits for its stderr to be forwarded
LAUNCHER_VARIABLES = ("PMI_RANK", "PMI_SIZE", "PMIX_RANK", "OMPI_COMM_WORLD_SIZE", "MPI_LOCALNRANKS")


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
    """An mpi4py Request behind the Request face (its own lowercase test() returns a tuple)."""

    __slots__ = ("_request",)

    def __init__(self, request: Any) -> None:
        self._request = request

    def test(self) -> bool:
        """MPI_Test: True once complete; each call also runs MPICH's progress engine."""
        return bool(self._request.Test())

    def wait(self) -> None:
        """MPI_Wait."""
        self._request.Wait()


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
    """An mpi4py intracommunicator; data moves through the buffer (uppercase) methods."""

    def __init__(self, mpi_comm: Any) -> None:
        from mpi4py import MPI

        self._MPI = MPI
        self._comm = mpi_comm
        self.rank = mpi_comm.Get_rank()
        self.size = mpi_comm.Get_size()
        node = mpi_comm.Split_type(MPI.COMM_TYPE_SHARED)
        self.local_size = node.Get_size()
        node.Free()

    def allreduce_sum_(self, buf: np.ndarray) -> np.ndarray:
        """Sum of the C-contiguous buf over all ranks, in place (MPI_IN_PLACE)."""
        self._comm.Allreduce(self._MPI.IN_PLACE, buf, op=self._MPI.SUM)
        return buf

    def iallreduce_sum_(self, buf: np.ndarray) -> Request:
        """Start the sum of the C-contiguous buf over all ranks, in place (MPI_Iallreduce with
        MPI_IN_PLACE); buf holds the sum once the request completes and must not be touched
        before. Every rank starts the same non-blocking collectives in the same order."""
        return MPIRequest(self._comm.Iallreduce(self._MPI.IN_PLACE, buf, op=self._MPI.SUM))

    def bcast_(self, buf: np.ndarray, root: int = 0) -> np.ndarray:
        """Root's C-contiguous buf copied into buf on every rank."""
        self._comm.Bcast(buf, root=root)
        return buf

    def barrier(self) -> None:
        """Wait for all ranks, sleeping between polls (MPI_Ibarrier), so ranks that wait while
        another one works leave it the cores instead of spinning."""
        request = self._comm.Ibarrier()
        while not request.Test():
            time.sleep(BARRIER_POLL_SECONDS)

    def allgather_obj(self, obj: Any) -> list[Any]:
        """Every rank's obj, in rank order (pickled: for small metadata)."""
        return self._comm.allgather(obj)

    def bcast_obj(self, obj: Any, root: int = 0) -> Any:
        """Root's obj on every rank (pickled: for small metadata)."""
        return self._comm.bcast(obj, root=root)

    def scatter_obj(self, objs: Sequence[Any] | None, root: int = 0) -> Any:
        """Root's objs[r] to rank r (pickled); objs is ignored on the other ranks."""
        return self._comm.scatter(objs, root=root)

    def scatter_rows(self, X: np.ndarray | None, counts: Sequence[int], root: int = 0) -> np.ndarray:
        """Rows of root's numeric array X, consecutive blocks of counts[r] rows to rank r
        (MPI_Scatterv); X is ignored on the other ranks. Root checks the counts and tells every
        rank the dtype and row shape, or the error, so a bad call raises everywhere."""
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
        self._comm.Alltoallv([rows, _row_layout(send, row_size)], [out, _row_layout(recv, row_size)])
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
        if root is None:
            out = np.empty(shape, local.dtype)
            self._comm.Allgatherv(local, [out, (sizes, displs)])
            return out
        out = np.empty(shape, local.dtype) if self.rank == root else None
        self._comm.Gatherv(local, [out, (sizes, displs)] if self.rank == root else None, root=root)
        return out


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
