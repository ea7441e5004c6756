"""Update rules, learning-rate schedules and penalties: what a step does with the reduced gradient.

Everything here acts on one flat float64 parameter vector theta = [coef..., intercept...] and the
global mean gradient that train.py has already reduced across ranks, so every rank applies the same
rule to the same numbers and stays in lockstep. Nothing here knows about data or kernels; only
`lbfgs` talks to the communicator, to let rank 0 drive scipy while the others follow.

    schedule = Schedule("cosine", 0.1, total_steps=1000)
    penalty  = Penalty(alpha=1e-3, l1_ratio=0.5, n_coef=n)     # elastic net on coef, not intercept
    rule     = make_rule("adam", n_params)
    rule.step(theta, grad, schedule(t)); penalty.prox(theta, schedule(t))
"""

from __future__ import annotations

import math
from typing import Callable, Protocol

import numpy as np
from scipy.linalg.blas import daxpy

from . import threads
from .comm import Comm

SCHEDULES = ("constant", "invscaling", "cosine")
RULES = ("sgd", "adam", "adamw")
_CONTINUE, _STOP = 0.0, 1.0
NEWTON_STEPS = 3
CG_MAX_ITER = 50
CG_RTOL = 1e-4
HVP_STEP = 1e-4


def axpy(x: np.ndarray, y: np.ndarray, a: float) -> None:
    """y += a * x in place, in one pass and without a temporary. x, y: (p,) float64, y contiguous."""
    if y.size:
        daxpy(x, y, a=a)


class Schedule:
    """Learning rate of step t (t = 0, 1, ...).

    constant:   lr0
    invscaling: lr0 / (t + 1) ** power_t                       (scikit-learn's 'invscaling')
    cosine:     lr_min + (lr0 - lr_min) * (1 + cos(pi * min(t, T) / T)) / 2, T = total_steps
    """

    def __init__(self, name: str, lr0: float, *, power_t: float = 0.5, total_steps: int = 1,
                 lr_min: float = 0.0) -> None:
        if name not in SCHEDULES:
            raise ValueError(f"schedule must be one of {list(SCHEDULES)}, got {name!r}")
        if not (math.isfinite(lr0) and lr0 > 0):
            raise ValueError(f"learning_rate must be a finite number > 0, got {lr0!r}")
        if not (math.isfinite(power_t) and power_t >= 0):
            raise ValueError(f"power_t must be a finite number >= 0, got {power_t!r}")
        if total_steps < 1:
            raise ValueError(f"total_steps must be >= 1, got {total_steps!r}")
        if not 0 <= lr_min <= lr0:
            raise ValueError(f"lr_min must be in [0, learning_rate={lr0}], got {lr_min!r}")
        self.name, self.lr0, self.power_t = name, float(lr0), float(power_t)
        self.total_steps, self.lr_min = int(total_steps), float(lr_min)

    def __call__(self, t: int) -> float:
        if self.name == "constant":
            return self.lr0
        if self.name == "invscaling":
            return self.lr0 / (t + 1) ** self.power_t
        frac = min(t, self.total_steps) / self.total_steps
        return self.lr_min + (self.lr0 - self.lr_min) * 0.5 * (1.0 + math.cos(math.pi * frac))

    def rates(self, first: int, stop: int) -> np.ndarray:
        """The rates of steps first..stop-1, (stop - first,) float64: each exactly self(t) (NumPy's
        power and cos may round otherwise, so only the constant schedule skips the calls)."""
        if self.name == "constant":
            return np.full(max(0, stop - first), self.lr0)
        return np.fromiter(map(self, range(first, stop)), float, count=max(0, stop - first))


class Penalty:
    """Elastic net on the first n_coef entries of theta (the intercept is never penalized):

        value(theta) = alpha * ((1 - l1_ratio) / 2 * |w|^2 + l1_ratio * |w|_1),   w = theta[:n_coef]

    The smooth L2 part enters the gradient (l2 * w, added by the training loop while it forms the
    mean gradient: fastdp.kernels.mean_gradient); the L1 part is applied by its proximal operator
    after each step (`prox`, soft-thresholding by lr * alpha * l1_ratio).
    """

    def __init__(self, alpha: float, l1_ratio: float, n_coef: int) -> None:
        if not (math.isfinite(alpha) and alpha >= 0):
            raise ValueError(f"alpha must be a finite number >= 0, got {alpha!r}")
        if not 0 <= l1_ratio <= 1:
            raise ValueError(f"l1_ratio must be in [0, 1], got {l1_ratio!r}")
        self.l2 = float(alpha) * (1.0 - l1_ratio)
        self.l1 = float(alpha) * l1_ratio
        self.n_coef = n_coef

    def value(self, theta: np.ndarray) -> float:
        """Penalty at theta (both parts)."""
        w = theta[:self.n_coef]
        value = 0.5 * self.l2 * float(w @ w)
        return value + self.l1 * float(np.abs(w).sum()) if self.l1 else value

    def prox(self, theta: np.ndarray, lr: float) -> None:
        """theta <- soft-threshold(theta, lr * l1) on the coef entries (in place)."""
        if self.l1:
            w = theta[:self.n_coef]
            np.copysign(np.maximum(np.abs(w) - lr * self.l1, 0.0), w, out=w)


class Rule(Protocol):
    """An update rule with its own state; `step` changes theta in place. `state` names the arrays
    that hold that state (views, for checkpoints); `set_state` copies such arrays back in."""

    def step(self, theta: np.ndarray, grad: np.ndarray, lr: float) -> None: ...
    def state(self) -> dict[str, np.ndarray]: ...
    def set_state(self, state: dict[str, np.ndarray]) -> None: ...


def _restore(owner: str, current: dict[str, np.ndarray], saved: dict[str, np.ndarray]) -> None:
    """Copy saved arrays into current ones, after checking their names, shapes and dtypes agree."""
    if sorted(saved) != sorted(current):
        raise ValueError(f"{owner} state must hold the arrays {sorted(current)}, got "
                         f"{sorted(saved)}")
    for name, array in current.items():
        value = np.asarray(saved[name])
        if value.shape != array.shape or value.dtype != array.dtype:
            raise ValueError(f"{owner} state {name!r} must be {array.dtype} of shape "
                             f"{array.shape}, got {value.dtype} of shape {value.shape}")
        array[...] = value


class SGD:
    """theta -= lr * grad, with optional heavy-ball or Nesterov momentum:

        v = momentum * v + grad;  theta -= lr * (grad + momentum * v if nesterov else v)
    """

    def __init__(self, n_params: int, momentum: float = 0.0, nesterov: bool = False) -> None:
        if not 0 <= momentum < 1:
            raise ValueError(f"momentum must be in [0, 1), got {momentum!r}")
        if nesterov and momentum == 0:
            raise ValueError("nesterov=True needs momentum > 0")
        self.momentum, self.nesterov = float(momentum), bool(nesterov)
        self.n_params = n_params
        # only momentum reads v: without, no array of n_params (a pass of zeros per fit, which
        # one-vs-rest pays once per class)
        self.velocity = np.zeros(n_params if self.momentum else 0)

    def step(self, theta: np.ndarray, grad: np.ndarray, lr: float) -> None:
        if self.momentum == 0:
            axpy(grad, theta, a=-lr)
            return
        v = self.velocity
        v *= self.momentum
        v += grad
        theta -= lr * (grad + self.momentum * v if self.nesterov else v)

    def state(self) -> dict[str, np.ndarray]:
        """{"velocity": (p,)} (zeros without momentum)."""
        return {"velocity": self.velocity if self.momentum else np.zeros(self.n_params)}

    def set_state(self, state: dict[str, np.ndarray]) -> None:
        """Restore what `state` returned."""
        _restore("SGD", self.state(), state)


class Adam:
    """Adam (Kingma & Ba) with bias correction; with weight_decay > 0 and decoupled=True it is AdamW
    (Loshchilov & Hutter): theta -= lr * weight_decay * theta on the coef entries, outside the
    moments."""

    def __init__(self, n_params: int, beta1: float = 0.9, beta2: float = 0.999, eps: float = 1e-8,
                 weight_decay: float = 0.0, n_coef: int | None = None) -> None:
        for name, beta in (("beta1", beta1), ("beta2", beta2)):
            if not 0 <= beta < 1:
                raise ValueError(f"{name} must be in [0, 1), got {beta!r}")
        if not eps > 0:
            raise ValueError(f"eps must be > 0, got {eps!r}")
        if not weight_decay >= 0:
            raise ValueError(f"weight_decay must be >= 0, got {weight_decay!r}")
        self.beta1, self.beta2, self.eps = float(beta1), float(beta2), float(eps)
        self.weight_decay = float(weight_decay)
        self.n_coef = n_params if n_coef is None else n_coef
        self.m = np.zeros(n_params)
        self.v = np.zeros(n_params)
        self.t = 0

    def step(self, theta: np.ndarray, grad: np.ndarray, lr: float) -> None:
        self.t += 1
        self.m *= self.beta1
        self.m += (1 - self.beta1) * grad
        self.v *= self.beta2
        self.v += (1 - self.beta2) * grad * grad
        m_hat = self.m / (1 - self.beta1 ** self.t)
        v_hat = self.v / (1 - self.beta2 ** self.t)
        if self.weight_decay:
            theta[:self.n_coef] -= lr * self.weight_decay * theta[:self.n_coef]
        theta -= lr * m_hat / (np.sqrt(v_hat) + self.eps)

    def state(self) -> dict[str, np.ndarray]:
        """{"m": (p,), "v": (p,), "t": 0-d int64}: the moments and the steps taken."""
        return {"m": self.m, "v": self.v, "t": np.array(self.t, dtype=np.int64)}

    def set_state(self, state: dict[str, np.ndarray]) -> None:
        """Restore what `state` returned."""
        current = self.state()
        _restore("Adam", current, state)
        self.t = int(current["t"])


def make_rule(name: str, n_params: int, *, momentum: float = 0.0, nesterov: bool = False,
              beta1: float = 0.9, beta2: float = 0.999, weight_decay: float = 0.01,
              n_coef: int | None = None) -> Rule:
    """The update rule called `name` ('sgd', 'adam' or 'adamw') for n_params parameters."""
    if name == "sgd":
        return SGD(n_params, momentum, nesterov)
    if name in ("adam", "adamw"):
        return Adam(n_params, beta1, beta2, weight_decay=weight_decay if name == "adamw" else 0.0,
                    n_coef=n_coef)
    raise ValueError(f"update rule must be one of {list(RULES)}, got {name!r}")


Evaluate = Callable[[np.ndarray], tuple[float, np.ndarray]]


def lbfgs(evaluate: Evaluate, theta: np.ndarray, comm: Comm, *, max_iter: int, tol: float,
          history: int = 10, callback: Callable[[np.ndarray], None] | None = None) -> tuple[int, bool]:
    """Minimize a smooth objective with scipy's L-BFGS-B, driven by rank 0.

    evaluate(theta) -> (objective, gradient) is COLLECTIVE: every rank must call it with the same
    theta (it reduces the shards' sums). Rank 0 runs scipy.optimize.minimize; before each of its
    evaluations it broadcasts [CONTINUE, theta] and every other rank, looping in `_follow`, receives
    it and evaluates its shard at that point. When scipy returns, rank 0 broadcasts [STOP, theta*,
    n_iter, converged], so every rank ends with the same parameters. Unless scipy stopped at
    max_iter, `_polish` first takes Newton steps judged by the gradient alone (scipy stops, or its
    line search fails, once f no longer decreases in floating point).

    theta: (p,) float64, the start; overwritten with the solution on every rank.
    Returns (n_iter, converged).
    """
    buf = np.empty(theta.size + 3)
    if comm.rank == 0:
        from scipy.optimize import minimize

        def fun(x: np.ndarray) -> tuple[float, np.ndarray]:
            buf[0] = _CONTINUE
            buf[1:1 + x.size] = x
            comm.bcast_(buf)
            return evaluate(buf[1:1 + x.size].copy())

        with threads.blas_threads(1):  # its many small BLAS calls run 30x slower threaded
            result = minimize(fun, theta.copy(), jac=True, method="L-BFGS-B", callback=callback,
                              options={"maxiter": max_iter, "gtol": tol, "ftol": 0.0,
                                       "maxcor": history, "maxfun": 2 * max_iter + 20})
        stalled = result.status != 1  # 1: max_iter or max evaluations reached; else f stopped falling
        x, grad_norm = (_polish(fun, result.x, result.jac.copy(), tol) if stalled
                        else (result.x, float(np.linalg.norm(result.jac))))
        buf[0] = _STOP
        buf[1:1 + theta.size] = x
        buf[-2] = result.nit
        buf[-1] = float(result.success or grad_norm <= tol)
        comm.bcast_(buf)
    else:
        _follow(evaluate, buf, comm)
    theta[:] = buf[1:1 + theta.size]
    return int(buf[-2]), bool(buf[-1])


def _polish(fun: Evaluate, x: np.ndarray, grad: np.ndarray, tol: float) -> tuple[np.ndarray, float]:
    """Newton steps from scipy's last iterate, judged by |grad| alone, while they shrink it.

    Near the minimum, scipy's line search stops once f no longer changes in floating point
    (relative change ~ 1e-16), which can leave |grad| ~ 1e-9 and, on an ill-conditioned problem,
    the solution known to only ~ 1e-7: too coarse for N ranks (which add in another order) to agree
    with 1 rank. The gradient is still accurate there, so a Newton step solved by conjugate
    gradients, with Hessian-vector products from gradient differences (one collective evaluation
    each), takes it the rest of the way. Returns (x, |grad at x|).
    """
    from scipy.sparse.linalg import LinearOperator, cg

    norm = float(np.linalg.norm(grad))
    for _ in range(NEWTON_STEPS):
        if norm <= tol:
            break

        def hessian_times(v: np.ndarray, x=x, grad=grad) -> np.ndarray:
            eps = HVP_STEP * (1.0 + float(np.linalg.norm(x))) / max(float(np.linalg.norm(v)), 1e-300)
            return (fun(x + eps * v)[1] - grad) / eps

        hessian = LinearOperator((x.size, x.size), matvec=hessian_times, dtype=np.float64)
        step, _ = cg(hessian, -grad, rtol=CG_RTOL, maxiter=CG_MAX_ITER)
        trial = x + step
        trial_grad = fun(trial)[1].copy()
        trial_norm = float(np.linalg.norm(trial_grad))
        if not trial_norm < norm:
            break
        x, grad, norm = trial, trial_grad, trial_norm
    return x, norm


def _follow(evaluate: Evaluate, buf: np.ndarray, comm: Comm) -> None:
    """Ranks other than 0: evaluate wherever rank 0 asks until it broadcasts STOP."""
    while True:
        comm.bcast_(buf)
        if buf[0] == _STOP:
            return
        evaluate(buf[1:-2].copy())
