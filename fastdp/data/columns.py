"""The label column of a tabular file, and the split of a block of rows into features and labels."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def label_index(path: str, label_column: int | str | None, names: Sequence[str] | None,
                n_columns: int) -> int:
    """Index of the label column among n_columns columns (named `names`, if the file names them);
    None means the last column."""
    if label_column is None:
        return n_columns - 1
    if isinstance(label_column, str):
        if names is None:
            raise ValueError(f"{path}: label_column {label_column!r} is a name, but the file has "
                             "no column names; give the column's index")
        if label_column not in names:
            raise ValueError(f"{path}: no column named {label_column!r} for the labels; "
                             f"columns: {', '.join(names)}")
        return list(names).index(label_column)
    if not -n_columns <= label_column < n_columns:
        raise ValueError(f"{path}: label_column {label_column} is out of range for a file with "
                         f"{n_columns} columns")
    return int(label_column) % n_columns


def feature_columns(path: str, n_columns: int, label: int | None) -> list[int]:
    """Indices of the feature columns: every column but the label's (there must be one)."""
    features = [j for j in range(n_columns) if j != label]
    if not features:
        raise ValueError(f"{path}: the file has only the label column, no feature columns")
    return features


def split_label(path: str, values: np.ndarray,
                label: int | None) -> tuple[np.ndarray, np.ndarray | None]:
    """(X, y) of a (m, columns) block of rows, given the label column's index (None: no labels)."""
    if label is None:
        return values, None
    features = feature_columns(path, values.shape[1], label)
    return np.ascontiguousarray(values[:, features]), np.array(values[:, label])
