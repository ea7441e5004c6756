"""The `fastdp` command.

    fastdp demo                                              serial vs data-parallel, worked example
    mpiexec -n 4 fastdp train --data train.parquet --model logistic --output model.fdp
    fastdp predict --model model.fdp --input test.csv --output predictions.txt
    fastdp bench kernels                                     benchmark suites (fastdp.bench)

`train` runs as one process or under mpiexec: each rank reads only its rows of --data, the ranks
fit one model together, rank 0 saves it and prints a summary. Text data (.txt/.tsv, one
`label<TAB>text` line per row) is hashed into --n-features columns; the model file then holds the
featurizer too. `predict` runs the same way, streaming: the ranks read and predict chunks of the
input in turn, rank 0 writes them in order. Bad input ends with one line `fastdp: error: ...` (printed by rank 0) and exit
status 2 on every rank.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import os
import re
import sys
import time
from collections.abc import Callable
from typing import Any

import numpy as np
from sklearn.pipeline import Pipeline

from . import __version__, data, infer, kernels, train
from .comm import Comm, world
from .bench import SUITES
from .demo import DemoConfig, run
from .estimators import LinearRegression, LinearSVC, LogisticRegression, Ridge
from .model_io import load, save
from .text import HashingFeaturizer

MODELS: dict[str, type] = {"linear": LinearRegression, "ridge": Ridge,
                           "logistic": LogisticRegression, "svm": LinearSVC}
CLASSIFIERS = ("logistic", "svm")
DEFAULT_TEXT_FEATURES = 2**20
CHUNK_ROWS = 1 << 16  # rows per chunk of a streamed prediction input
INPUT_ERRORS = (ValueError, OSError, ImportError)
EXIT_INPUT_ERROR = 2
ESTIMATOR_OPTIONS = ("C", "alpha", "solver", "max_iter", "tol", "learning_rate", "batch_size",
                     "random_state", "backend")
OPTION_MODELS = {"C": CLASSIFIERS, "alpha": ("ridge",)}
CHECKPOINT_OPTIONS = ("checkpoint", "checkpoint_every", "checkpoint_seconds", "checkpoint_keep",
                      "resume")


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def _column(text: str) -> int | str:
    """A label column: an index when the text is an integer, else a name."""
    return int(text) if re.fullmatch(r"[+-]?\d+", text.strip()) else text


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="fastdp", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    demo = sub.add_parser("demo", help="linear regression, serial vs data-parallel on MPI ranks")
    defaults = DemoConfig()
    demo.add_argument("--rows", type=_positive_int, default=defaults.rows)
    demo.add_argument("--features", type=_positive_int, default=defaults.features)
    demo.add_argument("--ranks", type=_positive_int, default=defaults.ranks,
                      help="ranks to launch with mpiexec (ignored when already under mpiexec)")
    demo.add_argument("--backend", choices=list(kernels.BACKEND_CHOICES), default=defaults.backend)
    demo.add_argument("--seed", type=int, default=defaults.seed)
    demo.add_argument("--learning-rate", type=float, default=defaults.learning_rate)
    demo.add_argument("--max-iter", type=_positive_int, default=defaults.max_iter)
    demo.add_argument("--tol", type=float, default=defaults.tol)
    demo.add_argument("--report", help=argparse.SUPPRESS)
    _add_train(sub)
    _add_predict(sub)
    bench = sub.add_parser("bench", help="benchmark suites: " + ", ".join(SUITES),
                           description="Run a benchmark suite; `fastdp bench SUITE --help` lists "
                                       "its options.", add_help=False)
    bench.add_argument("suite", choices=SUITES)
    bench.add_argument("options", nargs=argparse.REMAINDER)
    return parser


def _add_train(sub: Any) -> None:
    train_ = sub.add_parser(
        "train", help="fit a linear model on a data file; data-parallel under mpiexec",
        description="Fit a model on --data (.npy, .csv, .parquet, or .txt/.tsv text with one "
                    "'label<TAB>text' line per row) and save it to --output. Under mpiexec each "
                    "rank reads only its rows. Unset options take the estimator's defaults.")
    train_.add_argument("--data", required=True, help="training file (format by extension)")
    train_.add_argument("--model", required=True, choices=list(MODELS),
                        help="linear: LinearRegression, ridge: Ridge, logistic: "
                             "LogisticRegression, svm: LinearSVC (fastdp.estimators)")
    train_.add_argument("--output", required=True, help="model file to write (e.g. model.fdp)")
    train_.add_argument("--label-column", type=_column,
                        help="label column of a tabular file, by index or name (default: last)")
    train_.add_argument("--C", type=float, dest="C", help="inverse regularization (logistic, svm)")
    train_.add_argument("--alpha", type=float, help="L2 penalty (ridge)")
    train_.add_argument("--solver", choices=("auto",) + train.SOLVERS)
    train_.add_argument("--max-iter", type=_positive_int)
    train_.add_argument("--tol", type=float)
    train_.add_argument("--learning-rate", type=float)
    train_.add_argument("--batch-size", type=_positive_int)
    train_.add_argument("--random-state", type=int)
    train_.add_argument("--backend", choices=list(kernels.BACKEND_CHOICES))
    train_.add_argument("--n-features", type=_positive_int,
                        help=f"hashed features for text data (default {DEFAULT_TEXT_FEATURES})")
    train_.add_argument("--bigrams", action="store_true",
                        help="text data: hash pairs of adjacent words as well as words")
    train_.add_argument("--partition", choices=data.PARTITIONS, default="contiguous",
                        help="rows per rank: 'contiguous' (equal counts) or 'balanced' (equal "
                             "bytes: for text of very different line lengths)")
    train_.add_argument("--rebalance", action="store_true",
                        help="move rows from slow ranks to fast ones while training")
    train_.add_argument("--deterministic", action="store_true",
                        help="bitwise the same model for any number of ranks and threads")
    train_.add_argument("--overlap", action="store_true",
                        help="mini-batch solvers: reduce each step's gradient while the next "
                             "batch is gathered")
    train_.add_argument("--verbose", action="store_true",
                        help="progress bar on rank 0, then the training report (rows, compute and "
                             "wait time per rank, imbalance)")
    train_.add_argument("--checkpoint", metavar="PATH",
                        help="write the training state to PATH (solvers gd, sgd, adam, adamw), "
                             "every --checkpoint-every steps and/or --checkpoint-seconds")
    train_.add_argument("--checkpoint-every", type=_positive_int, metavar="K",
                        help="checkpoint after every K-th step (a step: one update)")
    train_.add_argument("--checkpoint-seconds", type=float, metavar="T",
                        help="checkpoint once T seconds have passed since the last one")
    train_.add_argument("--checkpoint-keep", type=_positive_int, metavar="N",
                        help="keep the N newest checkpoints: PATH, PATH.1, ... (default 2)")
    train_.add_argument("--resume", metavar="PATH",
                        help="continue the training saved in checkpoint PATH (same data and "
                             "options)")


def _add_predict(sub: Any) -> None:
    predict = sub.add_parser(
        "predict", help="predict with a saved model; data-parallel under mpiexec",
        description="Write one prediction per row of --input to --output (.npy, .parquet, or "
                    ".csv/.txt: one value per line), streaming the input a chunk at a time. A text model reads .txt/.tsv input where each line is one "
                    "document, or, with --labeled, a 'label<TAB>text' line. A numeric model reads "
                    ".npy/.csv/.parquet whose columns are all features, or, with --labeled or "
                    "--label-column, that also hold the label column (the last by default), "
                    "which is then left out of the features and used to print a score.")
    predict.add_argument("--model", required=True, help="model file written by `fastdp train`")
    predict.add_argument("--input", required=True, help="rows to predict (format by extension)")
    predict.add_argument("--output", required=True,
                         help="predictions file: .npy, .csv, .txt or .parquet")
    predict.add_argument("--chunk-rows", type=_positive_int, default=CHUNK_ROWS,
                         help=f"rows per chunk of the streamed input (default {CHUNK_ROWS})")
    predict.add_argument("--labeled", action="store_true",
                         help="the input holds labels as training data does; print the score")
    predict.add_argument("--label-column", type=_column,
                         help="label column of a tabular input, by index or name "
                              "(implies --labeled)")


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `fastdp` console script."""
    args = vars(_parser().parse_args(argv))
    command = args.pop("command")
    if command == "train":
        return _train(argparse.Namespace(**args))
    if command == "predict":
        return _predict(argparse.Namespace(**args))
    if command == "bench":
        module = importlib.import_module(f"fastdp.bench.{args['suite']}")
        return module.main(args["options"])
    report = args.pop("report")
    return run(DemoConfig(**args), report_path=report)


def _fail(comm: Comm | None, message: str) -> int:
    """Print `fastdp: error: message` (on rank 0 only) and return the exit status for bad input."""
    if comm is None or comm.rank == 0:
        sys.stderr.write(f"fastdp: error: {message}\n")
        sys.stderr.flush()
    return EXIT_INPUT_ERROR


def _collective(comm: Comm, action: Callable[[], Any]) -> Any:
    """action() on every rank; if it raises a bad-input error on any rank, raise ValueError on
    every rank, with the message once if all ranks had the same one, else each rank's."""
    result, error = None, None
    try:
        result = action()
    except INPUT_ERRORS as exc:
        error = str(exc)
    found = [(rank, e) for rank, e in enumerate(comm.allgather_obj(error)) if e is not None]
    if found:
        if len(found) == comm.size and len({e for _, e in found}) == 1:
            raise ValueError(found[0][1])
        raise ValueError("; ".join(f"rank {rank}: {e}" for rank, e in found))
    return result


def _labels(y: np.ndarray, classifier: bool, path: str) -> np.ndarray:
    """Labels for the estimator: whole-number float labels of a classifier become ints (so the
    classes print as 0, 1, ...); a regressor's labels must be numbers."""
    if classifier:
        if y.dtype.kind == "f" and np.all(np.isfinite(y)) and np.all(y == np.round(y)):
            return y.astype(np.int64)
        return y
    if y.dtype.kind in "biuf":
        return y.astype(np.float64)
    for label in y:
        try:
            float(label)
        except ValueError:
            raise ValueError(f"{path}: label {str(label)!r} is not a number; regression models "
                             "need numeric labels") from None
    return y.astype(np.float64)


def _estimator_params(args: argparse.Namespace) -> dict[str, Any]:
    params = {}
    for name in ESTIMATOR_OPTIONS:
        value = getattr(args, name)
        if value is None:
            continue
        if name in OPTION_MODELS and args.model not in OPTION_MODELS[name]:
            raise ValueError(f"--{name} does not apply to --model {args.model} (it applies to "
                             f"{', '.join(OPTION_MODELS[name])})")
        params[name] = value
    return params


def _agree_on_rows(n_rows: int, path: str, comm: Comm) -> None:
    """Collective: every rank must have seen the same number of rows in the file (a file that
    changes while the ranks read it would otherwise lose or repeat rows)."""
    seen = comm.allgather_obj(n_rows)
    if len(set(seen)) > 1:
        raise ValueError(f"{path}: the ranks see different row counts ("
                         + ", ".join(f"rank {r}: {n}" for r, n in enumerate(seen))
                         + "); was the file changed while it was read?")


def _training_data(args: argparse.Namespace, comm: Comm) -> tuple[data.Shard, Any, np.ndarray,
                                                                  HashingFeaturizer | None]:
    """(shard, X, y, featurizer) of this rank's rows of --data."""
    text = data.file_format(args.data) == "text"
    if not text and (args.n_features is not None or args.bigrams):
        raise ValueError(f"--n-features and --bigrams apply to text data (.txt/.tsv) only, "
                         f"not to {args.data}")
    shard = data.read_rows(args.data, rank=comm.rank, size=comm.size,
                           label_column=args.label_column, partition=args.partition)
    featurizer, X = None, shard.X
    if text:
        featurizer = HashingFeaturizer(n_features=args.n_features or DEFAULT_TEXT_FEATURES,
                                       ngram_range=(1, 2) if args.bigrams else (1, 1))
        X = featurizer.transform(shard.X)
    return shard, X, _labels(shard.y, args.model in CLASSIFIERS, args.data), featurizer


def _train_score(estimator: Any, X: Any, y: np.ndarray, classifier: bool,
                 comm: Comm) -> tuple[str, float]:
    """Accuracy (classifier) or R^2 (regressor) on the rows of all ranks."""
    name, score = _score(estimator.predict(X) if X.shape[0] else y[:0], y, classifier, comm)
    return f"train {name}", score


def _score(predictions: np.ndarray, y: np.ndarray, classifier: bool,
           comm: Comm) -> tuple[str, float]:
    """Accuracy (classifier) or R^2 (regressor) of this rank's predictions of its labels y,
    over the rows of all ranks (collective)."""
    if classifier:
        buf = np.array([np.sum(predictions == y), len(y)], dtype=np.float64)
        comm.allreduce_sum_(buf)
        return "accuracy", buf[0] / buf[1]
    sums = comm.allreduce_sum_(np.array([np.sum(y), len(y)], dtype=np.float64))
    mean = sums[0] / sums[1]
    buf = np.array([np.sum((y - predictions) ** 2), np.sum((y - mean) ** 2)])
    comm.allreduce_sum_(buf)
    return "R^2", 1.0 - buf[0] / buf[1] if buf[1] > 0 else float("nan")


def _train(args: argparse.Namespace) -> int:
    comm = world()
    try:
        params = _collective(comm, lambda: _estimator_params(args))
        shard, X, y, featurizer = _collective(comm, lambda: _training_data(args, comm))
        _agree_on_rows(shard.n_rows, args.data, comm)
        estimator = MODELS[args.model](**params, verbose=args.verbose, rebalance=args.rebalance,
                                       overlap=args.overlap, deterministic=args.deterministic,
                                       comm=comm)
        start = time.perf_counter()
        estimator.fit(X, y, **{name: getattr(args, name) for name in CHECKPOINT_OPTIONS
                               if getattr(args, name) is not None})
        seconds = time.perf_counter() - start
        classifier = args.model in CLASSIFIERS
        metric, score = _train_score(estimator, X, y, classifier, comm)
        config = {"data": os.path.abspath(args.data), "format": shard.format, "model": args.model,
                  "label_column": args.label_column, "label_name": shard.label_name,
                  "feature_names": shard.feature_names, "n_rows": shard.n_rows,
                  "ranks": comm.size, "fit_seconds": seconds,
                  "partition": _partition_name(estimator.training_report_, args.partition),
                  "training_report": estimator.training_report_,
                  metric: float(score) if np.isfinite(score) else None,
                  "fastdp_version": __version__}
        _collective(comm, lambda: save(estimator, args.output, featurizer=featurizer,
                                       config=config) if comm.rank == 0 else None)
    except INPUT_ERRORS as exc:  # fit's errors (bad options, NaN, checkpoints) reach every rank
        return _fail(comm, str(exc))
    if comm.rank == 0:
        classes = f", {len(estimator.classes_)} classes" if classifier else ""
        print(f"fastdp train: {args.model} ({type(estimator).__name__}) on {args.data}: "
              f"{shard.n_rows} rows x {estimator.n_features_in_} features, {comm.size} rank(s)"
              f"{classes}, {estimator.n_iter_} iterations, {metric} {score:.6f}, "
              f"{seconds:.3f} s; saved {args.output}", flush=True)
        if args.verbose:
            print(_format_report(estimator.training_report_, args.partition), flush=True)
    return 0


def _partition_name(report: dict[str, Any], initial: str) -> str:
    """The partition the rows were read with ('contiguous', 'balanced'), and how the balancer
    moved them: 'contiguous, rebalanced 2 time(s): [[0, 700], [700, 900]]'."""
    if not report["rebalances"]:
        return initial
    return f"{initial}, rebalanced {report['rebalances']} time(s): {report['partition']}"


def _format_report(report: dict[str, Any], initial: str) -> str:
    """The training report as a table: a line per rank, then the imbalance."""
    lines = [f"{'rank':>4} {'rows':>10} {'compute s':>10} {'wait s':>10}"]
    lines += [f"{r['rank']:>4} {r['rows']:>10} {r['compute_s']:>10.3f} {r['wait_s']:>10.3f}"
              for r in report["ranks"]]
    lines.append(f"imbalance (max/mean compute) {report['imbalance']:.3f}; "
                 f"{report['evaluations']} evaluations; partition: {_partition_name(report, initial)}")
    return "\n".join(lines)


def _predict(args: argparse.Namespace) -> int:
    """Stream --input through the model: chunks of about --chunk-rows rows (whole row groups of
    Parquet) go round-robin to the ranks (chunk c to rank c % size), so in round k the ranks
    predict chunks k*size ... k*size+size-1, and rank 0 gathers them and appends them to --output
    in row order. No rank holds more than one chunk of the input, and rank 0 at most one round of
    predictions."""
    comm = world()
    try:
        model = _collective(comm, lambda: _prediction_model(args))
        estimator = model.steps[-1][1] if isinstance(model, Pipeline) else model
        classes = getattr(estimator, "classes_", None)
        labeled = args.labeled or args.label_column is not None
        source = _collective(comm, lambda: data.open_source(args.input, labels=labeled,
                                                            label_column=args.label_column))
        _agree_on_rows(source.n_rows, args.input, comm)
        chunks = data.stream_chunks(source, args.chunk_rows)
        dtype = np.float64 if classes is None else classes.dtype
        writer = _collective(comm, lambda: data.PredictionWriter(args.output, source.n_rows, dtype)
                             if comm.rank == 0 else None)
        with writer or contextlib.nullcontext():
            sums = np.zeros(4)  # correct or sum (y - p)^2, rows, sum y, sum y^2
            for first in range(0, len(chunks), comm.size):
                mine = chunks[first + comm.rank] if first + comm.rank < len(chunks) else range(0)
                local, y = _collective(comm, lambda: _predict_rows(args, model, source, mine,
                                                                  labeled, classes is not None))
                predictions = infer.gather_in_order(local, comm, 0, classes)
                if labeled and len(mine):
                    sums += _score_sums(local, y, classes is not None)
                _collective(comm, lambda: _write_round(writer, predictions, chunks[first:first
                                                       + comm.size]) if writer else None)
        score = ""
        if labeled:
            comm.allreduce_sum_(sums)
            name, value = _score_from_sums(sums, classes is not None)
            score = f", {name} {value:.6f}"
    except INPUT_ERRORS as exc:
        return _fail(comm, str(exc))
    if comm.rank == 0:
        print(f"fastdp predict: {source.n_rows} predictions written to {args.output}{score}",
              flush=True)
    return 0


def _predict_rows(args: argparse.Namespace, model: Any, source: data.Source, rows: range,
                  labeled: bool, classifier: bool) -> tuple[np.ndarray | None, np.ndarray | None]:
    """(predictions, labels) of rows of the input; (None, None) for no rows."""
    if not len(rows):
        return None, None
    shard = data.read_shard(source, rows)
    if not isinstance(model, Pipeline) and shard.X.shape[1] != model.n_features_in_:
        hint = ("; if one column is the label, add --labeled or --label-column"
                if shard.X.shape[1] == model.n_features_in_ + 1 and not labeled else "")
        raise ValueError(f"{args.input} has {shard.X.shape[1]} feature columns, but "
                         f"{args.model} expects {model.n_features_in_}{hint}")
    y = _labels(shard.y, classifier, args.input) if labeled else None
    return model.predict(shard.X), y


def _write_round(writer: data.PredictionWriter, predictions: np.ndarray,
                 chunks: list[range]) -> None:
    """Append one round's predictions chunk by chunk, so the file's blocks (Parquet row groups)
    are the chunks whatever the number of ranks."""
    start = 0
    for rows in chunks:
        writer.write(predictions[start:start + len(rows)])
        start += len(rows)


def _score_sums(predictions: np.ndarray, y: np.ndarray, classifier: bool) -> np.ndarray:
    """A chunk's part of the score: [correct, rows, 0, 0] for a classifier, [sum (y - p)^2, rows,
    sum y, sum y^2] for a regressor."""
    if classifier:
        return np.array([np.sum(predictions == y), len(y), 0.0, 0.0])
    return np.array([np.sum((y - predictions) ** 2), len(y), np.sum(y), np.sum(y * y)])


def _score_from_sums(sums: np.ndarray, classifier: bool) -> tuple[str, float]:
    """("accuracy", correct / rows) or ("R^2", 1 - residual / total sum of squares)."""
    if classifier:
        return "accuracy", sums[0] / sums[1]
    total = sums[3] - sums[2] ** 2 / sums[1]
    return "R^2", 1.0 - sums[0] / total if total > 0 else float("nan")


def _prediction_model(args: argparse.Namespace) -> Any:
    """The saved model, checked against the kind of input (text or numeric)."""
    model = load(args.model)
    text_model = isinstance(model, Pipeline)
    text_input = data.file_format(args.input) == "text"
    if text_model != text_input:
        trained = "text" if text_model else "numeric"
        raise ValueError(f"{args.model} was trained on {trained} data, but {args.input} is "
                         f"{'text' if text_input else 'numeric'}")
    return model


if __name__ == "__main__":
    sys.exit(main())
