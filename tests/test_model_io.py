"""fastdp.save / fastdp.load: one pickle-free file per model; loaded models predict exactly as the
saved ones; saves are atomic; bad files raise ValueError naming the path."""

import json
import os

import numpy as np
import pytest
from sklearn import linear_model
from sklearn.datasets import load_breast_cancer, load_iris
from sklearn.exceptions import NotFittedError
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

import fastdp
from fastdp import model_io
from fastdp.estimators import LinearRegression, LinearSVC, LogisticRegression, Ridge
from fastdp.text import HashingFeaturizer

FAST = {"max_iter": 20}  # a round trip needs a fitted model, not a converged one


@pytest.fixture(scope="module")
def breast_cancer():
    X, y = load_breast_cancer(return_X_y=True)
    return StandardScaler().fit_transform(X), y


@pytest.fixture(scope="module")
def iris():
    X, y = load_iris(return_X_y=True)
    return StandardScaler().fit_transform(X), np.array(["setosa", "versicolor", "virginica"])[y]


def assert_same_model(loaded, model, X):
    assert type(loaded) is type(model)
    assert loaded.get_params() == model.get_params()
    for name in ("coef_", "intercept_", "classes_", "n_iter_", "n_features_in_"):
        if hasattr(model, name):
            saved, back = getattr(model, name), getattr(loaded, name)
            assert type(back) is type(saved) and np.array_equal(back, saved), name
    np.testing.assert_array_equal(loaded.predict(X), model.predict(X))
    if hasattr(model, "decision_function"):
        np.testing.assert_array_equal(loaded.decision_function(X), model.decision_function(X))


@pytest.mark.parametrize("make", [
    lambda: LinearRegression(**FAST), lambda: Ridge(alpha=3.0, **FAST),
    lambda: LogisticRegression(C=0.5, **FAST), lambda: LinearSVC(C=0.1, **FAST),
    lambda: LinearSVC(loss="hinge", max_iter=20),
])
def test_round_trip_of_each_estimator(tmp_path, breast_cancer, make):
    X, y = breast_cancer
    model = make().fit(X, y)
    path = tmp_path / "model.fdp"
    fastdp.save(model, path, config={"data": "breast_cancer", "ranks": 1})
    assert_same_model(fastdp.load(path), model, X)
    assert model_io.read_metadata(path)["config"] == {"data": "breast_cancer", "ranks": 1}
    assert os.listdir(tmp_path) == ["model.fdp"]


@pytest.mark.parametrize("make", [lambda: LogisticRegression(**FAST), lambda: LinearSVC(**FAST)])
def test_round_trip_of_string_labelled_multiclass_classifiers(tmp_path, iris, make):
    X, y = iris
    model = make().fit(X, y)
    fastdp.save(model, tmp_path / "m.fdp")
    loaded = fastdp.load(tmp_path / "m.fdp")
    assert loaded.classes_.tolist() == ["setosa", "versicolor", "virginica"]
    assert_same_model(loaded, model, X)
    if hasattr(model, "predict_proba"):
        np.testing.assert_array_equal(loaded.predict_proba(X), model.predict_proba(X))


DOCS = ["good great fine", "bad awful poor", "great good film", "poor bad acting",
        "fine good nice", "awful terrible", "nice great", "terrible poor"] * 4


def test_text_model_loads_as_a_pipeline_that_predicts_from_strings(tmp_path):
    featurizer = HashingFeaturizer(n_features=2**12, ngram_range=(1, 2))
    labels = np.array(["pos", "neg"] * 16)
    model = LogisticRegression(**FAST).fit(featurizer.transform(DOCS), labels)
    path = tmp_path / "text.fdp"
    fastdp.save(model, path, featurizer=featurizer)
    pipeline = fastdp.load(path)
    assert isinstance(pipeline, Pipeline) and [n for n, _ in pipeline.steps] == ["featurizer", "model"]
    assert pipeline.named_steps["featurizer"].get_params() == featurizer.get_params()
    new = ["a good and great film", "bad, awful acting", "words never seen"]
    np.testing.assert_array_equal(pipeline.predict(new), model.predict(featurizer.transform(new)))
    assert pipeline.predict(["good great"]).tolist() == ["pos"]
    fastdp.save(pipeline, tmp_path / "again.fdp")  # a loaded pipeline saves as it was
    again = fastdp.load(tmp_path / "again.fdp")
    np.testing.assert_array_equal(again.predict(new), pipeline.predict(new))
    assert model_io.read_metadata(path)["featurizer"] == featurizer.to_dict()


def test_a_failed_save_leaves_the_previous_file_and_no_temporary_file(tmp_path, breast_cancer,
                                                                      monkeypatch):
    X, y = breast_cancer
    path = tmp_path / "model.fdp"
    fastdp.save(LinearRegression(max_iter=5).fit(X, y), path)
    before = path.read_bytes()
    ridge = Ridge(max_iter=5).fit(X, y)

    def fail_midway(f, **arrays):
        f.write(b"PK\x03\x04 half an archive")
        raise OSError("No space left on device")

    monkeypatch.setattr(np, "savez_compressed", fail_midway)
    with pytest.raises(OSError, match="No space left"):
        fastdp.save(ridge, path)
    monkeypatch.undo()
    monkeypatch.setattr(os, "fsync", lambda fd: (_ for _ in ()).throw(OSError("I/O error")))
    with pytest.raises(OSError, match="I/O error"):
        fastdp.save(ridge, path)
    assert path.read_bytes() == before and os.listdir(tmp_path) == ["model.fdp"]
    assert type(fastdp.load(path)) is LinearRegression


@pytest.fixture(scope="module")
def logistic(breast_cancer):
    return LogisticRegression(max_iter=5).fit(*breast_cancer)


@pytest.fixture
def saved(tmp_path, logistic):
    path = tmp_path / "model.fdp"
    fastdp.save(logistic, path)
    return path


def rewrite(path, change_metadata=None, **arrays):
    """Rewrite the model file at path with changed metadata and/or arrays."""
    with np.load(path, allow_pickle=False) as archive:
        members = {name: archive[name] for name in archive.files}
    metadata = json.loads(str(members.pop("metadata")))
    if change_metadata:
        change_metadata(metadata)
    members.update(arrays)
    with open(path, "wb") as f:
        np.savez(f, metadata=np.array(json.dumps(metadata)), **members)


@pytest.mark.parametrize("corrupt,message", [
    (lambda p: p.write_bytes(p.read_bytes()[: len(p.read_bytes()) // 2]), "not a readable fastdp model"),
    (lambda p: p.write_bytes(b"\x00" * 100), "not a readable fastdp model"),
    (lambda p: p.write_bytes(b""), "not a readable fastdp model"),
    (lambda p: np.save(open(p, "wb"), np.arange(3)), "a single .npy array"),
    (lambda p: rewrite(p, lambda m: m.update(version=99)), "unsupported model file version 99"),
    (lambda p: rewrite(p, lambda m: m.update(format="other")), "not a fastdp model file"),
    (lambda p: rewrite(p, lambda m: m.update(estimator="os.system")),
     "unknown estimator class 'os.system'"),
    (lambda p: rewrite(p, lambda m: m.update(estimator="SGDClassifier")),
     "unknown estimator class 'SGDClassifier'"),
    (lambda p: rewrite(p, lambda m: m["params"].update(gamma=1)), "parameters do not fit"),
    (lambda p: rewrite(p, lambda m: m.pop("params")), "'params' is missing or malformed"),
    (lambda p: rewrite(p, coef_=np.zeros((1, 3))), "does not match n_features_in_"),
    (lambda p: rewrite(p, extra=np.zeros(3)), r"unknown \['extra'\]"),
    (lambda p: rewrite(p, classes_=np.array([None, 1], dtype=object)), "not a readable fastdp"),
])
def test_a_bad_file_raises_value_error_naming_the_path(saved, corrupt, message):
    corrupt(saved)
    with pytest.raises(ValueError, match=f"{saved.name}.*{message}"):
        fastdp.load(saved)


def test_a_missing_classes_array_is_reported(saved):
    with np.load(saved, allow_pickle=False) as archive:
        members = {name: archive[name] for name in archive.files if name != "classes_"}
    with open(saved, "wb") as f:
        np.savez(f, **members)
    with pytest.raises(ValueError, match=r"missing \['classes_'\]"):
        fastdp.load(saved)


def test_load_of_a_missing_file_raises_file_not_found(tmp_path):
    with pytest.raises(FileNotFoundError):
        fastdp.load(tmp_path / "nope.fdp")


def test_save_refuses_what_it_cannot_write(tmp_path, breast_cancer):
    X, y = breast_cancer[0][:60], breast_cancer[1][:60]
    path = tmp_path / "m.fdp"
    with pytest.raises(ValueError, match=r"model must be one of fastdp.estimators' .*got "
                                         r"sklearn.linear_model.*LogisticRegression"):
        fastdp.save(linear_model.LogisticRegression().fit(X, y), path)

    class Custom(LogisticRegression):
        pass

    with pytest.raises(ValueError, match=r"got .*Custom"):
        fastdp.save(Custom(max_iter=5).fit(X, y), path)
    with pytest.raises(NotFittedError):
        fastdp.save(Ridge(), path)
    fitted = Ridge(max_iter=5).fit(X, y)
    with pytest.raises(ValueError, match=r"must hold only JSON values"):
        fastdp.save(fitted, path, config={"when": object()})
    with pytest.raises(ValueError, match=r"config must be a dict or None, got list"):
        fastdp.save(fitted, path, config=[1])
    with pytest.raises(ValueError, match=r"featurizer must be a fastdp.text.HashingFeaturizer"):
        fastdp.save(fitted, path, featurizer="hashing")
    assert os.listdir(tmp_path) == []
