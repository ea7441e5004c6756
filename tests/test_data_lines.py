"""fastdp.data.lines.LineIndex: where each line starts, from a checkpoint per chunk, against a
brute-force scan; reads touch only a range's bytes and at most one chunk per line search."""

import os
import tempfile

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fastdp.data import lines
from fastdp.data.lines import LineIndex


def brute_starts(content: bytes) -> list[int]:
    """Byte offsets where the lines start (a last line without a newline counts)."""
    starts = [0] + [i + 1 for i, b in enumerate(content) if b == ord("\n")]
    return starts if content and not content.endswith(b"\n") else starts[:-1] if content else []


@settings(max_examples=80, deadline=None)
@given(content=st.binary(max_size=60).map(lambda b: b.replace(b"\r", b"")),
       chunk=st.integers(1, 9))
def test_offsets_and_first_lines_match_a_brute_force_scan(content, chunk):
    with tempfile.TemporaryDirectory() as directory:
        path = os.path.join(directory, "f.txt")
        with open(path, "wb") as f:
            f.write(content)
        old, lines.CHUNK_BYTES = lines.CHUNK_BYTES, chunk
        try:
            index = LineIndex(path)
        finally:
            lines.CHUNK_BYTES = old
        starts = brute_starts(content)
        assert index.n_lines == len(starts) and index.n_bytes == len(content)
        for line, start in enumerate(starts):
            assert index.offset(line) == start
        assert index.offset(len(starts)) == len(content)
        for offset in range(len(content) + 2):
            assert index.first_line_from(offset) == sum(s < offset for s in starts)


@pytest.mark.parametrize("start,stop", [(0, 10), (500, 510), (990, 1000), (0, 1000)])
def test_reading_a_range_reads_its_bytes_and_at_most_two_chunks_more(tmp_path, monkeypatch,
                                                                    start, stop):
    monkeypatch.setattr(lines, "CHUNK_BYTES", 256)
    text = [f"line {i} " + "x" * (i % 17) for i in range(1000)]
    path = tmp_path / "f.txt"
    path.write_text("".join(t + "\n" for t in text))
    index = LineIndex(str(path))
    assert index.read(start, stop) == text[start:stop]
    own = sum(len(t) + 1 for t in text[start:stop])
    assert own <= index.bytes_read <= own + 2 * 256
