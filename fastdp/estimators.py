"""scikit-learn-compatible linear models that train data-parallel.

    from fastdp.estimators import LogisticRegression
    model = LogisticRegression(C=1.0).fit(X_local, y_local)     # under mpiexec: this rank's rows

Each estimator follows scikit-learn's API (fit / predict / decision_function / score, get_params /
set_params, clone) and objective, so `fastdp.estimators.Ridge(alpha=1.0)` minimizes what
`sklearn.linear_model.Ridge(alpha=1.0)` minimizes. Under mpiexec, `fit(X_local, y_local)` takes the
rows this rank holds; the rows of all ranks together are the training set, and every rank ends with
the same coef_, intercept_ and classes_ (the union of the labels seen on all ranks). A rank may hold
no rows (shape (0, n_features)) when others do. Invalid input on any rank raises the same ValueError
on every rank. After fit, `training_report_` holds every rank's rows, time in its kernels and time
waiting in the Allreduce, and the imbalance ratio (fastdp.train.training_report).

`fit(X, y, checkpoint=..., checkpoint_every=..., resume=...)`: the checkpoint options of
fastdp.train.fit (checkpoint, checkpoint_every, checkpoint_seconds, checkpoint_keep, resume), for
the first-order solvers ('gd', 'sgd', 'adam', 'adamw'); not for LinearSVC's one-vs-rest fits.

scikit-learn's objectives, written as fastdp's mean loss + penalty (N = rows on all ranks):
- LinearRegression:   (1/N) sum 1/2 (x.w + b - y)^2
- Ridge(alpha):       |y - Xw - b|^2 + alpha |w|^2           = 2N * [mean squared loss + alpha/N * |w|^2 / 2]
- LogisticRegression(C): C sum logloss + 1/2 |w|^2           = C N * [mean logloss + 1/(C N) * |w|^2 / 2]
  (binary: one coefficient vector, logistic loss; more classes: multinomial softmax)
- LinearSVC(C):       C sum squared_hinge (or hinge) + 1/2 |w|^2, one-vs-rest for more classes
  (unlike liblinear, the intercept is not penalized)
"""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy.special import expit, softmax
from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_is_fitted, validate_data

from . import kernels, train
from .comm import Comm, raise_if_any, world

SMOOTH_DEFAULT_SOLVER = "lbfgs"
NONSMOOTH_DEFAULT_SOLVER = "sgd"


class _LinearModel(BaseEstimator):
    """What every fastdp linear estimator shares: validation across ranks, the call to
    fastdp.train.fit, and the linear decision function."""

    def __init__(self, *, fit_intercept: bool, solver: str, max_iter: int, tol: float,
                 learning_rate: float, batch_size: int | None, random_state: int, backend: str,
                 comm: Comm | None, verbose: bool, rebalance: bool, overlap: bool,
                 deterministic: bool) -> None:
        self.fit_intercept = fit_intercept
        self.solver = solver
        self.max_iter = max_iter
        self.tol = tol
        self.learning_rate = learning_rate
        self.batch_size = batch_size
        self.random_state = random_state
        self.backend = backend
        self.comm = comm
        self.verbose = verbose
        self.rebalance = rebalance
        self.overlap = overlap
        self.deterministic = deterministic

    def _comm(self) -> Comm:
        return world() if self.comm is None else self.comm

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.sparse = True
        return tags

    def _validate_fit_data(self, X: Any, y: Any, comm: Comm, classifier: bool) -> tuple[Any, Any]:
        """This rank's rows checked by scikit-learn's rules; any rank's error raised on all."""
        error = None
        try:
            X, y = validate_data(self, X, y, accept_sparse="csr", dtype=[np.float64, np.float32],
                                 y_numeric=not classifier, ensure_min_samples=int(comm.size == 1))
            if classifier:
                check_classification_targets(y)
        except ValueError as exc:
            error = str(exc)
        raise_if_any(comm, error)
        return X, y

    def _solver(self, smooth: bool) -> str:
        if self.solver != "auto":
            return self.solver
        return SMOOTH_DEFAULT_SOLVER if smooth else NONSMOOTH_DEFAULT_SOLVER

    def _fit_options(self, comm: Comm, *, loss: str, alpha: float, l1_ratio: float = 0.0,
                     n_classes: int | None = None, smooth: bool = True,
                     checkpointing: dict[str, Any] | None = None) -> dict[str, Any]:
        """fastdp.train.fit's options for this estimator's parameters."""
        return dict(loss=loss, n_classes=n_classes, solver=self._solver(smooth),
                    learning_rate=self.learning_rate, max_iter=self.max_iter, tol=self.tol,
                    alpha=alpha, l1_ratio=l1_ratio, fit_intercept=self.fit_intercept,
                    batch_size=self.batch_size, random_state=self.random_state,
                    backend=self.backend, comm=comm, verbose=self.verbose,
                    rebalance=self.rebalance, overlap=self.overlap,
                    deterministic=self.deterministic, **(checkpointing or {}))

    def _fit_linear(self, X: Any, y: np.ndarray, comm: Comm, **options: Any) -> train.FitResult:
        return train.fit(X, y, **self._fit_options(comm, **options))

    def _decision(self, X: Any) -> np.ndarray:
        """Margins X @ coef_.T + intercept_: (m,) for one output, (m, K) for K. Each row's margins
        do not depend on the other rows (fastdp.kernels.decision_function), so predictions are
        bitwise the same however the rows are split across ranks."""
        check_is_fitted(self)
        X = validate_data(self, X, accept_sparse="csr", dtype=[np.float64, np.float32], reset=False)
        if np.ndim(self.coef_) == 1 or self.coef_.shape[0] == 1:
            return kernels.decision_function(X, np.ravel(self.coef_), np.ravel(self.intercept_)[0])
        return kernels.decision_function(X, self.coef_.T, self.intercept_)


def _global_rows(y: np.ndarray, comm: Comm) -> int:
    return int(sum(comm.allgather_obj(len(y))))


class _Regressor(RegressorMixin, _LinearModel):
    """Squared loss with an optional ridge penalty given in scikit-learn's Ridge scale."""

    def fit(self, X: Any, y: Any, **checkpointing: Any) -> "_Regressor":
        """Fit on this rank's rows X (m, n) dense or CSR and targets y (m,); returns self.
        checkpointing: fastdp.train.fit's checkpoint options (checkpoint, checkpoint_every,
        checkpoint_seconds, checkpoint_keep, resume)."""
        comm = self._comm()
        X, y = self._validate_fit_data(X, y, comm, classifier=False)
        n_rows = _global_rows(y, comm)
        result = self._fit_linear(X, y, comm, loss="squared",
                                  alpha=self._ridge_alpha_value() / max(n_rows, 1),
                                  checkpointing=checkpointing)
        self.coef_ = result.coef
        self.intercept_ = float(result.intercept)
        self.n_iter_ = max(int(result.n_iter), 1)
        self.fit_result_ = result
        self.training_report_ = result.report
        return self

    def _ridge_alpha_value(self) -> float:
        """alpha in scikit-learn's Ridge scale (0 for plain least squares)."""
        return 0.0

    def predict(self, X: Any) -> np.ndarray:
        """Predicted targets (m,)."""
        return self._decision(X)


class LinearRegression(_Regressor):
    """Ordinary least squares, data-parallel (scikit-learn's LinearRegression objective).

    solver: 'auto' (= 'lbfgs'), 'lbfgs', 'gd', 'sgd', 'adam' or 'adamw'; learning_rate and
    batch_size apply to the first-order solvers; backend: 'auto' (picked by the data's format
    and the loss: fastdp.kernels.pick_backend), 'numba', 'cython' or 'numpy'; comm: a fastdp
    communicator (default fastdp.comm.world()); verbose: progress bar on rank 0;
    rebalance: move rows from slow ranks to fast ones while training (fastdp.balance);
    overlap: with mini-batch solvers, reduce a step's gradient while the next batch is gathered;
    deterministic: the same model, bit for bit, for any number of ranks and threads
    (fastdp.deterministic).
    """

    def __init__(self, *, fit_intercept: bool = True, solver: str = "auto", max_iter: int = 1000,
                 tol: float = 1e-8, learning_rate: float = 0.1, batch_size: int | None = None,
                 random_state: int = 0, backend: str = "auto", comm: Comm | None = None,
                 verbose: bool = False, rebalance: bool = False, overlap: bool = False,
                 deterministic: bool = False) -> None:
        super().__init__(fit_intercept=fit_intercept, solver=solver, max_iter=max_iter, tol=tol,
                         learning_rate=learning_rate, batch_size=batch_size,
                         random_state=random_state, backend=backend, comm=comm, verbose=verbose,
                         rebalance=rebalance, overlap=overlap,
                         deterministic=deterministic)


class Ridge(_Regressor):
    """Least squares with an L2 penalty: minimizes |y - Xw - b|^2 + alpha |w|^2 like
    scikit-learn's Ridge; other parameters as LinearRegression."""

    def __init__(self, alpha: float = 1.0, *, fit_intercept: bool = True, solver: str = "auto",
                 max_iter: int = 1000, tol: float = 1e-8, learning_rate: float = 0.1,
                 batch_size: int | None = None, random_state: int = 0, backend: str = "auto",
                 comm: Comm | None = None, verbose: bool = False,
                 rebalance: bool = False, overlap: bool = False,
                 deterministic: bool = False) -> None:
        self.alpha = alpha
        super().__init__(fit_intercept=fit_intercept, solver=solver, max_iter=max_iter, tol=tol,
                         learning_rate=learning_rate, batch_size=batch_size,
                         random_state=random_state, backend=backend, comm=comm, verbose=verbose,
                         rebalance=rebalance, overlap=overlap,
                         deterministic=deterministic)

    def _ridge_alpha_value(self) -> float:
        # sklearn's alpha multiplies |w|^2 against the SUM of squared residuals; fastdp's penalty
        # alpha/2 |w|^2 stands beside the MEAN of half squared residuals: alpha_fastdp = alpha / N.
        return float(self.alpha)


class _Classifier(ClassifierMixin, _LinearModel):
    """Label handling shared by the classifiers: classes_ is the sorted union over ranks."""

    def _classes(self, y: np.ndarray, comm: Comm) -> np.ndarray:
        seen = comm.allgather_obj(np.unique(y))
        classes = np.unique(np.concatenate(seen))
        if len(classes) < 2:
            raise ValueError(f"{type(self).__name__} needs samples of at least 2 classes, but the "
                             f"data (on all ranks) contains only one class: {classes[0]!r}")
        return classes

    def _alpha(self, n_rows: int) -> float:
        if not (np.isfinite(self.C) and self.C > 0):
            raise ValueError(f"C must be a finite number > 0, got {self.C!r}")
        return 1.0 / (self.C * n_rows)

    def decision_function(self, X: Any) -> np.ndarray:
        """Margins X @ coef_.T + intercept_: (m,) for two classes (positive: classes_[1]), else
        (m, n_classes)."""
        return self._decision(X)

    def predict(self, X: Any) -> np.ndarray:
        """Predicted class labels (m,)."""
        scores = self.decision_function(X)
        index = (scores > 0).astype(int) if scores.ndim == 1 else scores.argmax(axis=1)
        return self.classes_[index]


class LogisticRegression(_Classifier):
    """Logistic regression, binary or multinomial (softmax), data-parallel.

    Minimizes C * sum of log-losses + (1 - l1_ratio)/2 |w|^2 + l1_ratio |w|_1 (scikit-learn's
    objective with penalty 'l2' for l1_ratio=0, elastic net otherwise). solver 'auto' is 'lbfgs'
    (smooth) or 'sgd' (l1_ratio > 0); other parameters as LinearRegression.
    """

    def __init__(self, C: float = 1.0, *, l1_ratio: float = 0.0, fit_intercept: bool = True,
                 solver: str = "auto", max_iter: int = 1000, tol: float = 1e-6,
                 learning_rate: float = 0.1, batch_size: int | None = None, random_state: int = 0,
                 backend: str = "auto", comm: Comm | None = None, verbose: bool = False,
                 rebalance: bool = False, overlap: bool = False,
                 deterministic: bool = False) -> None:
        self.C = C
        self.l1_ratio = l1_ratio
        super().__init__(fit_intercept=fit_intercept, solver=solver, max_iter=max_iter, tol=tol,
                         learning_rate=learning_rate, batch_size=batch_size,
                         random_state=random_state, backend=backend, comm=comm, verbose=verbose,
                         rebalance=rebalance, overlap=overlap,
                         deterministic=deterministic)

    def fit(self, X: Any, y: Any, **checkpointing: Any) -> "LogisticRegression":
        """Fit on this rank's rows X (m, n) dense or CSR and labels y (m,); returns self.
        checkpointing: fastdp.train.fit's checkpoint options (checkpoint, checkpoint_every,
        checkpoint_seconds, checkpoint_keep, resume)."""
        comm = self._comm()
        X, y = self._validate_fit_data(X, y, comm, classifier=True)
        self.classes_ = self._classes(y, comm)
        alpha = self._alpha(_global_rows(y, comm))
        K = len(self.classes_)
        if K == 2:
            target = np.where(y == self.classes_[1], 1.0, -1.0)
            result = self._fit_linear(X, target, comm, loss="logistic", alpha=alpha,
                                      l1_ratio=self.l1_ratio, smooth=self.l1_ratio == 0,
                                      checkpointing=checkpointing)
            self.coef_ = result.coef.reshape(1, -1)
            self.intercept_ = np.array([result.intercept], dtype=float)
        else:
            target = np.searchsorted(self.classes_, y)
            result = self._fit_linear(X, target, comm, loss="softmax", alpha=alpha,
                                      l1_ratio=self.l1_ratio, n_classes=K,
                                      smooth=self.l1_ratio == 0, checkpointing=checkpointing)
            # (K, n) as scikit-learn's, a view of the fit's (n, K): no transposing copy, and
            # X @ coef_.T reads the (n, K) array in place (SciPy copies an F-ordered one)
            self.coef_ = result.coef.T
            self.intercept_ = np.array(result.intercept, dtype=float)
        self.n_iter_ = max(int(result.n_iter), 1)
        self.fit_result_ = result
        self.training_report_ = result.report
        return self

    def predict_proba(self, X: Any) -> np.ndarray:
        """Class probabilities (m, n_classes), columns in the order of classes_."""
        scores = self.decision_function(X)
        if scores.ndim == 1:
            p = expit(scores)
            return np.column_stack([1.0 - p, p])
        return softmax(scores, axis=1)

    def predict_log_proba(self, X: Any) -> np.ndarray:
        """log of predict_proba (m, n_classes)."""
        return np.log(self.predict_proba(X))


class LinearSVC(_Classifier):
    """Linear support vector classifier: minimizes C * sum of loss + 1/2 |w|^2 with loss
    'squared_hinge' (default, as scikit-learn) or 'hinge'; one-vs-rest for more than two classes.
    solver 'auto' is 'lbfgs' for squared_hinge and 'sgd' for hinge."""

    def __init__(self, C: float = 1.0, *, loss: str = "squared_hinge", fit_intercept: bool = True,
                 solver: str = "auto", max_iter: int = 1000, tol: float = 1e-6,
                 learning_rate: float = 0.1, batch_size: int | None = None, random_state: int = 0,
                 backend: str = "auto", comm: Comm | None = None, verbose: bool = False,
                 rebalance: bool = False, overlap: bool = False,
                 deterministic: bool = False) -> None:
        self.C = C
        self.loss = loss
        super().__init__(fit_intercept=fit_intercept, solver=solver, max_iter=max_iter, tol=tol,
                         learning_rate=learning_rate, batch_size=batch_size,
                         random_state=random_state, backend=backend, comm=comm, verbose=verbose,
                         rebalance=rebalance, overlap=overlap,
                         deterministic=deterministic)

    def fit(self, X: Any, y: Any, **checkpointing: Any) -> "LinearSVC":
        """Fit on this rank's rows X (m, n) dense or CSR and labels y (m,); returns self.
        checkpointing: fastdp.train.fit's checkpoint options (checkpoint, checkpoint_every,
        checkpoint_seconds, checkpoint_keep, resume), for two classes only: a checkpoint holds
        one fit, and more classes take one fit per class (one-vs-rest)."""
        if self.loss not in ("hinge", "squared_hinge"):
            raise ValueError(f"loss must be 'hinge' or 'squared_hinge', got {self.loss!r}")
        comm = self._comm()
        X, y = self._validate_fit_data(X, y, comm, classifier=True)
        self.classes_ = self._classes(y, comm)
        alpha = self._alpha(_global_rows(y, comm))
        positives = self.classes_[1:] if len(self.classes_) == 2 else self.classes_
        if len(positives) > 1 and any(checkpointing.get(name) is not None
                                      for name in ("checkpoint", "resume")):
            raise ValueError(f"checkpoint and resume need one fit, but LinearSVC fits one model "
                             f"per class for the {len(positives)} classes (one-vs-rest); use "
                             "LogisticRegression (multinomial), or train without checkpoints")
        # Each class's coefficients go into their row as soon as its fit ends, and the fit's
        # own arrays back to the allocator, for the next class's fit to reuse: keeping every
        # result until the end (and stacking them then) made each fit fault in fresh pages
        # (20,503 page faults against 551 in a 39-class fit on 2**18 columns, ad-hoc).
        # One train.fit_each over the classes: X checked once, each epoch's order drawn once.
        coef = np.empty((len(positives), X.shape[1]))
        intercepts, n_iters, reports = [], [], []
        options = self._fit_options(comm, loss=self.loss, alpha=alpha,
                                    smooth=self.loss == "squared_hinge",
                                    checkpointing=checkpointing)
        targets = (np.where(y == label, 1.0, -1.0) for label in positives)
        for row, result in zip(coef, train.fit_each(X, targets, **options)):
            row[:] = result.coef
            intercepts.append(result.intercept)
            n_iters.append(int(result.n_iter))
            reports.append(result.report)
            del result  # before the next class's fit starts
        self.coef_ = coef
        self.intercept_ = np.array(intercepts, dtype=float)
        self.n_iter_ = max(max(n_iters), 1)
        self.training_report_ = train.combine_reports(reports)
        return self
