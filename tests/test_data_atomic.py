"""fastdp.data.atomic_file: the old file or the whole new one, never a part."""

import os

import pytest

from fastdp.data import atomic_file


def test_atomic_file_keeps_the_old_file_when_writing_fails(tmp_path):
    path = tmp_path / "out.bin"
    path.write_bytes(b"old contents")
    with pytest.raises(RuntimeError, match="disk on fire"):
        with atomic_file(path) as f:
            f.write(b"new, partial")
            raise RuntimeError("disk on fire")
    assert path.read_bytes() == b"old contents" and os.listdir(tmp_path) == ["out.bin"]
    with atomic_file(path) as f:
        f.write(b"new contents")
    assert path.read_bytes() == b"new contents" and os.listdir(tmp_path) == ["out.bin"]


def test_an_unwritable_directory_is_named(tmp_path):
    with pytest.raises(OSError, match=r"cannot write .*missing/out\.bin"):
        with atomic_file(tmp_path / "missing" / "out.bin"):
            pass
