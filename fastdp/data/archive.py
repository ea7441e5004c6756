"""Pickle-free archives: one .npz whose "metadata" member is JSON and whose others are arrays
(fastdp's model files and checkpoints)."""

from __future__ import annotations

import json
import zipfile
from typing import Any

import numpy as np


def read_archive(where: str, what: str) -> tuple[Any, dict[str, np.ndarray]]:
    """(metadata, arrays) of the .npz archive at where; a ValueError naming where and `what` it
    should be (e.g. "a fastdp model file") when it cannot be read as one."""
    with open(where, "rb") as f:
        try:
            archive = np.load(f, allow_pickle=False)
            if not isinstance(archive, np.lib.npyio.NpzFile):
                raise ValueError("a single .npy array, not an archive")
            with archive:
                arrays = {name: archive[name] for name in archive.files}
            metadata = json.loads(str(arrays.pop("metadata")))
        except (ValueError, KeyError, EOFError, OSError, zipfile.BadZipFile) as exc:
            raise ValueError(f"{where}: not a readable {what} "
                             f"({type(exc).__name__}: {exc})") from None
    return metadata, arrays
