import numpy as np
import pytest
import scipy.sparse as sp
from sklearn.datasets import load_digits
from sklearn.pipeline import Pipeline

import fastdp
from fastdp.estimators import LinearSVC, LogisticRegression, Ridge
from fastdp.text import HashingFeaturizer


@pytest.fixture(scope="module")
def digits():
    X, y = load_digits(return_X_y=True)
    return X / 16.0, y


@pytest.mark.parametrize("method", ["predict", "predict_proba", "decision_function"])
def test_serial_predict_is_the_models(digits, method):
    X, y = digits
    model = LogisticRegression(max_iter=50).fit(X, y)
    assert np.array_equal(fastdp.predict(model, X, method=method), getattr(model, method)(X))


def test_csr_text_and_string_labels(digits):
    X, y = digits
    names = np.array(["zero", "one", "two", "three", "four", "five", "six", "seven", "eight",
                      "nine"])[y]
    model = LinearSVC(max_iter=30).fit(sp.csr_matrix(X), names)
    assert np.array_equal(fastdp.predict(model, sp.csr_matrix(X)), model.predict(X))
    docs = ["good great fine", "bad awful poor", "great good", "poor bad"] * 5
    text = Pipeline([("featurizer", HashingFeaturizer(n_features=64)),
                     ("model", LogisticRegression())]).fit(docs, ["pos", "neg"] * 10)
    assert fastdp.predict(text, docs).tolist() == ["pos", "neg"] * 10


def test_regressor_and_rows_not_scattered(digits):
    X, y = digits
    model = Ridge().fit(X, y.astype(float))
    assert np.array_equal(fastdp.predict(model, X, scatter=False, gather_to=None), model.predict(X))


def test_bad_input_and_schedule(digits):
    X, y = digits
    model = LogisticRegression(max_iter=5).fit(X, y)
    with pytest.raises(ValueError, match="schedule must be one of"):
        fastdp.predict(model, X, schedule="guided")
    with pytest.raises(ValueError, match="chunk_rows must be an integer >= 1, got 0"):
        fastdp.predict(model, X, schedule="dynamic", chunk_rows=0)
    with pytest.raises(ValueError, match="X has 5 features, but LogisticRegression is expecting 64"):
        fastdp.predict(model, X[:, :5])


def test_serial_dynamic_schedule_is_the_models(digits):
    X, y = digits
    model = LogisticRegression(max_iter=20).fit(X, y)
    assert np.array_equal(fastdp.predict(model, X, schedule="dynamic", chunk_rows=5),
                          model.predict(X))
