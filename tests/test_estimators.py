"""fastdp's estimators against scikit-learn on its bundled data sets, objective for objective."""

import numpy as np
import pytest
import scipy.sparse as sp
from scipy.special import logsumexp
from sklearn import linear_model, svm
from sklearn.base import clone
from sklearn.datasets import load_breast_cancer, load_diabetes, load_digits, make_classification
from sklearn.preprocessing import StandardScaler

from fastdp.estimators import LinearRegression, LinearSVC, LogisticRegression, Ridge

TIGHT = {"tol": 1e-10, "max_iter": 10_000}


def standardized(loader):
    X, y = loader(return_X_y=True)
    return StandardScaler().fit_transform(X), y


def logistic_objective(model, X, y, C):
    """scikit-learn's objective: C * sum of cross-entropies + 1/2 |W|^2 (intercepts unpenalized)."""
    scores = X @ model.coef_.T + model.intercept_
    if scores.shape[1] == 1:
        scores = np.column_stack([np.zeros(len(X)), scores[:, 0]])
    index = np.searchsorted(model.classes_, y)
    ce = logsumexp(scores, axis=1) - scores[np.arange(len(y)), index]
    return C * ce.sum() + 0.5 * float((model.coef_ ** 2).sum())


def ridge_objective(model, X, y, alpha):
    r = y - X @ model.coef_ - model.intercept_
    return float(r @ r) + alpha * float(model.coef_ @ model.coef_)


@pytest.mark.parametrize("loader", [load_breast_cancer, load_digits])
@pytest.mark.parametrize("backend", ["numba", "cython"])
def test_logistic_regression_reaches_sklearns_objective(loader, backend):
    X, y = standardized(loader)
    ours = LogisticRegression(C=1.0, solver="lbfgs", backend=backend, **TIGHT).fit(X, y)
    ref = linear_model.LogisticRegression(C=1.0, **TIGHT).fit(X, y)
    f_ours, f_ref = logistic_objective(ours, X, y, 1.0), logistic_objective(ref, X, y, 1.0)
    assert f_ours <= f_ref * (1 + 1e-6)
    assert abs(f_ours - f_ref) <= 1e-6 * f_ref
    assert ours.score(X, y) == pytest.approx(ref.score(X, y), abs=1 / len(y))
    assert ours.coef_.shape == ref.coef_.shape and ours.intercept_.shape == ref.intercept_.shape
    np.testing.assert_allclose(ours.predict_proba(X), ref.predict_proba(X), atol=1e-4)


@pytest.mark.parametrize("model,ref,alpha", [
    (LinearRegression(solver="lbfgs", **TIGHT), linear_model.LinearRegression(), 0.0),
    (Ridge(alpha=1.0, solver="lbfgs", **TIGHT), linear_model.Ridge(alpha=1.0), 1.0),
    (Ridge(alpha=50.0, solver="lbfgs", **TIGHT), linear_model.Ridge(alpha=50.0), 50.0),
])
def test_regressors_reach_sklearns_objective(model, ref, alpha):
    X, y = standardized(load_diabetes)
    ours, ref = model.fit(X, y), ref.fit(X, y)
    f_ours, f_ref = ridge_objective(ours, X, y, alpha), ridge_objective(ref, X, y, alpha)
    assert abs(f_ours - f_ref) <= 1e-6 * f_ref
    assert ours.score(X, y) == pytest.approx(ref.score(X, y), abs=1e-6)
    np.testing.assert_allclose(ours.coef_, ref.coef_, rtol=1e-4, atol=1e-3)


@pytest.mark.parametrize("solver,kwargs", [
    ("gd", {"learning_rate": 0.1, "max_iter": 5000}),
    ("sgd", {"learning_rate": 0.01, "batch_size": 32, "max_iter": 200}),
    ("adam", {"learning_rate": 1.0, "max_iter": 1000}),
])
def test_first_order_solvers_get_close_to_lbfgs(solver, kwargs):
    X, y = standardized(load_diabetes)
    exact = Ridge(alpha=1.0, solver="lbfgs", **TIGHT).fit(X, y)
    approx = Ridge(alpha=1.0, solver=solver, tol=0, **kwargs).fit(X, y)
    f_exact = ridge_objective(exact, X, y, 1.0)
    assert ridge_objective(approx, X, y, 1.0) <= f_exact * 1.01


def test_linear_svc_matches_sklearn_accuracy():
    X, y = standardized(load_breast_cancer)
    ours = LinearSVC(C=0.1, **TIGHT).fit(X, y)
    ref = svm.LinearSVC(C=0.1, max_iter=100_000).fit(X, y)
    assert ours.score(X, y) >= ref.score(X, y) - 0.01
    assert ours.coef_.shape == (1, X.shape[1])
    Xd, yd = standardized(load_digits)
    multi = LinearSVC(C=0.1, **TIGHT).fit(Xd, yd)
    assert multi.coef_.shape == (10, 64) and multi.score(Xd, yd) > 0.95


def test_hinge_svc_with_sgd():
    X, y = make_classification(2000, 10, random_state=0)
    model = LinearSVC(loss="hinge", C=1.0, learning_rate=0.05, batch_size=64, max_iter=30).fit(X, y)
    assert model.score(X, y) > 0.85


def test_sparse_input_gives_the_dense_model():
    X, y = standardized(load_breast_cancer)
    X[np.abs(X) < 0.5] = 0.0
    dense = LogisticRegression(**TIGHT).fit(X, y)
    for fmt in (sp.csr_matrix, sp.csr_array, sp.csc_matrix):
        sparse = LogisticRegression(**TIGHT).fit(fmt(X), y)
        np.testing.assert_allclose(sparse.coef_, dense.coef_, rtol=1e-6, atol=1e-8)
        np.testing.assert_array_equal(sparse.predict(fmt(X)), dense.predict(X))


def test_string_labels_and_float32():
    X, y = standardized(load_breast_cancer)
    names = np.array(["benign", "malignant"])[y]
    model = LogisticRegression(**TIGHT).fit(X.astype(np.float32), names)
    assert list(model.classes_) == ["benign", "malignant"]
    assert set(model.predict(X)) <= set(names)
    assert model.score(X, names) > 0.95


def test_elastic_net_zeroes_coefficients():
    X, y = standardized(load_breast_cancer)
    l2 = LogisticRegression(C=0.05, solver="gd", learning_rate=0.5, max_iter=2000).fit(X, y)
    en = LogisticRegression(C=0.05, l1_ratio=0.9, solver="gd", learning_rate=0.5,
                            max_iter=2000).fit(X, y)
    assert (en.coef_ == 0).sum() > 5 and (l2.coef_ == 0).sum() == 0
    assert en.score(X, y) > 0.9


def test_clone_get_set_params_and_fit_result():
    model = LogisticRegression(C=3.0, solver="adam", batch_size=8)
    copy = clone(model)
    assert copy.get_params() == model.get_params()
    copy.set_params(C=0.5)
    assert copy.C == 0.5 and model.C == 3.0
    X, y = standardized(load_breast_cancer)
    fitted = LogisticRegression().fit(X, y)
    assert fitted.n_iter_ >= 1 and fitted.n_features_in_ == 30
    assert fitted.fit_result_.n_rows == len(y)


@pytest.mark.parametrize("make,X,y,message", [
    (LogisticRegression, np.ones((4, 2)), np.ones(4), "only one class"),
    (LinearSVC, np.ones((4, 2)), np.zeros(4), "only one class"),
    (LogisticRegression, np.ones((4, 2)), np.array([0.5, 1.5, 2.5, 3.1]), "Unknown label type"),
    (Ridge, np.ones((3, 2)), np.ones(4), "inconsistent numbers of samples"),
    (Ridge, np.array([[np.nan, 1.0]]), np.ones(1), "NaN"),
])
def test_bad_input(make, X, y, message):
    with pytest.raises(ValueError, match=message):
        make().fit(X, y)


@pytest.mark.parametrize("params,message", [
    ({"solver": "newton"}, "solver must be one of"),
    ({"C": 0.0}, "C must be a finite number > 0"),
    ({"solver": "lbfgs", "l1_ratio": 0.5}, "solver='lbfgs' needs a smooth objective"),
    ({"backend": "gpu"}, "backend must be one of"),
])
def test_bad_parameters(params, message):
    X, y = standardized(load_breast_cancer)
    with pytest.raises(ValueError, match=message):
        LogisticRegression(**params).fit(X, y)


def test_predict_checks_feature_count():
    X, y = standardized(load_breast_cancer)
    model = LogisticRegression().fit(X, y)
    with pytest.raises(ValueError, match="features"):
        model.predict(X[:, :5])
