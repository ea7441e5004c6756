"""fastdp.data predictions: every format, in one block or many, atomically: no file is left behind
when writing fails or stops short."""

import os

import numpy as np
import pytest

from fastdp.data import PredictionWriter, write_predictions

EXTENSIONS = [".npy", ".csv", ".txt", ".parquet"]
VALUES = [
    (np.array([0.1, 2.0, -3.5e-300]), ["0.1", "2.0", "-3.5e-300"]),
    (np.array([0, 2, 1]), ["0", "2", "1"]),
    (np.array(["spam", "ham"]), ["spam", "ham"]),
    (np.array(["spam", "ham"], dtype=object), ["spam", "ham"]),
]


def read_back(path, extension):
    if extension == ".npy":
        return np.load(path, allow_pickle=False).tolist()
    if extension == ".parquet":
        import pyarrow.parquet as pq

        return pq.read_table(path).column("prediction").to_pylist()
    return path.read_text().splitlines()


@pytest.mark.parametrize("values,lines", VALUES)
@pytest.mark.parametrize("extension", EXTENSIONS)
def test_write_predictions(tmp_path, values, lines, extension):
    path = tmp_path / f"predictions{extension}"
    write_predictions(path, values)
    expected = lines if extension in (".csv", ".txt") else values.tolist()
    assert read_back(path, extension) == expected
    assert os.listdir(tmp_path) == [path.name]
    with pytest.raises(ValueError, match=r"predictions\.json: unknown output extension"):
        write_predictions(tmp_path / "predictions.json", values)


@pytest.mark.parametrize("extension", EXTENSIONS)
def test_blocks_give_the_bytes_of_one_block(tmp_path, extension):
    values = np.random.default_rng(0).normal(size=1000)
    write_predictions(tmp_path / f"one{extension}", values)
    with PredictionWriter(tmp_path / f"many{extension}", 1000, np.float64) as out:
        for start in range(0, 1000, 300):
            out.write(values[start:start + 300])
    one, many = (tmp_path / f"{name}{extension}" for name in ("one", "many"))
    if extension == ".parquet":  # row groups follow the blocks; the values are the same
        assert read_back(many, extension) == values.tolist()
    else:
        assert many.read_bytes() == one.read_bytes()


@pytest.mark.parametrize("extension", EXTENSIONS)
def test_a_failed_or_short_write_leaves_no_file(tmp_path, extension):
    path = tmp_path / f"out{extension}"
    with pytest.raises(RuntimeError, match="rank 1 died"):
        with PredictionWriter(path, 10, np.float64) as out:
            out.write(np.zeros(5))
            raise RuntimeError("rank 1 died")
    with pytest.raises(ValueError, match=r"out\.\w+: 5 predictions written, 10 expected"):
        with PredictionWriter(path, 10, np.float64) as out:
            out.write(np.zeros(5))
    with pytest.raises(ValueError, match=r"more than the 10 predictions announced"):
        with PredictionWriter(path, 10, np.float64) as out:
            out.write(np.zeros(11))
    assert os.listdir(tmp_path) == []


def test_an_unwritable_output_path_is_named(tmp_path):
    with pytest.raises(OSError, match=r"cannot write .*nowhere/p\.csv"):
        write_predictions(tmp_path / "nowhere" / "p.csv", np.zeros(3))
