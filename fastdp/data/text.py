"""Text files, one document per line: `label<TAB>text`, or the whole line without labels."""

from __future__ import annotations

import numpy as np

from .lines import LineIndex


class TextSource:
    """The lines of a text file; `read(rows)` returns (documents, labels or None)."""

    format = "text"
    feature_names = None
    label_name = None

    def __init__(self, path: str, labels: bool) -> None:
        self.path, self.labels = path, labels
        self.index = LineIndex(path)
        if self.index.n_lines == 0:
            raise ValueError(f"{path}: the file is empty")
        self.n_rows = self.index.n_lines
        self.row_bytes_start = 0

    def first_row_from(self, offset: int) -> int:
        """The first line starting at or after byte offset."""
        return self.index.first_line_from(offset)

    def read(self, rows: range) -> tuple[list[str], np.ndarray | None]:
        """The documents of lines `rows`, and their labels (str) when the file has labels."""
        lines = self.index.read(rows.start, rows.stop)
        if not self.labels:
            return lines, None
        texts, labels = [], []
        for number, line in enumerate(lines, start=rows.start + 1):
            label, tab, text = line.partition("\t")
            if not tab or not label or label.endswith("\x00"):  # numpy drops trailing NULs
                problem = ("no TAB after a label" if not tab else "an empty label" if not label
                           else "a label ending in a NUL character")
                shown = f"{line[:40]!r}{'...' if len(line) > 40 else ''}"
                raise ValueError(f"{self.path}, line {number}: {problem}; expected "
                                 f"'label<TAB>text', got {shown}")
            labels.append(label)
            texts.append(text)
        return texts, np.array(labels, dtype=str)
