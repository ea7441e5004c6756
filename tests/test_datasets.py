"""load_fortunes on the installed Debian corpus and on a small directory built here."""

import os

import numpy as np
import pytest

from fastdp.datasets import load_fortunes


def test_installed_fortunes(fortunes_dir):
    texts, labels, names = load_fortunes(fortunes_dir, min_docs=50)
    assert len(names) >= 5
    assert names == sorted(names)
    assert len(texts) == len(labels) > 1000
    assert labels.dtype == np.int64
    assert (np.diff(labels) >= 0).all()
    counts = np.bincount(labels, minlength=len(names))
    assert (counts >= 50).all()
    for text in texts:
        assert text and text == text.strip()
        assert "%" not in text.splitlines()
    for name in names:
        path = os.path.join(fortunes_dir, name)
        assert os.path.isfile(path) and not os.path.islink(path)
        assert not name.endswith((".dat", ".u8"))


def test_installed_fortunes_are_deterministic_and_min_docs_drops_classes(fortunes_dir):
    texts, labels, names = load_fortunes(fortunes_dir)
    again = load_fortunes(fortunes_dir)
    assert again[0] == texts and again[2] == names
    np.testing.assert_array_equal(again[1], labels)
    few_texts, few_labels, few_names = load_fortunes(fortunes_dir, min_docs=500)
    assert 0 < len(few_names) < len(names)
    assert set(few_names) <= set(names)
    assert (np.bincount(few_labels) >= 500).all()
    all_texts, _, all_names = load_fortunes(fortunes_dir, min_docs=1)
    assert len(all_names) >= len(names) and len(all_texts) >= len(texts)


@pytest.fixture
def small_dir(tmp_path):
    """Three fortune files (one too small), plus things the loader must skip."""
    (tmp_path / "beta").write_text("B one\n%\n\n  B two\nsecond line  \n%\n%\n   \n%\nB three\n")
    (tmp_path / "alpha").write_text("%\nA one\n%\nA two\n100% sure\n% not a separator\n%\n")
    (tmp_path / "gamma").write_text("G only\n")
    (tmp_path / "alpha.dat").write_bytes(b"\x00\x00\x00\x02binary index")
    (tmp_path / "alpha.u8").symlink_to(tmp_path / "alpha")
    (tmp_path / "delta").symlink_to(tmp_path / "beta")
    (tmp_path / "off").mkdir()
    (tmp_path / "off" / "rude").write_text("X\n%\nY\n%\nZ\n")
    return tmp_path


def test_small_directory(small_dir):
    texts, labels, names = load_fortunes(small_dir, min_docs=2)
    assert names == ["alpha", "beta"]
    assert texts == ["A one", "A two\n100% sure\n% not a separator", "B one",
                     "B two\nsecond line", "B three"]
    assert labels.tolist() == [0, 0, 1, 1, 1]
    texts, labels, names = load_fortunes(str(small_dir), min_docs=1)
    assert names == ["alpha", "beta", "gamma"]
    assert texts[-1] == "G only" and labels.tolist() == [0, 0, 1, 1, 1, 2]
    assert load_fortunes(small_dir, min_docs=3)[2] == ["beta"]


def test_errors(small_dir, tmp_path):
    with pytest.raises(FileNotFoundError, match="apt-get install fortunes"):
        load_fortunes(tmp_path / "missing")
    with pytest.raises(ValueError, match="at least min_docs=4 documents"):
        load_fortunes(small_dir, min_docs=4)
    for bad in (0, -1, 2.5, True, "50"):
        with pytest.raises(ValueError, match="min_docs must be an int >= 1"):
            load_fortunes(small_dir, min_docs=bad)
