"""Data-parallel training of linear models: where data, kernels, communicator and optimizer meet.

Every step, identical on every rank:

    buf[:p+1] = kernel sums over this rank's rows of the batch   [grad_coef, grad_intercept, loss_sum]
    buf[p+1]  = this rank's row count in the batch
    Allreduce(SUM, buf)                                          one call, one flat float64 buffer
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
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np
import scipy.sparse as sp
from threadpoolctl import threadpool_limits

from . import balance, kernels, optim, threads
from .comm import Comm, Request, raise_if_any, world
from .progress import Progress
from .validation import check_shard

SOLVERS = ("gd", "sgd", "adam", "adamw", "lbfgs")
MINI_BATCH_DEFAULT = 256

Callback = Callable[[int, np.ndarray, float], None]


@dataclass
class FitResult:
    """Outcome of a fit; identical on every rank.

    coef: (n,) for the scalar losses, (n, K) for softmax; intercept: float, or (K,) for softmax.
    n_iter: steps (full batch) or epochs (mini-batch); loss_history: objective per step / epoch.
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
                 balancer: balance.LoadBalancer | None = None, rebalance_every: int = 1) -> None:
        self.X, self.y, self.loss, self.backend, self.comm = X, y, loss, backend, comm
        self.ranges, self.balancer, self.rebalance_every = ranges, balancer, rebalance_every
        self.rebalances = 0
        self.slowdown = balance.slowdown_factor(comm.rank)
        self._since = [0, 0, 0.0]  # passes over the data, rows and compute seconds since a check
        self.n_features = X.shape[1]
        self.K = n_outputs
        self.n_coef = self.n_features * n_outputs
        self.size = self.n_coef + n_outputs
        self.penalty = penalty
        self.fit_intercept = fit_intercept
        self.buf = np.empty(self.size + 2)  # the step's global [grad sums, loss sum, row count]
        self.grad = np.empty(self.size)
        self.scratch: dict[tuple[int, int], np.ndarray] = {}  # the kernels' block sums, by shape
        self.compute_seconds = 0.0  # this rank's time in its kernels (batch preparation included)
        self.wait_seconds = 0.0  # this rank's time in the Allreduce (with overlap: starting the
        # Iallreduce and blocked in its wait), waiting for the others included
        self.evaluations = 0
        self.batch_loss = 0.0

    def split(self, theta: np.ndarray) -> tuple[np.ndarray, float | np.ndarray]:
        """Views (coef, intercept) of theta, shaped as the kernels want them."""
        if self.loss == "softmax":
            return theta[:self.n_coef].reshape(self.n_features, self.K), theta[self.n_coef:]
        return theta[:self.n_coef], float(theta[self.n_coef])

    def _scratch(self, X: Any) -> np.ndarray | None:
        """A reused scratch array for the kernels' per-block sums over X (batches of a few sizes)."""
        if self.backend == "numpy":
            return None
        shape = kernels.scratch_shape(self.loss, X, self.split(self.grad)[0])
        if shape not in self.scratch:
            self.scratch[shape] = np.empty(shape)
        return self.scratch[shape]

    def gradient(self, theta: np.ndarray, batch: Batch | None = None) -> np.ndarray:
        """Gradient at theta (without the L1 part) over all ranks' rows, or over the mini-batch
        whose part on this rank is `batch`; the mean loss is left in self.batch_loss. The returned
        gradient is a reused buffer."""
        if batch is None:
            self._maybe_rebalance()
        self._local_sums(theta, batch)
        reduce = time.perf_counter()
        self.comm.allreduce_sum_(self.buf)
        self.wait_seconds += time.perf_counter() - reduce
        return self._finish(theta)

    def start_gradient(self, theta: np.ndarray, batch: Batch) -> Request:
        """`gradient` over a batch, first half: this rank's sums, then their reduction started
        (MPI_Iallreduce). Until `finish_gradient(theta, request)`, the caller may do work that
        touches neither theta nor self.buf, and should call request.test() now and then (MPI
        progress, fastdp.comm)."""
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
        return self._finish(theta)

    def _local_sums(self, theta: np.ndarray, batch: Batch | None) -> None:
        """self.buf <- this rank's [grad sums, loss sum, row count] over its shard or the batch."""
        X, y = (self.X, self.y) if batch is None else (batch.X, batch.y)
        coef, intercept = self.split(theta)
        start = time.perf_counter()
        kernels.loss_grad_sums(self.loss, X, y, coef, intercept, self.buf[:self.size + 1],
                               backend=self.backend, validate=False, scratch=self._scratch(X))
        if self.slowdown > 1.0:  # FASTDP_SLOWDOWN: this rank plays a slower node
            self._slow_down(X, y, coef, intercept, time.perf_counter() - start)
        self.buf[-1] = X.shape[0]
        seconds = time.perf_counter() - start
        self.compute_seconds += seconds  # a batch's preparation was counted when it was prepared
        self._since[0] += batch is None
        self._since[1] += X.shape[0]
        self._since[2] += seconds + (0.0 if batch is None else batch.seconds)

    def _finish(self, theta: np.ndarray) -> np.ndarray:
        """The reduced self.buf -> self.grad and self.batch_loss."""
        self.evaluations += 1
        count = self.buf[-1]
        np.divide(self.buf[:self.size], count, out=self.grad)
        if not self.fit_intercept:
            self.grad[self.n_coef:] = 0.0
        self.penalty.add_grad(theta, self.grad)
        self.batch_loss = self.buf[self.size] / count
        return self.grad

    def _slow_down(self, X: Any, y: np.ndarray, coef: np.ndarray, intercept: Any,
                   seconds: float) -> None:
        """FASTDP_SLOWDOWN's factor f: do the kernel work int(f) times in all (into a throwaway
        buffer), then sleep for the fraction of f left, as a node f times slower would."""
        spare = np.empty(self.size + 1)
        for _ in range(int(self.slowdown) - 1):
            kernels.loss_grad_sums(self.loss, X, y, coef, intercept, spare, backend=self.backend,
                                   validate=False, scratch=self._scratch(X))
        time.sleep((self.slowdown - int(self.slowdown)) * seconds)

    def end_epoch(self) -> None:
        """A mini-batch epoch is over: one pass over the data, and a point where rows may move."""
        self._since[0] += 1
        self._maybe_rebalance()

    def _maybe_rebalance(self) -> None:
        """Every rebalance_every passes over the data: ask the balancer (collective) and, when it
        proposes a better partition, move the rows there (Alltoallv) and double the interval, so
        noisy timings cannot make the rows swing back and forth."""
        if self.balancer is None or self._since[0] < self.rebalance_every:
            return
        proposal = self.balancer.propose(self.X.shape[0], self._since[1], self._since[2])
        self._since = [0, 0, 0.0]
        if proposal is not None:
            self.X, self.y = balance.redistribute(self.comm, [self.X, self.y], self.ranges, proposal)
            self.ranges = proposal
            self.scratch = {}
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
    seconds their preparation took (counted as compute)."""

    X: Any
    y: np.ndarray
    seconds: float


class Batches:
    """This rank's part of every global mini-batch. Epoch e draws one permutation of the global
    rows from (random_state, e) and cuts it into batches of batch_size; this rank computes the
    rows of each batch it holds (objective.ranges[rank], read at each `prepare`: the balancer
    moves rows), in increasing order. None of it depends on theta.

    Dense X is gathered into one array reused from batch to batch (np.take into a preallocated
    buffer), so a Batch's arrays are valid until the next `prepare`; CSR rows are selected by
    scipy (X[rows]), a new matrix each time.
    """

    GATHER_BYTES = 1 << 21  # while a reduction is in flight: test it between pieces this large

    def __init__(self, objective: Objective, n_rows: int, batch_size: int,
                 random_state: int) -> None:
        self.objective, self.n_rows, self.batch_size = objective, n_rows, batch_size
        self.random_state = random_state
        self._epoch, self._order = -1, np.empty(0, dtype=np.int64)
        self._X: np.ndarray | None = None  # dense X's gather buffers
        self._y: np.ndarray | None = None

    def prepare(self, epoch: int, start: int, request: Request | None = None) -> Batch:
        """This rank's part of the batch of `epoch` whose global rows start at `start` in the
        epoch's permutation. request: a reduction in flight, tested between the pieces of the
        work so MPI moves it forward."""
        began = time.perf_counter()
        objective = self.objective
        if epoch != self._epoch:
            self._epoch = epoch
            self._order = np.random.default_rng([self.random_state, epoch]).permutation(self.n_rows)
        batch = self._order[start:start + self.batch_size]
        mine = objective.ranges[objective.comm.rank]
        rows = np.sort(batch[(batch >= mine.start) & (batch < mine.stop)] - mine.start)
        done = request is None or request.test()
        if sp.issparse(objective.X):
            X = objective.X[rows]
            done = done or request.test()
            y = objective.y[rows]
        else:
            X, y = self._buffers(len(rows))
            row_bytes = X.shape[1] * X.itemsize
            piece = max(1, len(rows) if done else self.GATHER_BYTES // max(1, row_bytes))
            for a in range(0, len(rows), piece):
                np.take(objective.X, rows[a:a + piece], axis=0, out=X[a:a + piece], mode="clip")
                done = done or request.test()
            np.take(objective.y, rows, out=y, mode="clip")  # rows are in range: no checks
        seconds = time.perf_counter() - began
        objective.compute_seconds += seconds
        return Batch(X, y, seconds)

    def _buffers(self, k: int) -> tuple[np.ndarray, np.ndarray]:
        """The first k rows of the dense gather buffers, (re)allocated for the shard's batches."""
        X, y = self.objective.X, self.objective.y
        if self._X is None or len(self._X) < k:  # first use, or more rows since the balancer moved
            rows = max(k, min(self.batch_size, X.shape[0]))
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
    if backend not in kernels.BACKENDS:
        return f"backend must be one of {list(kernels.BACKENDS)}, got {backend!r}"
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
        backend: str = "numba", comm: Comm | None = None, callback: Callback | None = None,
        verbose: bool = False, rebalance: bool = False, rebalance_every: int | None = None,
        rebalance_threshold: float = 0.05, overlap: bool = False) -> FitResult:
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
        X, y, error = check_shard(X, y, loss, n_classes)
    raise_if_any(comm, error)
    n, rows_per_rank = _agree_on_shapes(X, comm)
    K = n_classes if loss == "softmax" else 1
    used_threads = threads.configure(comm.local_size)
    mini_batch = solver == "sgd" or (batch_size is not None and solver != "lbfgs")
    if sp.issparse(X) and mini_batch:
        X = sp.csr_matrix(X)  # row selection (X[rows]) returns CSR for csr_matrix

    penalty = optim.Penalty(alpha, l1_ratio, n * K)
    offsets = np.cumsum([0] + rows_per_rank)
    ranges = [range(int(a), int(b)) for a, b in zip(offsets[:-1], offsets[1:])]
    balancer = balance.LoadBalancer(comm, rebalance_threshold) if rebalance else None
    if rebalance_every is None:
        rebalance_every = 1 if mini_batch else 10
    objective = Objective(X, y, loss, K, penalty, fit_intercept, backend, comm, ranges, balancer,
                          rebalance_every)
    theta = comm.bcast_(np.zeros(objective.size))
    progress = Progress(max_iter, enabled=verbose and comm.rank == 0)
    start = time.perf_counter()
    # The compiled kernels own the cores; BLAS only does small vector work between the steps.
    with threadpool_limits(None if backend == "numpy" else 1, "blas"):
        if solver == "lbfgs":
            n_iter, converged, history, grad_norm = _run_lbfgs(objective, theta, max_iter, tol,
                                                               callback, progress)
        elif not mini_batch:
            n_iter, converged, history, grad_norm = _run_full_batch(
                objective, theta, solver, learning_rate, schedule, power_t, max_iter, tol,
                momentum, nesterov, beta1, beta2, weight_decay, callback, progress)
        else:
            n_iter, converged, history, grad_norm = _run_mini_batch(
                objective, theta, solver, batch_size or MINI_BATCH_DEFAULT,
                sum(rows_per_rank), learning_rate, schedule, power_t, max_iter, tol,
                n_iter_no_change, momentum, nesterov, beta1, beta2, weight_decay, random_state,
                overlap, callback, progress)
    progress.close()
    report = training_report(objective)
    coef, intercept = objective.split(theta)
    return FitResult(coef=np.array(coef), intercept=np.array(intercept) if K > 1 else intercept,
                     n_iter=n_iter, converged=converged, loss_history=np.array(history),
                     grad_norm=grad_norm, n_rows=sum(rows_per_rank), n_ranks=comm.size,
                     threads=used_threads, seconds=time.perf_counter() - start, report=report)


def training_report(objective: Objective) -> dict[str, Any]:
    """Collective: every rank's rows (at the end), compute time and time waiting in the
    Allreduce, the imbalance ratio max/mean of the compute times (1.0 is perfect balance; 0
    compute gives 1.0), the final partition and how many times the balancer moved rows.

    {"ranks": [{"rank", "rows", "compute_s", "wait_s"}, ...], "imbalance": float,
     "evaluations": int, "partition": [[start, stop], ...], "rebalances": int}; the same dict
    on every rank.
    """
    rows_per_rank = [len(p) for p in objective.ranges]
    times = objective.comm.allgather_obj((objective.compute_seconds, objective.wait_seconds))
    return {"ranks": [{"rank": r, "rows": rows, "compute_s": c, "wait_s": w}
                      for r, (rows, (c, w)) in enumerate(zip(rows_per_rank, times))],
            "imbalance": _imbalance([c for c, _ in times]),
            "evaluations": objective.evaluations,
            "partition": balance.describe(objective.ranges), "rebalances": objective.rebalances}


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
            "rebalances": sum(rep["rebalances"] for rep in reports)}


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


def _run_full_batch(objective, theta, solver, learning_rate, schedule, power_t, max_iter, tol,
                    momentum, nesterov, beta1, beta2, weight_decay, callback, progress):
    rule = _rule(objective, solver, momentum, nesterov, beta1, beta2, weight_decay)
    lr_of = optim.Schedule(schedule, learning_rate, power_t=power_t, total_steps=max_iter)
    history = []
    for step in range(max_iter + 1):
        value, grad = objective.evaluate(theta)
        history.append(value)
        lr = lr_of(step)
        grad_norm = _mapping_norm(theta, grad, lr, objective.penalty)
        if callback is not None:
            callback(step, _read_only(theta), value)
        progress.update(step, value)
        if grad_norm < tol or step == max_iter:
            break
        rule.step(theta, grad, lr)
        objective.penalty.prox(theta, lr)
    return step, grad_norm < tol, history, grad_norm


def _run_mini_batch(objective, theta, solver, batch_size, n_rows, learning_rate, schedule,
                    power_t, max_iter, tol, n_iter_no_change, momentum, nesterov, beta1, beta2,
                    weight_decay, random_state, overlap, callback, progress):
    rule = _rule(objective, solver, momentum, nesterov, beta1, beta2, weight_decay)
    steps_per_epoch = -(-n_rows // batch_size)
    lr_of = optim.Schedule(schedule, learning_rate, power_t=power_t,
                           total_steps=max_iter * steps_per_epoch)
    batches = Batches(objective, n_rows, batch_size, random_state)
    history, best, stale, t = [], np.inf, 0, 0
    converged = False
    ready = None  # overlap: this step's batch, prepared during the previous step's reduction
    for epoch in range(max_iter):
        total = 0.0
        for start in range(0, n_rows, batch_size):
            batch = ready if ready is not None else batches.prepare(epoch, start)
            ready = None
            if overlap:
                following = ((epoch, start + batch_size) if start + batch_size < n_rows
                             else (epoch + 1, 0))
                request = objective.start_gradient(theta, batch)
                if following[0] < max_iter:
                    ready = batches.prepare(*following, request)
                grad = objective.finish_gradient(theta, request)
            else:
                grad = objective.gradient(theta, batch)
            total += objective.batch_loss * min(batch_size, n_rows - start)
            if callback is not None:
                callback(t, _read_only(theta), objective.batch_loss + objective.penalty.value(theta))
            lr = lr_of(t)
            rule.step(theta, grad, lr)
            objective.penalty.prox(theta, lr)
            t += 1
        moves = objective.rebalances
        objective.end_epoch()
        if objective.rebalances != moves:
            ready = None  # prepared from the rows held before the move: prepare it again
        history.append(total / n_rows + objective.penalty.value(theta))
        progress.update(epoch, history[-1])
        if history[-1] > best - tol:
            stale += 1
        else:
            stale = 0
        best = min(best, history[-1])
        if stale >= n_iter_no_change:
            converged = True
            break
    return epoch + 1, converged, history, float(np.linalg.norm(grad))


def _run_lbfgs(objective, theta, max_iter, tol, callback, progress):
    history = []

    def evaluate(x: np.ndarray) -> tuple[float, np.ndarray]:
        value, grad = objective.evaluate(x, smooth_only=True)
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
           fit_intercept: bool = True, backend: str = "numba", comm: Comm | None = None,
           callback: Callback | None = None) -> FitResult:
    """Full-batch gradient descent with an L2 penalty alpha/2 * |coef|^2: `fit(..., solver="gd")`.

    X, y: this rank's rows, (m, n) and (m,). Stops after max_iter updates or when
    |gradient| < tol. callback(step, theta, objective) is called on every rank after each
    reduction, before the update, with theta = [coef..., intercept] read-only.
    """
    return fit(X, y, loss=loss, solver="gd", learning_rate=learning_rate, max_iter=max_iter,
               tol=tol, alpha=alpha, fit_intercept=fit_intercept, backend=backend, comm=comm,
               callback=callback)
