"""Line-oriented files (CSV, text): one cheap pass that counts lines, then reads of line ranges
that touch only their own bytes.

    index = LineIndex("docs.txt")   # one pass: counts newlines, a checkpoint per CHUNK_BYTES
    index.n_lines                   # lines in the file (a last line without a newline counts)
    index.read(100, 200)            # lines 100..199: reads their bytes and at most one chunk more
    index.first_line_from(4096)     # the first line that starts at or after byte 4096

The index keeps, for the start of each chunk of CHUNK_BYTES bytes, how many newlines come before
it: n_bytes / CHUNK_BYTES integers. Finding where a line starts scans one chunk from the
checkpoint before it, so ranks that read consecutive line ranges read each byte about once.
"""

from __future__ import annotations

import bisect
import os

CHUNK_BYTES = 1 << 20


class LineIndex:
    """Where the lines of the file at path start (see the module docstring).

    n_lines: lines in the file; n_bytes: its size; bytes_read: bytes read by `read` and the
    line searches so far (not by the counting pass), for tests and reports.
    """

    def __init__(self, path: str) -> None:
        self.path = path
        self.chunk = CHUNK_BYTES
        self.newlines_before: list[int] = []  # newlines in bytes [0, k * chunk), for each k
        count, last = 0, b"\n"
        with open(path, "rb") as f:
            while block := f.read(self.chunk):
                self.newlines_before.append(count)
                count += block.count(b"\n")
                last = block[-1:]
        self.n_bytes = os.path.getsize(path)
        self.n_newlines = count
        self.n_lines = count + (last != b"\n")
        self.bytes_read = 0

    def _read_at(self, offset: int, size: int) -> bytes:
        with open(self.path, "rb") as f:
            f.seek(offset)
            block = f.read(size)
        self.bytes_read += len(block)
        return block

    def offset(self, line: int) -> int:
        """Byte offset where line `line` (0-based) starts; the file's size for line >= n_lines."""
        if line <= 0:
            return 0
        if line > self.n_newlines:
            return self.n_bytes
        k = bisect.bisect_left(self.newlines_before, line) - 1  # the chunk holding newline `line`
        block = self._read_at(k * self.chunk, self.chunk)
        i = -1
        for _ in range(line - self.newlines_before[k]):
            i = block.find(b"\n", i + 1)
        return k * self.chunk + i + 1

    def first_line_from(self, offset: int) -> int:
        """The number of the first line starting at or after byte `offset` (n_lines past the end):
        the lines that start before it are the first one and one after each newline before
        byte offset - 1."""
        if offset <= 0:
            return 0
        if offset > self.n_bytes - 1:
            return self.n_lines
        k = (offset - 1) // self.chunk
        block = self._read_at(k * self.chunk, offset - 1 - k * self.chunk)
        return min(self.n_lines, 1 + self.newlines_before[k] + block.count(b"\n"))

    def read(self, start: int, stop: int) -> list[str]:
        """Lines start..stop-1, decoded as UTF-8, without their line endings (\\n or \\r\\n);
        a ValueError names the line that is not valid UTF-8."""
        if stop <= start:
            return []
        begin = self.offset(start)
        block = self._read_at(begin, self.offset(stop) - begin)
        try:
            text = block.decode("utf-8")
        except UnicodeDecodeError as exc:
            number = start + block.count(b"\n", 0, exc.start) + 1
            raise ValueError(f"{self.path}, line {number}: not valid UTF-8 ({exc.reason})") from None
        lines = text.split("\n")
        if text.endswith("\n"):
            lines.pop()
        return [line[:-1] if line.endswith("\r") else line for line in lines]

    def read_bytes(self, start: int, stop: int) -> bytes:
        """The raw bytes of lines start..stop-1, line endings included."""
        begin = self.offset(start)
        return self._read_at(begin, self.offset(stop) - begin) if stop > start else b""
