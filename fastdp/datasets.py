"""Small real data sets for examples and tests.

load_fortunes reads the fortune cookie files of the Debian package "fortunes" (one class per file,
e.g. "computers", "law", "science"): a text-classification set of about fifteen thousand short
documents that any Debian or Ubuntu machine can install offline from its package mirror.
"""

from __future__ import annotations

import os

import numpy as np

FORTUNES_DIR = "/usr/share/games/fortunes"
SKIPPED_SUFFIXES = (".dat", ".u8")  # strfile indexes, and links to the same UTF-8 files


def _read_fortune_file(path: str) -> list[str]:
    """The non-empty, stripped documents of one fortune file (separated by lines that are '%')."""
    with open(path, encoding="utf-8", errors="replace") as f:
        text = f.read()
    docs: list[str] = []
    lines: list[str] = []
    for line in text.splitlines():
        if line.rstrip() == "%":
            docs.append("\n".join(lines).strip())
            lines = []
        else:
            lines.append(line)
    docs.append("\n".join(lines).strip())
    return [doc for doc in docs if doc]


def load_fortunes(directory: str | os.PathLike[str] = FORTUNES_DIR,
                  min_docs: int = 50) -> tuple[list[str], np.ndarray, list[str]]:
    """(texts, labels, class_names) of the fortune files in `directory`, one class per file.

    Every regular file is a class named after it, except *.dat and *.u8; symbolic links and
    subdirectories (such as "off") are skipped. Documents are the stripped texts between lines
    that are "%"; empty ones are dropped, and so are classes with fewer than min_docs documents.
    class_names are sorted; labels is an int64 array, labels[i] indexing class_names; texts come
    class by class in that order, each file's documents in file order, so the result is the same
    on every machine with the same files.
    Raises FileNotFoundError if directory does not exist (install the Debian package "fortunes").
    """
    if isinstance(min_docs, bool) or not isinstance(min_docs, (int, np.integer)) or min_docs < 1:
        raise ValueError(f"min_docs must be an int >= 1, got {min_docs!r}")
    directory = os.fspath(directory)
    if not os.path.isdir(directory):
        raise FileNotFoundError(f"fortune directory {directory!r} not found: install the Debian "
                                "package 'fortunes' (apt-get install fortunes) or pass directory=")
    with os.scandir(directory) as entries:
        files = sorted(entry.name for entry in entries
                       if entry.is_file(follow_symlinks=False)
                       and not entry.name.endswith(SKIPPED_SUFFIXES))
    texts: list[str] = []
    counts: list[int] = []
    class_names: list[str] = []
    for name in files:
        docs = _read_fortune_file(os.path.join(directory, name))
        if len(docs) >= min_docs:
            class_names.append(name)
            counts.append(len(docs))
            texts.extend(docs)
    if not class_names:
        raise ValueError(f"no fortune file in {directory!r} has at least min_docs={min_docs} "
                         "documents")
    labels = np.repeat(np.arange(len(class_names), dtype=np.int64), counts)
    return texts, labels, class_names
