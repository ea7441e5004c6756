"""Saving and loading fitted models: one file, no pickle.

    fastdp.save(model, "model.fdp", featurizer=HashingFeaturizer(...), config={"data": "train.txt"})
    model = fastdp.load("model.fdp")          # the estimator, or Pipeline(featurizer -> estimator)
    model.predict(["some text"])

The file is a compressed .npz archive whose members are numeric or unicode arrays only, read back
with np.load(allow_pickle=False): loading a file never runs code from it. Its members:

    metadata        a JSON document (0-d unicode array): {"format": "fastdp-model", "version": 1,
                    "estimator": class name, "params": get_params() without comm,
                    "featurizer": HashingFeaturizer.to_dict() or null, "config": the training
                    configuration or null, "scalars": fitted attributes that are Python numbers}
    coef_, intercept_, classes_, n_iter_, n_features_in_, feature_names_in_
                    the fitted attributes the estimator has (classes_ numeric or str)

Only the classes of fastdp.estimators are saved and loaded. A save is atomic (temporary file,
fsync, rename): it never leaves a partial file at the path.
"""

from __future__ import annotations

import json
import os
from typing import Any

import numpy as np
from sklearn.pipeline import Pipeline
from sklearn.utils.validation import check_is_fitted

from .estimators import LinearRegression, LinearSVC, LogisticRegression, Ridge
from .data import atomic_file
from .data.archive import read_archive
from .text import HashingFeaturizer

FORMAT_NAME = "fastdp-model"
FORMAT_VERSION = 1
ESTIMATORS: dict[str, type] = {cls.__name__: cls for cls in
                               (LinearRegression, Ridge, LogisticRegression, LinearSVC)}
FITTED_ATTRIBUTES = ("coef_", "intercept_", "classes_", "n_iter_", "n_features_in_",
                     "feature_names_in_")
REQUIRED_ATTRIBUTES = ("coef_", "intercept_", "n_iter_", "n_features_in_")
CLASSIFIERS = ("LogisticRegression", "LinearSVC")
UNSAVED_PARAMS = ("comm",)
PIPELINE_STEPS = ("featurizer", "model")


def _json(value: Any, name: str) -> str:
    def plain(obj: Any) -> Any:
        if isinstance(obj, np.generic):
            return obj.item()
        raise TypeError(f"{type(obj).__name__} is not JSON serializable")

    try:
        return json.dumps(value, default=plain, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{name} must hold only JSON values (str, numbers, bools, None, lists, "
                         f"dicts): {exc}") from None


def _fitted_arrays(model: Any) -> tuple[dict[str, np.ndarray], list[str]]:
    """The fitted attributes as arrays pickle-free np.save can write, and the names of those that
    are Python numbers (restored as such)."""
    arrays, scalars = {}, []
    for name in FITTED_ATTRIBUTES:
        if not hasattr(model, name):
            continue
        value = getattr(model, name)
        array = np.asarray(value)
        if array.dtype == object:
            if not all(isinstance(item, str) for item in array.ravel()):
                raise ValueError(f"model.{name} holds objects other than str, which cannot be "
                                 "saved without pickle")
            array = array.astype(str)
        if array.dtype.kind not in "biufU":
            raise ValueError(f"model.{name} has dtype {array.dtype}, which cannot be saved")
        arrays[name] = array
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            scalars.append(name)
    return arrays, scalars


def _unpack(model: Any,
            featurizer: HashingFeaturizer | None) -> tuple[Any, HashingFeaturizer | None]:
    """(estimator, featurizer) from a fastdp estimator, or from a Pipeline that load returned."""
    if isinstance(model, Pipeline):
        names = tuple(name for name, _ in model.steps)
        if names != PIPELINE_STEPS or not isinstance(model.steps[0][1], HashingFeaturizer):
            raise ValueError(f"model: a Pipeline must have the steps {list(PIPELINE_STEPS)} with a "
                             f"HashingFeaturizer first, got steps {list(names)}")
        if featurizer is not None:
            raise ValueError("featurizer must be None when model is a Pipeline (it has one)")
        return model.steps[1][1], model.steps[0][1]
    return model, featurizer


def save(model: Any, path: str | os.PathLike[str], *, featurizer: HashingFeaturizer | None = None,
         config: dict[str, Any] | None = None) -> None:
    """Write a fitted fastdp estimator to one file at path, atomically.

    model:      a fitted LinearRegression, Ridge, LogisticRegression or LinearSVC from
                fastdp.estimators, or a Pipeline([("featurizer", ...), ("model", ...)]) as load
                returns for text models
    featurizer: the HashingFeaturizer the model's features came from, for text models
    config:     the training configuration (JSON values), kept in the file for the record
    """
    estimator, featurizer = _unpack(model, featurizer)
    name = type(estimator).__name__
    if ESTIMATORS.get(name) is not type(estimator):
        raise ValueError(f"model must be one of fastdp.estimators' {', '.join(ESTIMATORS)}, "
                         f"got {type(estimator).__module__}.{type(estimator).__qualname__}")
    check_is_fitted(estimator)
    if featurizer is not None and not isinstance(featurizer, HashingFeaturizer):
        raise ValueError(f"featurizer must be a fastdp.text.HashingFeaturizer or None, got "
                         f"{type(featurizer).__name__}")
    if config is not None and not isinstance(config, dict):
        raise ValueError(f"config must be a dict or None, got {type(config).__name__}")
    params = {key: value for key, value in estimator.get_params(deep=False).items()
              if key not in UNSAVED_PARAMS}
    arrays, scalars = _fitted_arrays(estimator)
    metadata = {"format": FORMAT_NAME, "version": FORMAT_VERSION, "estimator": name,
                "params": params, "scalars": scalars,
                "featurizer": None if featurizer is None else featurizer.to_dict(),
                "config": config}
    document = _json(metadata, "params and config")
    with atomic_file(path) as f:
        np.savez_compressed(f, metadata=np.array(document), **arrays)


def read_metadata(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The metadata of a model file: format, version, estimator (class name), params, featurizer
    (settings or None), config (the training configuration or None), scalars."""
    return _read(path)[0]


def load(path: str | os.PathLike[str]) -> Any:
    """The fitted model saved at path: the estimator, or, when it was saved with a featurizer,
    Pipeline([("featurizer", HashingFeaturizer), ("model", estimator)]), which predicts from a list
    of documents. Raises FileNotFoundError for a missing file and ValueError naming the path for a
    file that is not a fastdp model this version can read."""
    metadata, arrays = _read(path)
    where = os.fspath(path)
    try:
        estimator = ESTIMATORS[metadata["estimator"]](**metadata["params"])
    except TypeError as exc:
        raise ValueError(f"{where}: the saved parameters do not fit "
                         f"{metadata['estimator']} ({exc})") from None
    for name, array in arrays.items():
        setattr(estimator, name, array.item() if name in metadata["scalars"] else array)
    if metadata["featurizer"] is None:
        return estimator
    try:
        featurizer = HashingFeaturizer.from_dict(metadata["featurizer"])
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{where}: invalid featurizer settings ({exc})") from None
    if featurizer.n_features != estimator.n_features_in_:
        raise ValueError(f"{where}: the featurizer makes {featurizer.n_features} features but the "
                         f"model expects {estimator.n_features_in_}")
    return Pipeline([(PIPELINE_STEPS[0], featurizer), (PIPELINE_STEPS[1], estimator)])


def _read(path: str | os.PathLike[str]) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """(metadata, fitted arrays) of the model file, checked for format, version and contents."""
    where = os.fspath(path)
    if not os.path.isfile(where):
        raise FileNotFoundError(f"{where}: no such file")
    metadata, members = read_archive(where, "fastdp model file")
    _check_metadata(where, metadata, members)
    return metadata, members


def _check_metadata(where: str, metadata: Any, members: dict[str, np.ndarray]) -> None:
    if not isinstance(metadata, dict) or metadata.get("format") != FORMAT_NAME:
        raise ValueError(f"{where}: not a fastdp model file (no '{FORMAT_NAME}' metadata)")
    if metadata.get("version") != FORMAT_VERSION:
        raise ValueError(f"{where}: unsupported model file version {metadata.get('version')!r}; "
                         f"this fastdp reads version {FORMAT_VERSION}")
    name = metadata.get("estimator")
    if name not in ESTIMATORS:
        raise ValueError(f"{where}: unknown estimator class {name!r}; a fastdp model file holds "
                         f"one of {', '.join(ESTIMATORS)}")
    for key, kind in (("params", dict), ("scalars", list), ("featurizer", (dict, type(None))),
                      ("config", (dict, type(None)))):
        if not isinstance(metadata.get(key), kind):
            raise ValueError(f"{where}: the metadata entry {key!r} is missing or malformed")
    required = REQUIRED_ATTRIBUTES + (("classes_",) if name in CLASSIFIERS else ())
    missing = [attribute for attribute in required if attribute not in members]
    unknown = sorted(set(members) - set(FITTED_ATTRIBUTES))
    if missing or unknown:
        raise ValueError(f"{where}: {name} file has missing {missing} or unknown {unknown} arrays")
    if any(members[attribute].ndim != 0 for attribute in metadata["scalars"]
           if attribute in members):
        raise ValueError(f"{where}: a fitted attribute saved as a number is not a scalar")
    n_features = members["n_features_in_"]
    if (n_features.ndim != 0 or n_features.dtype.kind not in "iu"
            or members["coef_"].shape[-1:] != (int(n_features),)):
        raise ValueError(f"{where}: coef_ of shape {members['coef_'].shape} does not match "
                         f"n_features_in_ {n_features}")
