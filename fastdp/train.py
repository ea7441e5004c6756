"""Data-parallel training of linear models: where data, kernels, communicator and optimizer meet.

Every step, identical on every rank:

    buf[:p+1] = kernel sums over this rank's rows of the batch   [grad_coef, grad_intercept, loss_sum]
    buf[p+1]  = this rank's row count in the batch
    buf[p+2]  = this rank's signal (1.0 from rank 0 when checkpoint_seconds have passed)
    Allreduce(SUM, buf)                                          one call, one flat float64 buffer
    NaN or inf in the reduced sums -> NonFiniteError             the same on every rank
    grad      = buf[:p] / rows + penalty gradient               the penalty, added once, after the sum
    theta     = update rule(theta, grad, learning rate)          the same on every rank

Because the kernels return sums and the reduction carries the global row count, N ranks take the
serial step whatever the shard sizes (up to the order of floating-point additions).

overlap=True (mini-batch solvers) starts the step's reduction non-blocking (MPI_Iallreduce) and,
while it is in flight, prepares the next step's batch: its rows of the epoch's permutation that
this rank holds, gathered into the batch's arrays. That work does not depend on theta, so the
arithmetic is unchanged (the same kernel calls on the same rows, one reduction of the same
buffer) and the steps are bitwise those without overlap (on more than 2 ranks, as long as MPI adds
the ranks' sums in the same order in both calls); the step gets shorter by
min(reduction, preparation) at best (see `fit`).

Solvers:
- "gd": full-batch gradient descent (momentum / Nesterov optional);
- "sgd": mini-batch SGD. Each epoch draws one permutation of the GLOBAL row indices from
  (random_state, epoch); each global batch is cut from it and every rank computes the rows of the
  batch it holds, so N ranks follow the trajectory 1 rank follows with the same seed;
- "adam", "adamw": Adam / AdamW, full-batch or mini-batch (batch_size);
- "lbfgs": scipy's L-BFGS-B driven by rank 0 (fastdp.optim.lbfgs).
L1 and elastic-net penalties are applied by a proximal step after each update (not with "lbfgs").

deterministic=True (fastdp.deterministic) replaces the Allreduce by a fixed pairwise tree over
fixed leaves: full batch, the global blocks of 4096 rows (the rows first move to a partition on
whole blocks); mini-batch, the batch's rows in global order. Each rank adds up the tree's nodes
within its leaves, one Allgatherv shares them and every rank finishes the same tree: the model is
bitwise the same for any number of ranks and threads.

Checkpoints (fastdp.checkpoint; first-order solvers): every checkpoint_every steps or
checkpoint_seconds seconds (rank 0's clock, its verdict carried by the step's reduction), rank 0
writes the state of the run at the start of a step, once the step's reduced sums are known to be
finite and before its update; `fit(..., resume=path)` takes that step again and goes on to the
parameters the uninterrupted run ends with.
"""

from __future__ import annotations

import math
import os
import time
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Iterator

import numpy as np
import scipy.sparse as sp

from . import balance, checkpoint, kernels, optim, threads
from . import deterministic as deterministic_mode
from .checkpoint import Checkpointer, State
from .dense_steps import DenseSteps, applies as dense_applies
from .lazy_steps import LazySteps, applies as lazy_applies
from .comm import Comm, Request, raise_if_any, world
from .progress import Progress
from .validation import check_features, check_shard, check_targets

SOLVERS = ("gd", "sgd", "adam", "adamw", "lbfgs")
MINI_BATCH_DEFAULT = 256
CSR_TILES_VARIABLE = "FASTDP_CSR_TILES"  # "0": never copy wide CSR (kernels.tile_csr: X's memory again)

Callback = Callable[[int, np.ndarray, float], None]
FIRST_ORDER = ("gd", "sgd", "adam", "adamw")


class NonFiniteError(FloatingPointError, ValueError):
    """Training produced a NaN or an infinity (usually: the learning rate is too large). Raised on
    every rank with the same message; a ValueError too, as for other bad parameters."""


@dataclass
class FitResult:
    """Outcome of a fit; identical on every rank.

    coef: (n,) for the scalar losses, (n, K) for softmax; intercept: float, or (K,) for softmax.
    n_iter: steps (full batch) or epochs (mini-batch); loss_history: objective per step / epoch.
    backend: the kernels' backend that ran (what "auto" picked: kernels.pick_backend).
    report: the training report (see `training_report`).
    """

    coef: np.ndarray
    intercept: float | np.ndarray
    n_iter: int
    converged: bool
    loss_history: np.ndarray = field(repr=False)
    grad_norm: float
    n_rows: int
    n_ranks: int
    threads: dict[str, int]
    seconds: float
    backend: str
    report: dict[str, Any] = field(default_factory=dict, repr=False)


class Objective:
    """The objective over ALL ranks' rows, as seen from this rank's shard:

        f(theta) = (1/rows) * sum over rows of loss(x, y; coef, intercept) + penalty(coef)

    theta = [coef.ravel(), intercept] (p = n*K + K values). `evaluate` is collective: every rank
    calls it with the same theta, and it performs exactly one Allreduce (and, with a load
    balancer, every `rebalance_every` passes over the data, the balancer's exchange: before a
    full-batch evaluation, or at `end_epoch`).
    ranges: every rank's global rows, in rank order (contiguous).
    A mini-batch step may be split in two (`start_gradient`, then `finish_gradient`) to work
    while its reduction is in flight.
    """

    def __init__(self, X: Any, y: np.ndarray, loss: str, n_outputs: int, penalty: optim.Penalty,
                 fit_intercept: bool, backend: str, comm: Comm, ranges: list[range],
                 balancer: balance.LoadBalancer | None = None, rebalance_every: int = 1,
                 deterministic: bool = False, csr_tiles: bool = True) -> None:
        self.X, self.y, self.loss, self.backend, self.comm = X, y, loss, backend, comm
        self.ranges, self.balancer, self.rebalance_every = ranges, balancer, rebalance_every
        self.rebalances = 0
        self.slowdown = balance.slowdown_factor(comm.rank)
        self._since = [0, 0, 0.0]  # passes over the data, rows and compute seconds since a check
        self._untimed = True  # the next step is the shard's first: see _count
        self.n_features = X.shape[1]
        self.K = n_outputs
        self.n_coef = self.n_features * n_outputs
        self.size = self.n_coef + n_outputs
        self.penalty = penalty
        self.fit_intercept = fit_intercept
        self.buf = np.empty(self.size + 3)  # the step's [grad sums, loss sum, row count, signal]
        self.signal = 0.0  # what this rank adds to the next reduction's signal slot
        self.signals = 0.0  # the reduced signal slot of the last step: the sum of the signals
        self.grad = np.empty(self.size)
        # dense mini-batches of up to kernels.BLOCK_ROWS rows: their kernel, bound once (None: CSR
        # or "numpy"); split(grad) stands for split(theta): views of a float64 vector alike
        self.batch_sums = kernels.bind_batch_sums(loss, X, y, *self.split(self.grad),
                                                  self.buf[:self.size + 1], backend)
        # the kernels' block sums, by (rows, dense?): the rows and format fix the shape
        self.scratch: dict[tuple[int, bool], np.ndarray] = {}
        self.csr_tiles = csr_tiles  # may full passes over wide CSR read kernels.tile_csr's copy?
        self.tiles: kernels.WideCSR | None = None  # that copy, built at the first such pass
        self.compute_seconds = 0.0  # this rank's time in its kernels (batch preparation included)
        self.wait_seconds = 0.0  # this rank's time in the Allreduce (with overlap: starting the
        # Iallreduce and blocked in its wait), waiting for the others included
        self.evaluations = 0
        self.batch_loss = 0.0
        self.sums_total = 0.0  # the last gradient's total of its reduced sums (see nonfinite)
        # deterministic mode: the step's sums added in a fixed tree over fixed leaves (full
        # batch: ranges must be on whole blocks, fit moves the rows there first)
        self.tree = (deterministic_mode.TreeSum(comm, ranges[-1].stop, self.size + 1)
                     if deterministic else None)

    def split(self, theta: np.ndarray) -> tuple[np.ndarray, float | np.ndarray]:
        """Views (coef, intercept) of theta, shaped as the kernels want them."""
        if self.loss == "softmax":
            return theta[:self.n_coef].reshape(self.n_features, self.K), theta[self.n_coef:]
        return theta[:self.n_coef], float(theta[self.n_coef])

    def _scratch(self, X: Any) -> np.ndarray | None:
        """A reused scratch array for the kernels' per-block sums over X (batches of a few sizes)."""
        if self.backend == "numpy":
            return None
        key = (X.shape[0], isinstance(X, np.ndarray))
        scratch = self.scratch.get(key)
        if scratch is None:
            scratch = np.empty(kernels.scratch_shape(self.loss, X, self.split(self.grad)[0]))
            self.scratch[key] = scratch
        return scratch

    def gradient(self, theta: np.ndarray, batch: Batch | None = None) -> np.ndarray:
        """Gradient at theta (without the L1 part) over all ranks' rows, or over the mini-batch
        whose part on this rank is `batch`; the mean loss is left in self.batch_loss. The returned
        gradient is a reused buffer."""
        if batch is None:
            self._maybe_rebalance()
        if self.tree is not None:
            self._tree_sums(theta, batch)
            return self.finish(theta)
        self._local_sums(theta, batch)
        reduce = time.perf_counter()
        self.comm.allreduce_sum_(self.buf)
        self.wait_seconds += time.perf_counter() - reduce
        return self.finish(theta)

    def start_gradient(self, theta: np.ndarray, batch: Batch) -> Request:
        """`gradient` over a batch, first half: this rank's sums, then their reduction started
        (MPI_Iallreduce). Until `finish_gradient(theta, request)`, the caller may do work that
        touches neither theta nor self.buf, and should call request.test() now and then (MPI
        progress, fastdp.comm)."""
        if self.tree is not None:
            raise ValueError("deterministic mode has no non-blocking reduction: use overlap=False")
        self._local_sums(theta, batch)
        reduce = time.perf_counter()
        request = self.comm.iallreduce_sum_(self.buf)
        self.wait_seconds += time.perf_counter() - reduce
        return request

    def finish_gradient(self, theta: np.ndarray, request: Request) -> np.ndarray:
        """`gradient` over a batch, second half: wait for the reduction, then as `gradient`."""
        reduce = time.perf_counter()
        request.wait()
        self.wait_seconds += time.perf_counter() - reduce
        return self.finish(theta)

    def _tiles(self, batch: Batch | None) -> kernels.WideCSR | None:
        """The shard's kernels.tile_csr copy for a full pass over wide CSR X with a compiled backend
        (built at the first such pass, and again after the rows move), else None."""
        if batch is not None or self.backend == "numpy" or not self.csr_tiles or \
                not kernels.tiles_pay_off(self.loss, self.X, self.K):
            return None
        if self.tiles is None:
            start = time.perf_counter()
            self.tiles = kernels.tile_csr(self.X, n_outputs=self.K)
            self.compute_seconds += time.perf_counter() - start
        return self.tiles

    def _local_sums(self, theta: np.ndarray, batch: Batch | None) -> None:
        """self.buf <- this rank's [grad sums, loss sum, row count, signal] over its shard or the
        batch."""
        X, y = (self.X, self.y) if batch is None else (batch.X, batch.y)
        coef, intercept = self.split(theta)
        tiles = self._tiles(batch)
        start = time.perf_counter()
        if batch is not None and self.batch_sums is not None and 0 < X.shape[0] <= kernels.BLOCK_ROWS:
            self.batch_sums(X, y, coef, intercept)
        else:
            kernels.loss_grad_sums(self.loss, X, y, coef, intercept, self.buf[:self.size + 1],
                                   backend=self.backend, validate=False, tiles=tiles,
                                   scratch=None if tiles is not None else self._scratch(X))
        if self.slowdown > 1.0:  # FASTDP_SLOWDOWN: this rank plays a slower node
            self._slow_down(X, y, coef, intercept, time.perf_counter() - start, tiles)
        self.buf[self.size + 1] = X.shape[0]
        self.buf[self.size + 2] = self.signal
        seconds = time.perf_counter() - start
        self.compute_seconds += seconds  # a batch's preparation was counted when it was prepared
        self._count(batch, X.shape[0], seconds)

    def _tree_sums(self, theta: np.ndarray, batch: Batch | None) -> None:
        """Deterministic mode: self.buf <- [grad sums, loss sum, row count, signal] over all
        ranks' rows (or the global batch), added in the fixed tree of fastdp.deterministic."""
        X, y = (self.X, self.y) if batch is None else (batch.X, batch.y)
        coef, intercept = self.split(theta)
        start = time.perf_counter()

        def kernel(out: np.ndarray, block_rows: int, first: int, stop: int) -> np.ndarray:
            return kernels.block_sums(self.loss, X, y, coef, intercept, out, block_rows,
                                      start=first, stop=stop, backend=self.backend, validate=False)

        part = (self.tree.full_batch(kernel, self.ranges) if batch is None
                else self.tree.mini_batch(kernel, self.ranges, batch.members))
        if self.slowdown > 1.0:  # FASTDP_SLOWDOWN: this rank plays a slower node
            self._slow_down(X, y, coef, intercept, time.perf_counter() - start)
        seconds = time.perf_counter() - start
        self.compute_seconds += seconds
        self._count(batch, X.shape[0], seconds)
        reduce = time.perf_counter()
        total, signals = self.tree.reduce(part, self.signal)
        self.wait_seconds += time.perf_counter() - reduce
        self.buf[:self.size + 1] = total
        self.buf[self.size + 1] = self.tree.n_rows if batch is None else len(batch.members)
        self.buf[self.size + 2] = signals

    def finish(self, theta: np.ndarray) -> np.ndarray:
        """The reduced self.buf -> self.grad (returned), self.batch_loss and self.signals."""
        self.evaluations += 1
        count = self.buf[self.size + 1]
        self.signals = self.buf[self.size + 2]
        self.sums_total = kernels.mean_gradient(
            self.buf[:self.size + 1], count, theta, self.grad, l2=self.penalty.l2,
            n_coef=self.n_coef, n_free=self.size if self.fit_intercept else self.n_coef,
            validate=False)  # the Objective's own buffers
        self.batch_loss = self.buf[self.size] / count
        return self.grad

    def nonfinite(self) -> str | None:
        """After a gradient: 'the loss became inf' (or nan), 'the gradient became nan' (or inf)
        when the reduced sums hold one, else None; the same on every rank, as the sums are. No
        pass of its own while the sums are finite: their total, which kernels.mean_gradient
        summed while it formed the gradient, is finite when they all are."""
        if math.isfinite(self.sums_total):
            return None
        sums = self.buf[:self.size + 1]
        if not math.isfinite(sums[-1]):
            return f"the loss became {sums[-1]}"
        gradient = sums[:-1]
        if np.isnan(gradient).any():
            return "the gradient became nan"
        return "the gradient became inf" if np.isinf(gradient).any() else None

    def _slow_down(self, X: Any, y: np.ndarray, coef: np.ndarray, intercept: Any,
                   seconds: float, tiles: kernels.WideCSR | None = None) -> None:
        """FASTDP_SLOWDOWN's factor f: do the kernel work int(f) times in all (into a throwaway
        buffer), then sleep for the fraction of f left, as a node f times slower would."""
        spare = np.empty(self.size + 1)
        for _ in range(int(self.slowdown) - 1):
            kernels.loss_grad_sums(self.loss, X, y, coef, intercept, spare, backend=self.backend,
                                   validate=False, tiles=tiles,
                                   scratch=None if tiles is not None else self._scratch(X))
        time.sleep((self.slowdown - int(self.slowdown)) * seconds)

    def end_epoch(self) -> None:
        """A mini-batch epoch is over: one pass over the data, and a point where rows may move."""
        self._since[0] += 1
        self._maybe_rebalance()

    def _count(self, batch: Batch | None, rows: int, seconds: float) -> None:
        """Add a step of `rows` rows and `seconds` of kernel time (plus the batch's preparation) to
        the balancer's window: a pass over the data when it was a full batch, and its rows and
        seconds unless it is the first step since the shard last changed (the fit's start, or
        rows moved). That step's one-off costs (loading the kernels, starting their threads,
        first touches of new scratch) would make the rank look slower than it is: a 0.12-0.16 s
        first gather once moved too few rows in tests/test_balance_mpi.py."""
        self._since[0] += batch is None
        if self._untimed:
            self._untimed = False
            return
        self._since[1] += rows
        self._since[2] += seconds + (0.0 if batch is None else batch.seconds)

    def _maybe_rebalance(self) -> None:
        """Every rebalance_every passes over the data: ask the balancer (collective) and, when it
        proposes a better partition, move the rows there (Alltoallv) and double the interval, so
        noisy timings cannot make the rows swing back and forth."""
        if self.balancer is None or self._since[0] < self.rebalance_every:
            return
        proposal = self.balancer.propose(self.X.shape[0], self._since[1], self._since[2])
        self._since = [0, 0, 0.0]
        if proposal is not None and self.tree is not None and deterministic_mode.is_aligned(
                self.ranges, self.tree.block_rows):  # full batch: keep whole blocks on a rank
            proposal = deterministic_mode.align(proposal, self.tree.block_rows)
            if proposal == self.ranges:
                proposal = None
        if proposal is not None:
            self.X, self.y = balance.redistribute(self.comm, [self.X, self.y], self.ranges, proposal)
            self.ranges = proposal
            self.scratch = {}
            self.tiles = None
            self._untimed = True
            self.rebalances += 1
            self.rebalance_every *= 2  # back off: each move must be earned over a longer window

    def evaluate(self, theta: np.ndarray, smooth_only: bool = False) -> tuple[float, np.ndarray]:
        """(objective, gradient) over all ranks' rows at theta: `gradient` and the penalized mean
        loss, without the L1 part when smooth_only."""
        grad = self.gradient(theta)
        w = theta[:self.n_coef]
        reg = 0.5 * self.penalty.l2 * float(w @ w) if smooth_only else self.penalty.value(theta)
        return self.batch_loss + reg, grad


@dataclass
class Batch:
    """This rank's rows of one global mini-batch, gathered: X (dense or CSR) and y, and the
    seconds their preparation took (counted as compute). Deterministic mode also keeps members:
    the global batch's rows (all ranks'), increasing."""

    X: Any
    y: np.ndarray
    seconds: float
    members: np.ndarray | None = None


class Orders:
    """Epochs' orders (Batches: the permutation, each batch sorted) kept for the fits of one
    fit_each call, keyed by (random_state, epoch, rows, batch_size), up to ORDERS_BYTES in all
    (the later ones are drawn by each fit again)."""

    ORDERS_BYTES = 1 << 26

    def __init__(self) -> None:
        self._kept: dict[tuple[int, int, int, int], np.ndarray] = {}
        self._bytes = 0

    def get(self, key: tuple[int, int, int, int]) -> np.ndarray | None:
        return self._kept.get(key)

    def keep(self, key: tuple[int, int, int, int], order: np.ndarray) -> None:
        if self._bytes + order.nbytes <= self.ORDERS_BYTES:
            self._kept[key] = order
            self._bytes += order.nbytes


@dataclass
class _Shared:
    """What the fits of one fit_each call share: X as check_features returned it (fit checks
    only y when given this very object), and the epochs' orders."""
    X: Any
    orders: Orders


_SHARED: ContextVar[_Shared | None] = ContextVar("fastdp_train_shared", default=None)


class Batches:
    """This rank's part of every global mini-batch. Epoch e draws one permutation of the global
    rows from (random_state, e) and cuts it into batches of batch_size, each sorted once per
    epoch (kernels.sort_batches, O(rows)); this rank computes the rows of each batch it holds
    (objective.ranges[rank], read when a chunk is gathered: the balancer moves rows between
    epochs), in increasing order. None of it depends on theta.

    The rows are gathered a chunk of consecutive batches at a time (about CHUNK_BYTES of rows,
    at least one batch), so that a step of a small batch takes views of the chunk instead of
    calls of its own: dense X and y into arrays reused from chunk to chunk (kernels.take_rows,
    threaded, the rows and their targets in one pass), CSR rows by scipy (X[rows], a new matrix
    per chunk, sliced per batch). A Batch's arrays are valid until the `prepare` that gathers the
    next chunk. orders: where fit_each's fits share the epochs' orders (read, never written).
    """

    # rows gathered at once: on 100,000 x 32, epochs of 32- and 256-row batches took 1.2x and
    # 1.6x as long with 64 KiB chunks, and 0-6% less with 4 MiB (8x the buffer) as with these
    CHUNK_BYTES = 1 << 19
    GATHER_BYTES = 1 << 21  # while a reduction is in flight: test it between pieces this large

    def __init__(self, objective: Objective, n_rows: int, batch_size: int,
                 random_state: int, orders: Orders | None = None) -> None:
        self.objective, self.n_rows, self.batch_size = objective, n_rows, batch_size
        self.random_state = random_state
        self.orders = orders  # epochs' orders shared with other fits (fit_each), or None
        self._epoch, self._order = -1, np.empty(0, dtype=np.int64)
        self._X: np.ndarray | None = None  # dense X's gather buffers
        self._y: np.ndarray | None = None
        self._chunk: tuple = ()  # which chunk is gathered: (epoch, first batch, this rank's rows)
        self._chunk_of: Any = None  # the shard it was gathered from (the balancer replaces it)
        self._chunk_X: Any = None  # its rows, its targets, and where each batch's rows begin
        self._chunk_y: np.ndarray | None = None
        self._offsets: list[int] = []
        self._per_chunk: int | None = None  # batches a chunk, sized at the first prepare

    def prepare(self, epoch: int, start: int, request: Request | None = None) -> Batch:
        """This rank's part of the batch of `epoch` whose global rows start at `start` (a multiple
        of batch_size) in the epoch's permutation. request: a reduction in flight, tested between
        the pieces of the work so MPI moves it forward."""
        began = time.perf_counter()
        objective = self.objective
        self._permute(epoch)
        b = start // self.batch_size
        if self._per_chunk is None:
            self._per_chunk = self.batches_per_chunk()
        per_chunk = self._per_chunk
        first = b - b % per_chunk
        mine = objective.ranges[objective.comm.rank]
        if self._chunk != (epoch, first, mine) or self._chunk_of is not objective.X:
            self._gather(first, min(first + per_chunk, -(-self.n_rows // self.batch_size)), request)
            self._chunk, self._chunk_of = (epoch, first, mine), objective.X
        elif request is not None:
            request.test()
        a, z = self._offsets[b - first], self._offsets[b - first + 1]
        members = None if objective.tree is None else self._order[start:start + self.batch_size]
        seconds = time.perf_counter() - began
        objective.compute_seconds += seconds
        return Batch(self._chunk_X[a:z], self._chunk_y[a:z], seconds, members)

    def rows(self, epoch: int, start: int, stop: int | None = None) -> np.ndarray:
        """The rows of the batch of `epoch` whose global rows start at `start` (or of the batches
        from there to `stop`, batch after batch), each batch's increasing, as indices into this
        rank's shard: with one rank only (fastdp.lazy_steps reads them in place). A view, valid
        until the next epoch's first call."""
        self._permute(epoch)
        return self._order[start:start + self.batch_size if stop is None else stop]

    def _permute(self, epoch: int) -> None:
        """The epoch's permutation of the global rows, each batch sorted (once per epoch)."""
        if epoch != self._epoch:
            self._epoch = epoch
            key = (self.random_state, epoch, self.n_rows, self.batch_size)
            order = None if self.orders is None else self.orders.get(key)
            if order is None:
                order = kernels.sort_batches(
                    np.random.default_rng([self.random_state, epoch]).permutation(self.n_rows),
                    self.batch_size)
                if self.orders is not None:
                    self.orders.keep(key, order)
            self._order = order

    def batches_per_chunk(self) -> int:
        """Batches in a chunk: as many as CHUNK_BYTES of rows hold, at least one."""
        X = self.objective.X
        if isinstance(X, np.ndarray):
            row_bytes = X.shape[1] * X.itemsize
        else:  # CSR: a row's non-zeros, values and column indices
            row_bytes = (X.data.itemsize + X.indices.itemsize) * X.nnz // max(1, X.shape[0])
        return max(1, self.CHUNK_BYTES // max(1, self.batch_size * row_bytes))

    def _gather(self, first: int, stop: int, request: Request | None) -> None:
        """Gather this rank's rows of batches first..stop-1 (their global rows in the epoch's
        order) into the chunk, and where each batch's rows begin."""
        objective = self.objective
        order = self._order[first * self.batch_size:stop * self.batch_size]
        mine = objective.ranges[objective.comm.rank]
        held = (order >= mine.start) & (order < mine.stop)
        rows = order[held]  # batch after batch, each in increasing order
        if mine.start:
            rows -= mine.start
        ends = np.minimum(np.arange(1, stop - first + 1) * self.batch_size, len(order))
        self._offsets = [0] + np.cumsum(held)[ends - 1].tolist()
        done = request is None or request.test()
        if not isinstance(objective.X, np.ndarray):
            self._chunk_X = objective.X[rows]
            done = done or request.test()
            self._chunk_y = objective.y[rows]
            return
        X, y = self._buffers(len(rows))
        row_bytes = X.shape[1] * X.itemsize
        piece = max(1, len(rows) if done else self.GATHER_BYTES // max(1, row_bytes))
        for a in range(0, len(rows), piece):
            kernels.take_rows(objective.X, rows[a:a + piece], X[a:a + piece], y=objective.y,
                              y_out=y[a:a + piece], validate=False)
            done = done or request.test()
        self._chunk_X, self._chunk_y = X, y

    def _buffers(self, k: int) -> tuple[np.ndarray, np.ndarray]:
        """The first k rows of the dense gather buffers, (re)allocated for the shard's chunks."""
        X, y = self.objective.X, self.objective.y
        if self._X is None or len(self._X) < k:  # first use, or more rows since the balancer moved
            rows = max(k, min(self.batch_size * (self._per_chunk or 1), X.shape[0]))
            self._X, self._y = np.empty((rows, X.shape[1]), X.dtype), np.empty(rows, y.dtype)
        return self._X[:k], self._y[:k]


def _param_error(loss: str, solver: str, learning_rate: float, max_iter: int, tol: float,
                 alpha: float, l1_ratio: float, batch_size: int | None, backend: str,
                 overlap: bool = False) -> str | None:
    """What is wrong with the fit's parameters, or None."""
    if loss not in kernels.LOSS_CODES:
        return f"loss must be one of {sorted(kernels.LOSS_CODES)}, got {loss!r}"
    if solver not in SOLVERS:
        return f"solver must be one of {list(SOLVERS)}, got {solver!r}"
    if (error := kernels.backend_error(backend)) is not None:
        return error
    if not (np.isfinite(learning_rate) and learning_rate > 0):
        return f"learning_rate must be a finite number > 0, got {learning_rate!r}"
    if int(max_iter) != max_iter or max_iter < 1:
        return f"max_iter must be an integer >= 1, got {max_iter!r}"
    if not tol >= 0:
        return f"tol must be >= 0, got {tol!r}"
    if not (np.isfinite(alpha) and alpha >= 0):
        return f"alpha must be a finite number >= 0, got {alpha!r}"
    if not 0 <= l1_ratio <= 1:
        return f"l1_ratio must be in [0, 1], got {l1_ratio!r}"
    if solver == "lbfgs" and alpha * l1_ratio > 0:
        return "solver='lbfgs' needs a smooth objective: use l1_ratio=0, or solver 'gd'/'sgd'/'adam'"
    if solver == "lbfgs" and loss == "hinge":
        return "solver='lbfgs' needs a smooth objective and the hinge loss is not: use 'gd' or 'sgd'"
    if batch_size is not None and (int(batch_size) != batch_size or batch_size < 1):
        return f"batch_size must be an integer >= 1 or None, got {batch_size!r}"
    if batch_size is not None and solver in ("gd", "lbfgs"):
        return f"solver={solver!r} is full-batch: leave batch_size=None, or use solver 'sgd'/'adam'"
    if not isinstance(overlap, (bool, np.bool_)):
        return f"overlap must be True or False, got {overlap!r}"
    if overlap and solver != "sgd" and batch_size is None:
        return (f"overlap=True needs mini-batch training (solver 'sgd', or 'adam'/'adamw' with "
                f"batch_size): solver={solver!r} is full-batch and has no next batch to prepare")
    return None


def _rebalance_error(every: int | None, threshold: float) -> str | None:
    """What is wrong with the rebalancing settings, or None."""
    if every is not None and (isinstance(every, bool) or int(every) != every or every < 1):
        return f"rebalance_every must be an integer >= 1 or None, got {every!r}"
    if not 0 <= threshold < 1:
        return f"rebalance_threshold must be in [0, 1), got {threshold!r}"
    return None


def _deterministic_error(deterministic: Any, overlap: bool) -> str | None:
    """What is wrong with deterministic=..., or None."""
    if not isinstance(deterministic, (bool, np.bool_)):
        return f"deterministic must be True or False, got {deterministic!r}"
    if deterministic and overlap:
        return ("deterministic=True and overlap=True cannot be combined: deterministic mode "
                "gathers the step's block sums with a blocking Allgatherv, there is no "
                "reduction in flight to overlap; use overlap=False (or deterministic=False)")
    return None


def _checkpoint_error(solver: str, path: Any, every: Any, seconds: Any, keep: Any,
                      resume: Any) -> str | None:
    """What is wrong with the checkpoint settings, or None."""
    for name, value in (("checkpoint", path), ("resume", resume)):
        if value is not None and not isinstance(value, (str, os.PathLike)):
            return f"{name} must be a file path or None, got {value!r}"
    if solver not in FIRST_ORDER and (path is not None or resume is not None):
        return (f"checkpoint and resume need a first-order solver {list(FIRST_ORDER)}, got "
                f"solver={solver!r}: scipy's L-BFGS-B cannot save or restore its memory")
    if every is not None and (not isinstance(every, (int, np.integer)) or isinstance(every, bool)
                              or every < 1):
        return f"checkpoint_every must be an integer >= 1 or None, got {every!r}"
    if seconds is not None and (not isinstance(seconds, (int, float, np.number))
                                or isinstance(seconds, bool) or not np.isfinite(seconds)
                                or seconds <= 0):
        return f"checkpoint_seconds must be a finite number > 0 or None, got {seconds!r}"
    if not isinstance(keep, (int, np.integer)) or isinstance(keep, bool) or keep < 1:
        return f"checkpoint_keep must be an integer >= 1, got {keep!r}"
    if path is None and (every is not None or seconds is not None):
        return "checkpoint_every and checkpoint_seconds need checkpoint=path, where to write"
    if path is not None and every is None and seconds is None:
        return f"checkpoint={os.fspath(path)!r} needs checkpoint_every or checkpoint_seconds (when)"
    return None


def _agree_on_shapes(X: Any, comm: Comm) -> tuple[int, list[int]]:
    """(n_features, rows per rank), after checking every rank has the same feature count."""
    shapes = comm.allgather_obj((X.shape[0], X.shape[1]))
    if len({cols for _, cols in shapes}) > 1:
        raise ValueError("X has a different number of features on different ranks: "
                         + ", ".join(f"rank {r}: {cols}" for r, (_, cols) in enumerate(shapes)))
    rows = [r for r, _ in shapes]
    if sum(rows) == 0:
        raise ValueError("X has 0 rows on every rank: there is nothing to fit")
    return shapes[0][1], rows


def fit(X: Any, y: Any, *, loss: str = "squared", n_classes: int | None = None,
        solver: str = "gd", learning_rate: float = 0.1, schedule: str = "constant",
        power_t: float = 0.5, max_iter: int = 1000, tol: float = 1e-6, alpha: float = 0.0,
        l1_ratio: float = 0.0, fit_intercept: bool = True, batch_size: int | None = None,
        momentum: float = 0.0, nesterov: bool = False, beta1: float = 0.9, beta2: float = 0.999,
        weight_decay: float = 0.01, n_iter_no_change: int = 5, random_state: int = 0,
        backend: str = "auto", comm: Comm | None = None, callback: Callback | None = None,
        verbose: bool = False, rebalance: bool = False, rebalance_every: int | None = None,
        rebalance_threshold: float = 0.05, overlap: bool = False,
        checkpoint: str | os.PathLike[str] | None = None, checkpoint_every: int | None = None,
        checkpoint_seconds: float | None = None, checkpoint_keep: int = 2,
        resume: str | os.PathLike[str] | None = None, deterministic: bool = False) -> FitResult:
    """Fit a linear model data-parallel on the rows this rank holds; every rank gets the same model.

    Minimizes (1/rows) * sum over ALL ranks' rows of loss(x.coef + intercept, y)
              + alpha * ((1 - l1_ratio)/2 * |coef|^2 + l1_ratio * |coef|_1).

    X: this rank's rows, (m, n) dense or scipy.sparse CSR; m may differ between ranks and be 0.
    y: (m,). squared: real targets; logistic/hinge/squared_hinge: -1/+1; softmax: labels
       0..n_classes-1 (n_classes required).
    solver: see the module docstring. max_iter: steps for full-batch solvers, epochs for
       mini-batch ones. tol: full batch stops when |gradient mapping| < tol; mini-batch stops when
       the epoch objective has not improved by tol for n_iter_no_change epochs; lbfgs: scipy gtol.
    learning_rate, schedule ('constant', 'invscaling', 'cosine'), power_t: the step size.
    momentum, nesterov: for gd/sgd. beta1, beta2, weight_decay: for adam/adamw.
    random_state: seeds the mini-batch permutations (the same on every rank).
    comm: the communicator (default fastdp.comm.world(): MPI under mpiexec, else serial).
    callback(step, theta, objective): on every rank after each step's reduction; theta read-only.
    verbose: a progress bar on rank 0's stderr.
    rebalance: every rebalance_every passes over the data (None: 10 full-batch evaluations, or
       1 mini-batch epoch), move rows from slow ranks to fast ones when that predicts a step
       faster by more than rebalance_threshold (fastdp.balance; dense or CSR X, every solver).
       The ranks' rows are then no longer the ones passed in; the model is the same up to
       rounding, and mini-batch SGD draws the same global batches.
    overlap: mini-batch solvers only. True starts each step's reduction non-blocking
       (MPI_Iallreduce) and prepares the next batch while it is in flight: the rows of the epoch's
       permutation this rank holds, gathered into the batch's arrays (at an epoch's end, the next
       epoch's first batch; prepared again if the balancer then moves rows). The steps are
       bitwise those of overlap=False (the same kernel calls on the same rows, one reduction of
       the same buffer; with more than 2 ranks, if the MPI library adds the ranks' sums in the
       same order in MPI_Iallreduce as in MPI_Allreduce), and a step is shorter by at most
       min(reduction, preparation). Without MPICH's asynchronous progress the reduction moves
       forward only at the request.test() calls made between pieces of the preparation.
    checkpoint: a file rank 0 writes the run's state to (fastdp.checkpoint: parameters, update
       rule state, position, loss history, config; atomic, no pickle) after every
       checkpoint_every-th step and/or once checkpoint_seconds have passed since the last one
       (rank 0's clock), keeping the checkpoint_keep newest (checkpoint, checkpoint.1, ...).
       A step is one update (a batch for mini-batch solvers), numbered from 0 as in callback;
       the checkpoint of step s holds the state before its update, written once its reduced
       sums are known to be finite (the first step of a fit is never written: it is the start).
       A failed write raises OSError on every rank. Solvers 'gd', 'sgd', 'adam', 'adamw' only.
    resume: a checkpoint to continue from: rank 0 reads it and broadcasts it. The run must have
       the same config (fastdp.checkpoint.MATCHED, and max_iter under the cosine schedule; else
       ValueError naming each field); max_iter may otherwise grow. It ends with the parameters,
       loss history, n_iter and convergence of the run that was not interrupted (with the same
       checkpoint options: see the compiled steps below): bitwise on the same number of ranks,
       up to rounding on another.
    deterministic: True makes the model bitwise the same for any number of ranks and of threads
       per rank (and run after run), every solver, dense or CSR, backends numba and cython
       (numpy: as far as its BLAS, run on one thread, is) (fastdp.deterministic). Each step's
       sums are added in a fixed pairwise tree over fixed leaves instead of by the Allreduce:
       full batch, the global blocks of fastdp.deterministic.BLOCK_ROWS (4096) rows, the rows
       first moving (Alltoallv) to a contiguous partition on whole blocks, near-equal block
       counts per rank, when the shards passed in are not on whole blocks; mini-batch, the
       batch's rows in global order, each summed on its own (no rows move). Each rank adds up
       the tree's nodes within its leaves, one Allgatherv shares them (each rank sends about
       2*log2(its leaves) + 1 rows of coef.size + K + 1 values, instead of one Allreduce of
       that many) and every rank finishes the tree. The model differs from
       deterministic=False in the last bits. rebalance=True keeps whole blocks on a rank;
       overlap=True is refused (ValueError). benchmarks/bench_deterministic.py measures the
       cost against deterministic=False. resume= continues a deterministic run bitwise, on
       any number of ranks.
    Wide CSR: full passes (every step of the full-batch solvers) read a copy of the shard
    (kernels.tile_csr: column-major for the scalar losses, column tiles for softmax; built at the
    first pass, again after rows move) when kernels.tiles_pay_off says so; it costs X's data and
    indices again in memory.
    FASTDP_CSR_TILES=0 in the environment turns it off (the report's csr_tiles says per rank).
    Compiled steps: on one rank, mini-batch SGD with no callback, checkpoint or resume
    (fastdp.lazy_steps.alone) takes an epoch's steps but its last in one compiled loop: over CSR
    rows lazily, each in O(its rows' non-zeros) (fastdp.lazy_steps: any loss, no momentum,
    backend "numba"), over dense rows with a scalar loss and a batch of at most
    dense_steps.SERIAL_VALUES values (fastdp.dense_steps, either compiled backend). The model equals the loop's steps' up
    to rounding; a callback or checkpoint makes the loop take them.
    A NaN or inf in a step's reduced loss or gradient sums (or in a state about to be
    checkpointed) raises NonFiniteError on every rank, naming the step (epoch and batch too for
    mini-batch; all from 0), the last good checkpoint and a smaller learning rate to try.
    Bad parameters or data on any rank raise the same ValueError on every rank.
    """
    comm = world() if comm is None else comm
    error = _param_error(loss, solver, learning_rate, max_iter, tol, alpha, l1_ratio, batch_size,
                         backend, overlap)
    if error is None and loss == "softmax" and not (isinstance(n_classes, int) and n_classes >= 2):
        error = f"n_classes must be an integer >= 2 for the softmax loss, got {n_classes!r}"
    if error is None and rebalance:
        error = _rebalance_error(rebalance_every, rebalance_threshold)
    if error is None:
        error = _checkpoint_error(solver, checkpoint, checkpoint_every, checkpoint_seconds,
                                  checkpoint_keep, resume)
    if error is None:
        error = _deterministic_error(deterministic, overlap)
    csr_tiles = os.environ.get(CSR_TILES_VARIABLE, "1")
    if error is None and csr_tiles not in ("0", "1"):
        error = (f"{CSR_TILES_VARIABLE} must be 0 (never) or 1 (full-batch fits read wide CSR "
                 f"through a column-major or column-tiled copy, the default), got {csr_tiles!r}")
    shared = _SHARED.get()
    if shared is not None and X is not shared.X:
        shared = None  # a fit inside fit_each's over other rows
    if error is None and shared is not None:
        y, error = check_targets(X, y, loss, n_classes)
    elif error is None:
        X, y, error = check_shard(X, y, loss, n_classes)
    raise_if_any(comm, error)
    backend = kernels.pick_backend(loss, X, backend)
    n, rows_per_rank = _agree_on_shapes(X, comm)
    K = n_classes if loss == "softmax" else 1
    used_threads = threads.configure(comm.local_size)
    mini_batch = solver == "sgd" or (batch_size is not None and solver != "lbfgs")
    if sp.issparse(X) and mini_batch:
        X = sp.csr_matrix(X)  # row selection (X[rows]) returns CSR for csr_matrix

    penalty = optim.Penalty(alpha, l1_ratio, n * K)
    offsets = np.cumsum([0] + rows_per_rank)
    ranges = [range(int(a), int(b)) for a, b in zip(offsets[:-1], offsets[1:])]
    if deterministic and not mini_batch and not deterministic_mode.is_aligned(ranges):
        aligned = deterministic_mode.aligned_partition(int(offsets[-1]), comm.size)
        X, y = balance.redistribute(comm, [X, y], ranges, aligned)
        ranges = aligned
    balancer = balance.LoadBalancer(comm, rebalance_threshold) if rebalance else None
    if rebalance_every is None:
        rebalance_every = 1 if mini_batch else 10
    objective = Objective(X, y, loss, K, penalty, fit_intercept, backend, comm, ranges, balancer,
                          rebalance_every, bool(deterministic), csr_tiles=csr_tiles == "1")
    n_rows = sum(rows_per_rank)
    batch_size = (batch_size or MINI_BATCH_DEFAULT) if mini_batch else None
    config = {"loss": loss, "n_classes": K, "solver": solver, "learning_rate": float(learning_rate),
              "schedule": schedule, "power_t": float(power_t), "max_iter": int(max_iter),
              "alpha": float(alpha), "l1_ratio": float(l1_ratio),
              "fit_intercept": bool(fit_intercept), "batch_size": batch_size,
              "momentum": float(momentum), "nesterov": bool(nesterov), "beta1": float(beta1),
              "beta2": float(beta2), "weight_decay": float(weight_decay),
              "random_state": int(random_state), "n_rows": n_rows, "n_features": n,
              "tol": float(tol), "n_iter_no_change": int(n_iter_no_change), "backend": backend,
              "overlap": bool(overlap), "rebalance": bool(rebalance),
              "deterministic": bool(deterministic), "dtype": X.dtype.name,
              "sparse": sp.issparse(X)}
    rule = (None if solver == "lbfgs"
            else _rule(objective, solver, momentum, nesterov, beta1, beta2, weight_decay))
    state = State(theta=np.zeros(objective.size), rule={}, history=[])
    if resume is not None:
        state = _resume(resume, comm, config, objective, rule, mini_batch)
    saver = Checkpointer(checkpoint, comm, config, lambda: objective.ranges, state.step,
                         checkpoint_every, checkpoint_seconds, checkpoint_keep,
                         None if resume is None else (os.fspath(resume), state.step))
    guard = _Guard(solver, learning_rate, saver)
    state.theta = comm.bcast_(state.theta)
    theta = state.theta
    progress = Progress(max_iter, enabled=verbose and comm.rank == 0)
    start = time.perf_counter()
    # The compiled kernels own the cores; BLAS only does small vector work between the steps.
    # The numpy backend's kernels are BLAS calls: threaded, unless deterministic (BLAS threads
    # split a sum: the bits would depend on their number).
    with threads.blas_threads(None if backend == "numpy" and not deterministic else 1):
        if solver == "lbfgs":
            n_iter, converged, history, grad_norm = _run_lbfgs(objective, theta, max_iter, tol,
                                                               callback, progress, guard)
        else:
            steps_per_iter = -(-n_rows // batch_size) if mini_batch else 1
            lr_of = optim.Schedule(schedule, learning_rate, power_t=power_t,
                                   total_steps=max_iter * steps_per_iter)
            loop = _Loop(objective, state, rule, lr_of, callback, progress, saver, guard)
            if mini_batch:
                n_iter, converged, history, grad_norm = _run_mini_batch(
                    loop, batch_size, n_rows, max_iter, tol, n_iter_no_change, random_state,
                    overlap, None if shared is None else shared.orders)
            else:
                n_iter, converged, history, grad_norm = _run_full_batch(loop, max_iter, tol)
    progress.close()
    report = training_report(objective)
    coef, intercept = objective.split(theta)  # views of this fit's own theta: no copies
    return FitResult(coef=coef, intercept=intercept,
                     n_iter=n_iter, converged=converged, loss_history=np.array(history),
                     grad_norm=grad_norm, n_rows=n_rows, n_ranks=comm.size,
                     threads=used_threads, seconds=time.perf_counter() - start, backend=backend,
                     report=report)


def fit_each(X: Any, targets: Iterable[Any], **options: Any) -> Iterator[FitResult]:
    """fit(X, y, **options) for each y of `targets` in turn, over the same rows (one-vs-rest:
    fastdp.estimators.LinearSVC), each result yielded as its fit ends.

    X is checked once (fit checks it at every call: O(nnz) for CSR), and the mini-batch fits
    draw each epoch's permutation once (Orders: kept until the generator is done). Each model is
    bitwise the one fit(X, y, **options) gives. Collective as fit: every rank passes the same
    number of targets, each for its own rows. Bad X or options raise the same ValueError on
    every rank, at the first target.
    Ad-hoc, one hinge epoch per class, batches of 256, paired rounds against separate fits:
    3 classes on 200,000 x 2**20 hashed rows (240 MB of X), medians 437 ms against 529
    (1.15x); 39 classes on the fortunes corpus (4 MB of X), 0.94x: there the checks' one
    sequential pass had been bringing X into cache for the epoch's reads in batch order.
    """
    comm = options.get("comm") or world()
    X, error = check_features(X)
    raise_if_any(comm, error)
    shared = _Shared(X, Orders())
    for y in targets:
        yield _fit_shared(shared, y, options)  # no reference kept while the caller has it


def _fit_shared(shared: _Shared, y: Any, options: dict[str, Any]) -> FitResult:
    """fit(shared.X, y, **options), X's checks skipped and the orders shared."""
    token = _SHARED.set(shared)
    try:
        return fit(shared.X, y, **options)
    finally:
        _SHARED.reset(token)


def training_report(objective: Objective) -> dict[str, Any]:
    """Collective: every rank's rows (at the end), compute time and time waiting in the
    Allreduce, the imbalance ratio max/mean of the compute times (1.0 is perfect balance; 0
    compute gives 1.0), the final partition, how many times the balancer moved rows, and each
    rank's number of CSR column tiles its full-batch kernels read (0: no copy, see kernels.tile_csr).

    {"ranks": [{"rank", "rows", "compute_s", "wait_s"}, ...], "imbalance": float,
     "evaluations": int, "partition": [[start, stop], ...], "rebalances": int,
     "csr_tiles": [int per rank]}; the same dict on every rank.
    """
    rows_per_rank = [len(p) for p in objective.ranges]
    tiles = 0 if objective.tiles is None else objective.tiles.n_tiles
    gathered = objective.comm.allgather_obj((objective.compute_seconds, objective.wait_seconds, tiles))
    return {"ranks": [{"rank": r, "rows": rows, "compute_s": c, "wait_s": w}
                      for r, (rows, (c, w, _)) in enumerate(zip(rows_per_rank, gathered))],
            "imbalance": _imbalance([c for c, _, _ in gathered]),
            "evaluations": objective.evaluations,
            "partition": balance.describe(objective.ranges), "rebalances": objective.rebalances,
            "csr_tiles": [t for _, _, t in gathered]}


def _imbalance(compute: list[float]) -> float:
    """max / mean of the ranks' compute times; 1.0 when nobody computed."""
    mean = sum(compute) / len(compute)
    return max(compute) / mean if mean > 0 else 1.0


def combine_reports(reports: list[dict[str, Any]]) -> dict[str, Any]:
    """One report for several fits on the same shards (one-vs-rest): times and evaluations add."""
    ranks = [{"rank": r["rank"], "rows": r["rows"],
              "compute_s": sum(rep["ranks"][i]["compute_s"] for rep in reports),
              "wait_s": sum(rep["ranks"][i]["wait_s"] for rep in reports)}
             for i, r in enumerate(reports[0]["ranks"])]
    return {"ranks": ranks,
            "imbalance": _imbalance([r["compute_s"] for r in ranks]),
            "evaluations": sum(rep["evaluations"] for rep in reports),
            "partition": reports[-1]["partition"],
            "rebalances": sum(rep["rebalances"] for rep in reports),
            "csr_tiles": reports[-1]["csr_tiles"]}


def _read_only(theta: np.ndarray) -> np.ndarray:
    view = theta.view()
    view.flags.writeable = False
    return view


def _mapping_norm(theta: np.ndarray, grad: np.ndarray, lr: float, penalty: optim.Penalty) -> float:
    """|theta - prox(theta - lr * grad)| / lr: the gradient norm, generalized to the L1 penalty."""
    if not penalty.l1:
        return float(np.linalg.norm(grad))
    moved = theta - lr * grad
    penalty.prox(moved, lr)
    return float(np.linalg.norm(theta - moved)) / lr


def _rule(objective: Objective, solver: str, momentum: float, nesterov: bool, beta1: float,
          beta2: float, weight_decay: float) -> optim.Rule:
    name = "sgd" if solver in ("gd", "sgd") else solver
    return optim.make_rule(name, objective.size, momentum=momentum, nesterov=nesterov,
                           beta1=beta1, beta2=beta2, weight_decay=weight_decay,
                           n_coef=objective.n_coef)


def _resume(path: str | os.PathLike[str], comm: Comm, config: dict[str, Any],
            objective: Objective, rule: optim.Rule, mini_batch: bool) -> State:
    """The state saved at path (collective: fastdp.checkpoint.load), checked against this run and
    loaded into rule. The state is the same on every rank, so are these checks' errors."""
    where = os.fspath(path)
    state = checkpoint.load(where, comm, config).state
    if state.theta.shape != (objective.size,):
        raise ValueError(f"cannot resume from {where}: it holds {state.theta.size} parameters, "
                         f"this run has {objective.size}")
    max_iter = config["max_iter"]
    if state.epoch >= max_iter if mini_batch else state.step > max_iter:
        at = f"epoch {state.epoch}" if mini_batch else f"step {state.step}"
        raise ValueError(f"cannot resume from {where} with max_iter={max_iter}: it is at {at} "
                         "already; resume with a larger max_iter")
    try:
        rule.set_state(state.rule)
    except ValueError as exc:
        raise ValueError(f"cannot resume from {where}: {exc}") from None
    return state


class _Guard:
    """The non-finite guard of a fit: checks each step's reduced sums and each state about to
    be checkpointed, and raises NonFiniteError with the step, the last good checkpoint and
    advice."""

    def __init__(self, solver: str, learning_rate: float, saver: Checkpointer) -> None:
        self.saver = saver
        self.unit = "evaluation" if solver == "lbfgs" else "step"
        self.advice = (f"try a smaller learning_rate than {learning_rate}" if solver != "lbfgs"
                       else "solver 'lbfgs' has no learning rate: look for extreme values in "
                            "the data, or scale it")

    def check(self, objective: Objective, step: int, epoch: int | None = None,
              batch: int | None = None) -> None:
        """Raise if the reduced sums of this step (mini-batch: of this epoch's batch) hold a
        NaN or inf."""
        found = objective.nonfinite()
        if found is not None:
            where = "" if epoch is None else f" (epoch {epoch}, batch {batch})"
            raise self._error(f"{found} at {self.unit} {step}{where}")

    def write(self, state: State) -> None:
        """Checkpoint state, after checking that its arrays are finite (else raise, so the
        last good checkpoint stays the newest)."""
        if not all(np.isfinite(a).all() for a in (state.theta, *state.rule.values())):
            raise self._error(f"the parameters became non-finite at step {state.step}")
        self.saver.write(state)

    def _error(self, what: str) -> NonFiniteError:
        parts = [what]
        if self.saver.last is not None:
            parts.append(f"the last good checkpoint is {self.saver.last[0]} "
                         f"(step {self.saver.last[1]})")
        elif self.saver.path is not None:
            parts.append(f"no checkpoint was written to {self.saver.path} yet")
        return NonFiniteError("; ".join(parts + [self.advice]))


@dataclass
class _Loop:
    """What the first-order training loops share: the objective, the state they start from
    (theta is updated in place), the update rule and schedule, and the per-step hooks."""

    objective: Objective
    state: State
    rule: optim.Rule
    lr_of: optim.Schedule
    callback: Callback | None
    progress: Progress
    saver: Checkpointer
    guard: _Guard


def _run_full_batch(loop: _Loop, max_iter: int,
                    tol: float) -> tuple[int, bool, list[float], float]:
    objective, rule = loop.objective, loop.rule
    theta, history = loop.state.theta, loop.state.history
    for step in range(loop.state.step, max_iter + 1):
        objective.signal = loop.saver.signal()
        value, grad = objective.evaluate(theta)
        loop.guard.check(objective, step)
        if loop.saver.due(step, objective.signals):
            loop.guard.write(State(theta, rule.state(), history, step))
        history.append(value)
        lr = loop.lr_of(step)
        grad_norm = _mapping_norm(theta, grad, lr, objective.penalty)
        if loop.callback is not None:
            loop.callback(step, _read_only(theta), value)
        loop.progress.update(step, value)
        if grad_norm < tol or step == max_iter:
            break
        rule.step(theta, grad, lr)
        objective.penalty.prox(theta, lr)
    return step, grad_norm < tol, history, grad_norm


def _run_mini_batch(loop: _Loop, batch_size: int, n_rows: int, max_iter: int, tol: float,
                    n_iter_no_change: int, random_state: int, overlap: bool,
                    orders: Orders | None) -> tuple[int, bool, list[float], float]:
    objective, rule, state = loop.objective, loop.rule, loop.state
    theta, history = state.theta, state.history
    batches = Batches(objective, n_rows, batch_size, random_state, orders)
    # one rank, nothing between two steps but their arithmetic: steps without Python between
    # them (fastdp.lazy_steps for CSR rows, fastdp.dense_steps for dense ones), else None
    context = {"callback": loop.callback,
               "checkpointing": loop.saver.path is not None or state.step > 0}
    lazy = (LazySteps(objective, batch_size, theta)
            if lazy_applies(objective, rule, loop.lr_of.lr0, **context) else None)
    compiled = (lazy if lazy is not None
                else DenseSteps(objective, rule, batch_size, batches.batches_per_chunk())
                if dense_applies(objective, rule, batch_size, **context) else None)
    best, stale, t = state.best, state.stale, state.step
    converged = False
    ready = None  # overlap: this step's batch, prepared during the previous step's reduction
    for epoch in range(state.epoch, max_iter):
        resumed = epoch == state.epoch  # the first epoch may resume in its middle
        total = state.epoch_loss if resumed else 0.0
        first = state.batch * batch_size if resumed else 0
        last = (n_rows - 1) // batch_size * batch_size  # where the epoch's last batch starts
        if compiled is not None and first < last:  # all batches but the last in one call
            rates = loop.lr_of.rates(t, t + (last - first) // batch_size)
            done, weighted = compiled.run(theta, batches.rows(epoch, first, last), batch_size,
                                          rates)
            first, t, total = first + done * batch_size, t + done, total + weighted
            ready = None  # overlap: what it prepared was this epoch's first batch
        for start in range(first, n_rows, batch_size):
            objective.signal = loop.saver.signal()
            if lazy is not None:
                lazy.gradient(theta, batches.rows(epoch, start), last=start + batch_size >= n_rows)
                grad = None
            elif overlap:  # (on one rank, compiled steps may have taken all but the last)
                batch = ready if ready is not None else batches.prepare(epoch, start)
                following = ((epoch, start + batch_size) if start + batch_size < n_rows
                             else (epoch + 1, 0))
                request = objective.start_gradient(theta, batch)
                ready = batches.prepare(*following, request) if following[0] < max_iter else None
                grad = objective.finish_gradient(theta, request)
            else:
                grad = objective.gradient(theta, batches.prepare(epoch, start))
            loop.guard.check(objective, t, epoch, start // batch_size)
            if loop.saver.due(t, objective.signals):
                loop.guard.write(State(theta, rule.state(), history, t, epoch, start // batch_size,
                                       total, best, stale))
            total += objective.batch_loss * min(batch_size, n_rows - start)
            if loop.callback is not None:
                loop.callback(t, _read_only(theta),
                              objective.batch_loss + objective.penalty.value(theta))
            lr = loop.lr_of(t)
            if grad is None:
                lazy.step(theta, lr)
            else:
                rule.step(theta, grad, lr)
                objective.penalty.prox(theta, lr)
            t += 1
        if lazy is not None:
            lazy.flush(theta)
        moves = objective.rebalances
        objective.end_epoch()
        if objective.rebalances != moves:
            ready = None  # prepared from the rows held before the move: prepare it again
        history.append(total / n_rows + objective.penalty.value(theta))
        loop.progress.update(epoch, history[-1])
        if history[-1] > best - tol:
            stale += 1
        else:
            stale = 0
        best = min(best, history[-1])
        if stale >= n_iter_no_change:
            converged = True
            break
    return (epoch + 1, converged, history,
            lazy.grad_norm if lazy is not None else float(np.linalg.norm(grad)))


def _run_lbfgs(objective, theta, max_iter, tol, callback, progress, guard):
    history = []

    def evaluate(x: np.ndarray) -> tuple[float, np.ndarray]:
        value, grad = objective.evaluate(x, smooth_only=True)
        guard.check(objective, len(history))
        history.append(value)
        if callback is not None:
            callback(len(history) - 1, _read_only(x), value)
        return value, grad.copy()

    iterations = []

    def on_iteration(x: np.ndarray) -> None:  # rank 0, once per L-BFGS iteration
        progress.update(len(iterations), history[-1])
        iterations.append(len(history))

    n_iter, converged = optim.lbfgs(evaluate, theta, objective.comm, max_iter=max_iter, tol=tol,
                                    callback=on_iteration)
    _, grad = objective.evaluate(theta, smooth_only=True)
    return n_iter, converged, history, float(np.linalg.norm(grad))


def fit_gd(X: Any, y: Any, *, loss: str = "squared", learning_rate: float = 0.1,
           max_iter: int = 1000, tol: float = 1e-6, alpha: float = 0.0,
           fit_intercept: bool = True, backend: str = "auto", comm: Comm | None = None,
           callback: Callback | None = None) -> FitResult:
    """Full-batch gradient descent with an L2 penalty alpha/2 * |coef|^2: `fit(..., solver="gd")`.

    X, y: this rank's rows, (m, n) and (m,). Stops after max_iter updates or when
    |gradient| < tol. callback(step, theta, objective) is called on every rank after each
    reduction, before the update, with theta = [coef..., intercept] read-only.
    """
    return fit(X, y, loss=loss, solver="gd", learning_rate=learning_rate, max_iter=max_iter,
               tol=tol, alpha=alpha, fit_intercept=fit_intercept, backend=backend, comm=comm,
               callback=callback)
