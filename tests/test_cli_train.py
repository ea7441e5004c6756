"""`fastdp train` and `fastdp predict` in one process, for every data format; bad input ends with
one `fastdp: error: ...` line and exit status 2."""

import os
import re
import sys

import numpy as np
import pytest
from sklearn.datasets import load_breast_cancer
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

import fastdp
from fastdp.cli import main

WORDS = {"pos": ["good", "great", "fine", "nice", "superb"],
         "neg": ["bad", "awful", "poor", "sad", "dull"]}
SHARED = ["the", "film", "was", "a", "plot"]


def corpus(n_docs: int, seed: int = 0) -> tuple[list[str], list[str]]:
    """(labels, texts): generated reviews whose label words decide the class."""
    rng = np.random.default_rng(seed)
    labels = [("pos", "neg")[i % 2] for i in range(n_docs)]
    texts = [" ".join(rng.permutation(list(rng.choice(WORDS[label], 3)) + list(rng.choice(SHARED, 3))))
             for label in labels]
    return labels, texts


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """Breast cancer (standardized) as .npy, .csv with a header and .parquet with string labels;
    a generated text corpus as .txt; and unlabeled versions for predict."""
    directory = tmp_path_factory.mktemp("data")
    X, y = load_breast_cancer(return_X_y=True)
    X = StandardScaler().fit_transform(X)
    paths = {"X": X, "y": y}
    np.save(directory / "bc.npy", np.column_stack([X, y]))
    np.save(directory / "bc-features.npy", X)
    names = [f"f{j}" for j in range(X.shape[1])]
    np.savetxt(directory / "bc.csv", np.column_stack([y, X]), delimiter=",", fmt="%.17g",
               header=",".join(["target"] + names), comments="")
    import pyarrow as pa
    import pyarrow.parquet as pq

    columns = {name: X[:, j] for j, name in enumerate(names)}
    columns["diagnosis"] = np.array(["malignant", "benign"])[y]
    pq.write_table(pa.table(columns), directory / "bc.parquet", row_group_size=128)
    labels, texts = corpus(120)
    (directory / "reviews.txt").write_text("".join(f"{l}\t{t}\n" for l, t in zip(labels, texts)))
    (directory / "docs.txt").write_text("good great film\nawful dull plot\n")
    paths.update({name: str(directory / name) for name in
                  ("bc.npy", "bc-features.npy", "bc.csv", "bc.parquet", "reviews.txt", "docs.txt")})
    paths["labels"], paths["texts"] = labels, texts
    return paths


CASES = {
    "npy": ("bc.npy", ["--model", "logistic", "--solver", "lbfgs", "--C", "0.5"], "train accuracy"),
    "csv": ("bc.csv", ["--model", "ridge", "--alpha", "2", "--label-column", "target",
                       "--max-iter", "50"], "train R^2"),
    "parquet": ("bc.parquet", ["--model", "svm", "--max-iter", "50"], "train accuracy"),
    "text": ("reviews.txt", ["--model", "logistic", "--bigrams", "--n-features", "4096"],
             "train accuracy"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_train_then_predict(tmp_path, data, capsys, case):
    name, options, metric = CASES[case]
    model_path = str(tmp_path / "model.fdp")
    assert main(["train", "--data", data[name], "--output", model_path] + options) == 0
    out = capsys.readouterr().out
    assert out.startswith("fastdp train: ") and metric in out and f"saved {model_path}" in out
    model = fastdp.load(model_path)
    label = ["--label-column", "target"] if case == "csv" else ["--labeled"]
    predictions = str(tmp_path / "predictions.txt")
    assert main(["predict", "--model", model_path, "--input", data[name], "--output", predictions]
                + label) == 0
    out = capsys.readouterr().out
    assert out.startswith("fastdp predict: ") and ("R^2" if case == "csv" else "accuracy") in out
    written = open(predictions).read().splitlines()
    if case == "text":
        assert isinstance(model, Pipeline)
        assert model.named_steps["featurizer"].get_params()["ngram_range"] == (1, 2)
        assert written == model.predict(data["texts"]).tolist() == data["labels"]
        return
    X = data["X"]
    expected = model.predict(X)
    if case == "csv":
        np.testing.assert_array_equal(np.array(written, dtype=float), expected)
        assert model.get_params()["alpha"] == 2.0
    else:
        assert written == [str(v) for v in expected]
        assert np.mean(model.predict(X) == model.classes_[1 - data["y"]] if case == "parquet"
                       else model.predict(X) == data["y"]) > 0.95
    if case == "npy":
        assert model.classes_.dtype.kind == "i" and model.get_params()["C"] == 0.5


def test_predict_without_labels_and_to_npy(tmp_path, data, capsys):
    numeric, text = str(tmp_path / "n.fdp"), str(tmp_path / "t.fdp")
    assert main(["train", "--data", data["bc.npy"], "--model", "logistic", "--output", numeric]) == 0
    assert main(["train", "--data", data["reviews.txt"], "--model", "logistic", "--n-features",
                 "1024", "--output", text]) == 0
    out = str(tmp_path / "p.npy")
    assert main(["predict", "--model", numeric, "--input", data["bc-features.npy"], "--output", out]) == 0
    np.testing.assert_array_equal(np.load(out, allow_pickle=False), fastdp.load(numeric).predict(data["X"]))
    assert main(["predict", "--model", text, "--input", data["docs.txt"], "--output", out]) == 0
    assert np.load(out, allow_pickle=False).tolist() == ["pos", "neg"]
    assert "2 predictions written" in capsys.readouterr().out


def write(tmp_path, name: str, content: str) -> str:
    path = tmp_path / name
    path.write_text(content)
    return str(path)


TRAIN_ERRORS = {
    "missing file": (lambda d, t: ["--data", str(t / "nope.npy"), "--model", "linear"],
                     r"nope\.npy: no such file"),
    "ragged csv": (lambda d, t: ["--data", write(t, "r.csv", "1,2,3\n4,5,6\n7,8\n"), "--model",
                                 "linear"], r"r\.csv, line 3: 2 values, expected 3"),
    "text line without label": (lambda d, t: ["--data", write(t, "r.txt", "a\tx\nno label\n"),
                                              "--model", "logistic"],
                                r"r\.txt, line 2: no TAB after a label"),
    "label column": (lambda d, t: ["--data", d["bc.csv"], "--model", "linear", "--label-column",
                                   "price"], r"bc\.csv: no column named 'price'"),
    "--C for ridge": (lambda d, t: ["--data", d["bc.npy"], "--model", "ridge", "--C", "2"],
                      r"--C does not apply to --model ridge"),
    "--n-features for npy": (lambda d, t: ["--data", d["bc.npy"], "--model", "logistic",
                                           "--n-features", "8"],
                             r"--n-features and --bigrams apply to text data"),
    "text labels for regression": (lambda d, t: ["--data", d["reviews.txt"], "--model", "linear",
                                                 "--n-features", "64"],
                                   r"reviews\.txt: label '(pos|neg)' is not a number"),
    "one class": (lambda d, t: ["--data", write(t, "one.csv", "1,0\n2,0\n"), "--model", "svm"],
                  r"needs samples of at least 2 classes"),
    "solver options": (lambda d, t: ["--data", d["bc.npy"], "--model", "logistic", "--solver",
                                     "lbfgs", "--batch-size", "10"], r"full-batch"),
    "output directory": (lambda d, t: ["--data", d["bc.npy"], "--model", "linear", "--max-iter",
                                       "2", "--output", str(t / "no" / "m.fdp")],
                         r"cannot write .*m\.fdp: No such file or directory"),
}


@pytest.mark.parametrize("case", list(TRAIN_ERRORS))
def test_train_errors_exit_2_with_one_line(tmp_path, data, capsys, case):
    make, message = TRAIN_ERRORS[case]
    argv = ["train"] + make(data, tmp_path)
    if "--output" not in argv:
        argv += ["--output", str(tmp_path / "m.fdp")]
    assert main(argv) == 2
    captured = capsys.readouterr()
    assert captured.err.startswith("fastdp: error: ") and captured.err.count("\n") == 1
    assert re.search(message, captured.err), captured.err
    assert not os.path.exists(tmp_path / "m.fdp")


@pytest.fixture(scope="module")
def numeric_model(data, tmp_path_factory):
    path = str(tmp_path_factory.mktemp("model") / "m.fdp")
    assert main(["train", "--data", data["bc.npy"], "--model", "logistic", "--output", path]) == 0
    return path


PREDICT_ERRORS = {
    "text input for a numeric model": (lambda d, t: ["--input", d["docs.txt"]],
                                       r"m\.fdp was trained on numeric data, but .*docs\.txt is text"),
    "feature count": (lambda d, t: ["--input", d["bc.npy"]],
                      r"bc\.npy has 31 feature columns, but .*m\.fdp expects 30; if one column "
                      r"is the label, add --labeled"),
    "feature count, labeled": (lambda d, t: ["--input", d["bc-features.npy"], "--labeled"],
                               r"has 29 feature columns, but .*m\.fdp expects 30$"),
    "output extension": (lambda d, t: ["--input", d["bc.npy"], "--labeled", "--output",
                                       str(t / "p.json")], r"p\.json: unknown output extension"),
    "corrupt model": (lambda d, t: ["--model", write(t, "bad.fdp", "garbage"), "--input",
                                    d["bc.npy"]], r"bad\.fdp: not a readable fastdp model file"),
    "missing model": (lambda d, t: ["--model", str(t / "none.fdp"), "--input", d["bc.npy"]],
                      r"none\.fdp: no such file"),
}


@pytest.mark.parametrize("case", list(PREDICT_ERRORS))
def test_predict_errors_exit_2_with_one_line(tmp_path, data, numeric_model, capsys, case):
    make, message = PREDICT_ERRORS[case]
    argv = make(data, tmp_path)
    defaults = {"--model": numeric_model, "--output": str(tmp_path / "p.txt")}
    for option, value in defaults.items():
        if option not in argv:
            argv += [option, value]
    assert main(["predict"] + argv) == 2
    captured = capsys.readouterr()
    assert captured.err.startswith("fastdp: error: ") and captured.err.count("\n") == 1
    assert re.search(message, captured.err), captured.err
    assert not os.path.exists(tmp_path / "p.txt")


@pytest.mark.parametrize("argv", [
    ["train", "--data", "x.npy", "--model", "forest", "--output", "m.fdp"],
    ["train", "--data", "x.npy", "--model", "linear"],
    ["train", "--data", "x.npy", "--model", "linear", "--output", "m.fdp", "--max-iter", "0"],
    ["predict", "--model", "m.fdp", "--input", "x.npy"],
])
def test_bad_arguments_exit_2(argv, capsys):
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 2 and "error" in capsys.readouterr().err


def test_console_script(tmp_path, data, command):
    fastdp_script = os.path.join(os.path.dirname(sys.executable), "fastdp")
    model = str(tmp_path / "m.fdp")
    result = command(fastdp_script, "train", "--data", data["reviews.txt"], "--model", "svm",
                     "--n-features", "512", "--output", model, timeout=120)
    assert result.returncode == 0 and "fastdp train: svm (LinearSVC)" in result.stdout, result.stderr
    predictions = str(tmp_path / "p.txt")
    result = command(fastdp_script, "predict", "--model", model, "--input", data["reviews.txt"],
                     "--labeled", "--output", predictions, timeout=120)
    assert result.returncode == 0 and "accuracy 1.000000" in result.stdout, result.stderr
    assert open(predictions).read().splitlines() == data["labels"]
    result = command(fastdp_script, "train", "--data", data["bc.npy"], "--model", "svm",
                     "--output", model, "--C", "-1", timeout=120)
    assert result.returncode == 2 and result.stdout == ""
    assert result.stderr == "fastdp: error: C must be a finite number > 0, got -1.0\n"


def test_verbose_train_prints_the_training_report_and_saves_it(tmp_path, data, capsys):
    model = str(tmp_path / "m.fdp")
    assert main(["train", "--data", data["bc.npy"], "--model", "logistic", "--output", model,
                 "--verbose"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[1].split() == ["rank", "rows", "compute", "s", "wait", "s"]
    assert out[2].split()[:2] == ["0", str(len(data["X"]))]
    assert out[3].startswith("imbalance (max/mean compute) 1.000;") and "partition: contiguous" in out[3]
    report = fastdp.model_io.read_metadata(model)["config"]["training_report"]
    assert report["ranks"][0]["rows"] == len(data["X"]) and report["evaluations"] >= 1


def test_overlap_trains_the_same_model(tmp_path, data, capsys):
    models = [str(tmp_path / f"{name}.fdp") for name in ("plain", "overlap")]
    argv = ["train", "--data", data["bc.npy"], "--model", "logistic", "--solver", "sgd",
            "--batch-size", "16", "--max-iter", "3", "--tol", "0"]
    assert main(argv + ["--output", models[0]]) == 0
    assert main(argv + ["--output", models[1], "--overlap"]) == 0
    plain, overlap = (fastdp.load(m) for m in models)
    assert np.array_equal(plain.coef_, overlap.coef_)
    assert main(["train", "--data", data["bc.npy"], "--model", "logistic", "--solver", "lbfgs",
                 "--overlap", "--output", models[0]]) == 2
    assert "overlap=True" in capsys.readouterr().err


def test_deterministic_training_matches_the_default_closely(tmp_path, data):
    models = [str(tmp_path / f"{name}.fdp") for name in ("plain", "deterministic")]
    argv = ["train", "--data", data["bc.npy"], "--model", "logistic", "--solver", "gd",
            "--max-iter", "50", "--tol", "0"]
    assert main(argv + ["--output", models[0]]) == 0
    assert main(argv + ["--output", models[1], "--deterministic"]) == 0
    plain, deterministic = (fastdp.load(m) for m in models)
    np.testing.assert_allclose(deterministic.coef_, plain.coef_, rtol=1e-12, atol=1e-14)
    assert fastdp.model_io.read_metadata(models[1])["params"]["deterministic"] is True
