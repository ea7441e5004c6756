"""Checkpoints: a training run's whole state in one file, written atomically, to resume from.

    fit(X, y, solver="sgd", checkpoint="run.ckpt", checkpoint_every=100)      # killed at step 250
    fit(X, y, solver="sgd", checkpoint="run.ckpt", checkpoint_every=100, resume="run.ckpt")
    fastdp.checkpoint.read("run.ckpt").state.step                             # 200

The resumed run ends with the parameters of the uninterrupted one: bitwise on the same number of
ranks (the same arithmetic in the same order), up to rounding on another number of ranks.

The file is an .npz archive (np.savez) of numeric or unicode arrays only, read back with
np.load(allow_pickle=False): reading a checkpoint never runs code from it. Its members:

    metadata      a JSON document (0-d unicode array): {"format": "fastdp-checkpoint",
                  "version": 1, "config": what defines the run (see MATCHED), "step", "epoch",
                  "batch", "stale": where it stands (see State), "n_ranks", "partition": every
                  rank's global rows [[start, stop], ...] when it was written, "rule": the names
                  of the update rule's state arrays}
    theta         (p,) float64: the parameters [coef.ravel(), intercept...]
    loss_history  the objective of every step (full batch) or epoch (mini-batch) so far
    epoch_loss    0-d: mini-batch, the sum of batch loss x batch rows over the epoch so far
    best_loss     0-d: mini-batch, the lowest epoch objective so far (inf before the first)
    rule_NAME     the update rule's state: rule_velocity (SGD, momentum); rule_m, rule_v, rule_t
                  (Adam, AdamW: the moments and the steps taken)

Mini-batch permutations are a pure function of (random_state, epoch) (fastdp.train.Batches), so
random_state (in config) with epoch and batch is the whole state of the randomness.

Keeping the last N (keep=N): `path` is always the newest checkpoint, `path.1` the one before,
..., `path.{N-1}` the oldest. A write puts the whole new checkpoint in a temporary file beside
path; only then do the older ones move up one (path.1 -> path.2, ...; path is hard-linked, or
copied where links are not allowed, to path.1), and the temporary is synced and renamed onto path
(fastdp.data.atomic_file). At every instant path holds a whole checkpoint; a write that fails
midway leaves every file as it was and removes its temporary. A process killed in the middle of a
write cannot remove its temporary: the next successful write to path removes such leftovers.
"""

from __future__ import annotations

import json
import math
import os
import re
import secrets
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from .comm import Comm, raise_if_any
from .data import atomic_file
from .data.archive import read_archive

FORMAT_NAME = "fastdp-checkpoint"
FORMAT_VERSION = 1
# The config entries a resumed run must share with the checkpoint: they define the trajectory.
# max_iter too under the cosine schedule (its learning rates depend on it); the others (tol,
# n_iter_no_change, backend, overlap, rebalance, dtype, sparse) are kept for the record and may
# differ, as may the number of ranks.
MATCHED = ("loss", "n_classes", "solver", "learning_rate", "schedule", "power_t", "alpha",
           "l1_ratio", "fit_intercept", "batch_size", "momentum", "nesterov", "beta1", "beta2",
           "weight_decay", "random_state", "n_rows", "n_features")
RULE_PREFIX = "rule_"
POSITION = ("step", "epoch", "batch", "stale")
LOAD_ERRORS: dict[str, type[Exception]] = {"FileNotFoundError": FileNotFoundError,
                                           "OSError": OSError, "ValueError": ValueError}


@dataclass
class State:
    """Where a run stands at the start of a step, and all it needs to take that step.

    theta: (p,) float64 parameters; rule: the update rule's state arrays (optim.Rule.state);
    history: the objective of each step (full batch) or epoch (mini-batch) before it;
    step: the step (numbered from 0), which is the number of updates taken;
    epoch, batch: mini-batch, the step's epoch and its batch's index in the epoch;
    epoch_loss: mini-batch, sum of batch loss x batch rows over the epoch's earlier batches;
    best, stale: mini-batch, the lowest epoch objective and the epochs since it improved by tol.
    """

    theta: np.ndarray
    rule: dict[str, np.ndarray]
    history: list[float]
    step: int = 0
    epoch: int = 0
    batch: int = 0
    epoch_loss: float = 0.0
    best: float = math.inf
    stale: int = 0


@dataclass
class Checkpoint:
    """A checkpoint file's contents: the run's config, its state, and the ranks' partition."""

    config: dict[str, Any]
    state: State
    n_ranks: int
    partition: list[list[int]]


def _arrays(checkpoint: Checkpoint) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """(metadata, arrays) as the file holds them."""
    state = checkpoint.state
    metadata = {"format": FORMAT_NAME, "version": FORMAT_VERSION, "config": checkpoint.config,
                **{name: int(getattr(state, name)) for name in POSITION},
                "n_ranks": checkpoint.n_ranks, "partition": checkpoint.partition,
                "rule": sorted(state.rule)}
    arrays = {"theta": np.asarray(state.theta, dtype=np.float64),
              "loss_history": np.array(state.history, dtype=np.float64),
              "epoch_loss": np.array(state.epoch_loss), "best_loss": np.array(state.best),
              **{RULE_PREFIX + name: np.asarray(value) for name, value in state.rule.items()}}
    return metadata, arrays


def _checkpoint(metadata: dict[str, Any], arrays: dict[str, np.ndarray]) -> Checkpoint:
    """The Checkpoint that (metadata, arrays) of a checked file describe."""
    rule = {name: arrays[RULE_PREFIX + name] for name in metadata["rule"]}
    state = State(theta=arrays["theta"], rule=rule, history=arrays["loss_history"].tolist(),
                  epoch_loss=float(arrays["epoch_loss"]), best=float(arrays["best_loss"]),
                  **{name: metadata[name] for name in POSITION})
    return Checkpoint(metadata["config"], state, metadata["n_ranks"], metadata["partition"])


def write(path: str | os.PathLike[str], checkpoint: Checkpoint, keep: int = 2) -> None:
    """Write checkpoint to path atomically, keeping the `keep` newest (path, path.1, ...; see
    the module docstring). Not collective: one process writes (fit: rank 0)."""
    if isinstance(keep, bool) or int(keep) != keep or keep < 1:
        raise ValueError(f"keep must be an integer >= 1, got {keep!r}")
    path = os.fspath(path)
    metadata, arrays = _arrays(checkpoint)
    document = json.dumps(metadata, allow_nan=False)
    with atomic_file(path) as f:
        np.savez(f, metadata=np.array(document), **arrays)
        _shift(path, int(keep))  # the new file is whole in its temporary: make room for it
    _remove_leftovers(path)


def _remove_leftovers(path: str) -> None:
    """Remove the temporaries of writes to path whose process was killed (atomic_file's
    .{name}.{12 hex}.tmp and _shift's .{name}.1.{12 hex}.tmp): one process writes path, and its
    write just ended, so any left are from a crashed one."""
    directory, name = os.path.split(os.path.abspath(path))
    leftover = re.compile(rf"\.{re.escape(name)}(\.1)?\.[0-9a-f]{{12}}\.tmp")
    for entry in os.listdir(directory):
        if leftover.fullmatch(entry):
            try:
                os.unlink(os.path.join(directory, entry))
            except FileNotFoundError:
                pass


def _shift(path: str, keep: int) -> None:
    """Move path.{i} to path.{i+1} for the older checkpoints (path.{keep-1} is dropped), then
    put path's contents at path.1 too (a hard link, or a copy), so path can be replaced."""
    if keep < 2 or not os.path.exists(path):
        return
    for i in range(keep - 2, 0, -1):
        if os.path.exists(f"{path}.{i}"):
            os.replace(f"{path}.{i}", f"{path}.{i + 1}")
    directory, name = os.path.split(os.path.abspath(path))
    temporary = os.path.join(directory, f".{name}.1.{secrets.token_hex(6)}.tmp")
    try:
        try:
            os.link(path, temporary)
        except OSError:  # a filesystem without hard links
            shutil.copyfile(path, temporary)
        os.replace(temporary, f"{path}.1")
    finally:
        if os.path.exists(temporary):
            os.unlink(temporary)


def read(path: str | os.PathLike[str]) -> Checkpoint:
    """The checkpoint at path. Raises FileNotFoundError for a missing file and ValueError naming
    the path for a file that is not a fastdp checkpoint this version can read."""
    return _checkpoint(*_read_file(os.fspath(path)))


def _read_file(where: str) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """(metadata, arrays) of the checkpoint file, checked."""
    if not os.path.isfile(where):
        raise FileNotFoundError(f"{where}: no such checkpoint file")
    metadata, arrays = read_archive(where, "fastdp checkpoint")
    _check(where, metadata, arrays)
    return metadata, arrays


def _check(where: str, metadata: Any, arrays: dict[str, np.ndarray]) -> None:
    if not isinstance(metadata, dict) or metadata.get("format") != FORMAT_NAME:
        raise ValueError(f"{where}: not a fastdp checkpoint (no '{FORMAT_NAME}' metadata)")
    if metadata.get("version") != FORMAT_VERSION:
        raise ValueError(f"{where}: unsupported checkpoint version {metadata.get('version')!r}; "
                         f"this fastdp reads version {FORMAT_VERSION}")
    for key in POSITION + ("n_ranks",):
        value = metadata.get(key)
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise ValueError(f"{where}: the metadata entry {key!r} is missing or not an integer "
                             ">= 0")
    for key, kind in (("config", dict), ("partition", list), ("rule", list)):
        if not isinstance(metadata.get(key), kind):
            raise ValueError(f"{where}: the metadata entry {key!r} is missing or malformed")
    expected = {"theta", "loss_history", "epoch_loss", "best_loss"}
    expected |= {RULE_PREFIX + str(name) for name in metadata["rule"]}
    if set(arrays) != expected:
        raise ValueError(f"{where}: the checkpoint has missing {sorted(expected - set(arrays))} "
                         f"or unknown {sorted(set(arrays) - expected)} arrays")
    shapes = {"theta": 1, "loss_history": 1, "epoch_loss": 0, "best_loss": 0}
    for name, ndim in shapes.items():
        if arrays[name].ndim != ndim or arrays[name].dtype != np.float64:
            raise ValueError(f"{where}: {name} must be a {ndim}-d float64 array, got "
                             f"{arrays[name].dtype} of shape {arrays[name].shape}")


def mismatch(where: str, saved: dict[str, Any], config: dict[str, Any]) -> str | None:
    """What differs between the config a checkpoint was written with and this run's, naming
    each field and both values; None when the run may resume from it."""
    fields = list(MATCHED)
    if config.get("schedule") == "cosine":
        fields.append("max_iter")
    differ = [f"{name} is {saved.get(name)!r} there, {config.get(name)!r} here"
              for name in fields if saved.get(name) != config.get(name)]
    if not differ:
        return None
    return (f"cannot resume from {where}: it was written by a different run ("
            + "; ".join(differ) + ")")


def load(path: str | os.PathLike[str], comm: Comm, config: dict[str, Any]) -> Checkpoint:
    """Collective: rank 0 reads the checkpoint at path and checks that it was written by a run
    with this config (`mismatch`); every rank gets the same Checkpoint by broadcast, so the file
    need only be visible to rank 0. Raises on every rank: FileNotFoundError for a missing file,
    OSError for one it cannot open, ValueError for an unreadable one or a different run's."""
    where = os.fspath(path)
    header, arrays = None, {}
    if comm.rank == 0:
        try:
            metadata, arrays = _read_file(where)
            error = mismatch(where, metadata["config"], config)
            header = ("ValueError", error) if error else (None, metadata)
        except (OSError, ValueError) as exc:
            header = (next(name for name, kind in LOAD_ERRORS.items() if isinstance(exc, kind)),
                      str(exc))
    failure, body = comm.bcast_obj(header)
    if failure is not None:
        raise LOAD_ERRORS[failure](body)
    layout = comm.bcast_obj({name: (a.shape, a.dtype.str) for name, a in arrays.items()})
    for name, (shape, dtype) in layout.items():
        arrays[name] = comm.bcast_(arrays[name] if comm.rank == 0
                                   else np.empty(shape, np.dtype(dtype)))
    return _checkpoint(body, arrays)


class Checkpointer:
    """When a fit writes its checkpoints, and where the newest good one is.

    Every rank holds one and asks it the same questions with the same numbers, so all agree on
    when to write; rank 0 writes. checkpoint_seconds is measured on rank 0's clock: `signal` is
    what this rank adds to the next step's reduction (1.0 from rank 0 once the time has passed),
    and the reduced sum, identical everywhere, is passed to `due`. first: the step the fit starts
    at; resumed: (path, step) of the checkpoint it resumed from; path None: never due.
    """

    def __init__(self, path: str | os.PathLike[str] | None, comm: Comm, config: dict[str, Any],
                 partition: Callable[[], list[range]], first: int = 0, every: int | None = None,
                 seconds: float | None = None, keep: int = 2,
                 resumed: tuple[str, int] | None = None) -> None:
        self.path = None if path is None else os.fspath(path)
        self.comm, self.config, self.partition, self.first = comm, config, partition, first
        self.every, self.seconds, self.keep = every, seconds, keep
        self.last = resumed  # (path, step) of the newest good checkpoint, None before the first
        self._since = time.monotonic()

    def signal(self) -> float:
        """This rank's addend to the next reduction: 1.0 on rank 0 when checkpoint_seconds have
        passed since the last write (or the start), else 0.0."""
        if self.seconds is None or self.comm.rank != 0:
            return 0.0
        return float(time.monotonic() - self._since >= self.seconds)

    def due(self, step: int, signals: float) -> bool:
        """Is the checkpoint of `step` (the state before its update) due? signals: the step's
        reduced `signal`s. Never for the fit's first step (its start, or the checkpoint it
        resumed from)."""
        if self.path is None or step == self.first:
            return False
        return signals > 0 or (self.every is not None and step % self.every == 0)

    def write(self, state: State) -> None:
        """Collective: rank 0 writes state; a failed write (whatever the cause) raises OSError on
        every rank, and the previous checkpoint is intact."""
        error = None
        if self.comm.rank == 0:
            checkpoint = Checkpoint(self.config, state, self.comm.size,
                                    [[r.start, r.stop] for r in self.partition()])
            try:
                write(self.path, checkpoint, self.keep)
            except Exception as exc:  # whatever failed on rank 0 must not leave the others waiting
                error = (f"cannot write the checkpoint {self.path} at step {state.step} "
                         f"({type(exc).__name__}: {exc}); the previous one is intact")
        raise_if_any(self.comm, error, OSError)
        self.last = (self.path, state.step)
        self._since = time.monotonic()
