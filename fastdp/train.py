"""Data-parallel training of linear models: where data, kernels, communicator and optimizer meet.

Every step, identical on every rank:

    buf[:p+1] = kernel sums over this rank's rows of the batch   [grad_coef, grad_intercept, loss_sum]
    buf[p+1]  = this rank's row count in the batch
    Allreduce(SUM, buf)                                          one call, one flat float64 buffer
    grad      = buf[:p] / rows + penalty gradient               the penalty, added once, after the sum
    theta     = update rule(theta, grad, learning rate)          the same on every rank

Because the kernels return sums and the reduction carries the global row count, N ranks take the
serial step whatever the shard sizes (up to the order of floating-point additions).

overlap_chunks = k > 1 cuts this rank's rows of the step (its shard, or its part of the batch) into
k consecutive chunks, each with its own buffer [sums, row count]: chunk c's Iallreduce runs while
chunk c+1 is computed (request.test() between chunks drives MPICH's progress), then the k reduced
buffers are added in chunk order. Every buffer is full size (p + 2 values) and the last one is
reduced after all the compute, so a step cannot be shorter than compute + one full reduction:
the option hides only the reductions it adds. The sums are the same quantities, added in another
order: the steps equal the non-overlapped ones up to rounding.

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
from .comm import Comm, raise_if_any, world
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
    overlap_chunks: k consecutive chunks of the rows per evaluation, each reduced (Iallreduce)
    while the next is computed; 1: one blocking Allreduce, as without the option.
    """

    def __init__(self, X: Any, y: np.ndarray, loss: str, n_outputs: int, penalty: optim.Penalty,
                 fit_intercept: bool, backend: str, comm: Comm, ranges: list[range],
                 balancer: balance.LoadBalancer | None = None, rebalance_every: int = 1,
                 overlap_chunks: int = 1) -> None:
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
        # One buffer per chunk; with one chunk, buf itself.
        self.bufs = (self.buf[None] if overlap_chunks == 1
                     else np.empty((overlap_chunks, self.size + 2)))
        self._blocks: list[tuple[Any, np.ndarray]] | None = None  # full-batch chunks (views)
        self.grad = np.empty(self.size)
        self.scratch: dict[tuple[int, int], np.ndarray] = {}  # the kernels' block sums, by shape
        self.compute_seconds = 0.0  # this rank's time in its kernels (batch gathering included)
        self.wait_seconds = 0.0  # this rank's time in the Allreduce (with overlap: starting, testing
        # and waiting for the Iallreduces), waiting for the others included
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

    def gradient(self, theta: np.ndarray, rows: np.ndarray | None = None) -> np.ndarray:
        """Gradient at theta (without the L1 part) over all ranks' rows, or over the batch whose
        local part is `rows` (indices into this rank's shard); the mean loss is left in
        self.batch_loss. The returned gradient is a reused buffer."""
        if rows is None:
            self._maybe_rebalance()
        coef, intercept = self.split(theta)
        pending = []
        for c, buf in enumerate(self.bufs):
            start = time.perf_counter()
            X, y = self._chunk(c, rows)
            kernels.loss_grad_sums(self.loss, X, y, coef, intercept, buf[:self.size + 1],
                                   backend=self.backend, validate=False, scratch=self._scratch(X))
            if self.slowdown > 1.0:  # FASTDP_SLOWDOWN: this rank plays a slower node
                self._slow_down(X, y, coef, intercept, time.perf_counter() - start)
            buf[-1] = X.shape[0]
            reduce = time.perf_counter()
            if len(self.bufs) == 1:
                self.comm.allreduce_sum_(buf)
            else:  # start this chunk's sum and let the earlier ones progress
                pending.append(self.comm.iallreduce_sum_(buf))
                pending = [request for request in pending if not request.test()]
            self.compute_seconds += reduce - start
            self._since[1] += X.shape[0]
            self._since[2] += reduce - start
            self.wait_seconds += time.perf_counter() - reduce
        if len(self.bufs) > 1:
            reduce = time.perf_counter()
            for request in pending:
                request.wait()
            self.wait_seconds += time.perf_counter() - reduce
            np.sum(self.bufs, axis=0, out=self.buf)  # chunk by chunk, the same order on every rank
        self._since[0] += rows is None
        self.evaluations += 1
        count = self.buf[-1]
        np.divide(self.buf[:self.size], count, out=self.grad)
        if not self.fit_intercept:
            self.grad[self.n_coef:] = 0.0
        self.penalty.add_grad(theta, self.grad)
        self.batch_loss = self.buf[self.size] / count
        return self.grad

    def _chunk(self, c: int, rows: np.ndarray | None) -> tuple[Any, np.ndarray]:
        """(X, y) of chunk c of this rank's rows of the evaluation: all of the shard (rows None)
        or the batch rows `rows`, cut into len(self.bufs) consecutive chunks."""
        k = len(self.bufs)
        if rows is not None:
            part = rows if k == 1 else rows[len(rows) * c // k:len(rows) * (c + 1) // k]
            return self.X[part], self.y[part]
        if k == 1:
            return self.X, self.y
        if self._blocks is None:  # views, made once per partition of the rows
            m = self.X.shape[0]
            edges = [m * i // k for i in range(k + 1)]
            self._blocks = [(_row_block(self.X, a, b), self.y[a:b])
                            for a, b in zip(edges[:-1], edges[1:])]
        return self._blocks[c]

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
            self.scratch, self._blocks = {}, None
            self.rebalances += 1
            self.rebalance_every *= 2  # back off: each move must be earned over a longer window

    def evaluate(self, theta: np.ndarray, rows: np.ndarray | None = None,
                 smooth_only: bool = False) -> tuple[float, np.ndarray]:
        """(objective, gradient) at theta: `gradient` and the penalized mean loss, without the L1
        part when smooth_only."""
        grad = self.gradient(theta, rows)
        w = theta[:self.n_coef]
        reg = 0.5 * self.penalty.l2 * float(w @ w) if smooth_only else self.penalty.value(theta)
        return self.batch_loss + reg, grad


def _row_block(X: Any, start: int, stop: int) -> Any:
    """Rows start:stop of dense or CSR X without copying them (CSR: a new indptr only)."""
    if not sp.issparse(X):
        return X[start:stop]
    a, b = X.indptr[start], X.indptr[stop]
    return sp.csr_matrix((X.data[a:b], X.indices[a:b], X.indptr[start:stop + 1] - a),
                         shape=(stop - start, X.shape[1]), copy=False)


def _param_error(loss: str, solver: str, learning_rate: float, max_iter: int, tol: float,
                 alpha: float, l1_ratio: float, batch_size: int | None, backend: str,
                 overlap_chunks: int | None = None) -> str | None:
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
    if overlap_chunks is not None and (isinstance(overlap_chunks, bool)
                                       or not isinstance(overlap_chunks, (int, np.integer))
                                       or overlap_chunks < 1):
        return f"overlap_chunks must be an integer >= 1 or None, got {overlap_chunks!r}"
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
        rebalance_threshold: float = 0.05, overlap_chunks: int | None = None) -> FitResult:
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
    overlap_chunks: None or 1, one blocking Allreduce per evaluation; k > 1 cuts this rank's
       rows of each evaluation (its part of the batch, or its shard for full-batch solvers and
       lbfgs) into k chunks and reduces chunk c (MPI_Iallreduce) while computing chunk c+1.
       Every chunk's buffer is full size, so the option adds k - 1 reductions and hides them
       behind compute, but the last one stays exposed: a step is never shorter than compute +
       one reduction, which is what it takes without the option (see the module docstring).
       The model equals the one without overlap up to rounding (sums added in another order).
    Bad parameters or data on any rank raise the same ValueError on every rank.
    """
    comm = world() if comm is None else comm
    error = _param_error(loss, solver, learning_rate, max_iter, tol, alpha, l1_ratio, batch_size,
                         backend, overlap_chunks)
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
                          rebalance_every, int(overlap_chunks or 1))
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
                callback, progress)
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
                    weight_decay, random_state, callback, progress):
    rule = _rule(objective, solver, momentum, nesterov, beta1, beta2, weight_decay)
    steps_per_epoch = -(-n_rows // batch_size)
    lr_of = optim.Schedule(schedule, learning_rate, power_t=power_t,
                           total_steps=max_iter * steps_per_epoch)
    history, best, stale, t = [], np.inf, 0, 0
    converged = False
    for epoch in range(max_iter):
        order = np.random.default_rng([random_state, epoch]).permutation(n_rows)
        mine = objective.ranges[objective.comm.rank]  # the global rows held (the balancer moves them)
        total = 0.0
        for start in range(0, n_rows, batch_size):
            batch = order[start:start + batch_size]
            local = np.sort(batch[(batch >= mine.start) & (batch < mine.stop)] - mine.start)
            grad = objective.gradient(theta, local)
            total += objective.batch_loss * len(batch)
            if callback is not None:
                callback(t, _read_only(theta), objective.batch_loss + objective.penalty.value(theta))
            lr = lr_of(t)
            rule.step(theta, grad, lr)
            objective.penalty.prox(theta, lr)
            t += 1
        objective.end_epoch()
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
