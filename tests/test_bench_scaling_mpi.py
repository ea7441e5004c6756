"""`fastdp bench scaling` end to end: a tiny run on 1 and 2 ranks launches mpiexec and writes its
record and plots."""

import json
import math
import sys

import numpy as np
import pytest

from fastdp import kernels
from fastdp.bench import alphabeta

pytestmark = pytest.mark.mpi


def test_tiny_strong_scaling_run(command, tmp_path):
    result = command(sys.executable, "-m", "fastdp.bench.scaling", "--np", "1,2", "--rows", "2000",
                     "--steps", "3", "--out", str(tmp_path), timeout=120)
    assert result.returncode == 0, result.stderr
    assert "efficiency" in result.stdout and "assumptions:" in result.stdout
    record = json.loads((tmp_path / "scaling.json").read_text())
    assert record["suite"] == "scaling" and record["scaling"] == "strong"
    runs = record["runs"]
    assert [(r["ranks"], r["threads"]) for r in runs] == [(1, 1), (2, 1)]
    assert [r["rows_per_rank"] for r in runs] == [2000, 1000]
    dense = np.empty((0, 1))  # the default "auto" backend's pick for dense least squares
    assert [r["backend"] for r in runs] == [kernels.pick_backend("squared", dense)] * 2
    for r in runs:
        assert r["evaluations"] == 4  # steps + 1 evaluations in a full-batch fit
        assert r["step_s"] > 0 and r["compute_s"] > 0 and r["wait_s"] >= 0
        assert 0 < r["efficiency"] <= 1.5 and 0 < r["compute_share"] <= 1
    assert runs[0]["efficiency"] == pytest.approx(1.0)
    model = record["model"]
    for key in ("alpha_s", "beta_s_per_byte"):
        assert math.isfinite(model[key]) and model[key] >= 0
    assert model["rows_per_s"] > 0 and model["rate_from"] == {"ranks": 1, "threads": 1}
    assert len(model["table"]) == len(alphabeta.NODES) * len(alphabeta.PARAMS)
    assert all(0 < row["efficiency"] <= 1 for row in model["table"])
    for name in ("scaling.png", "scaling_model.png"):
        assert (tmp_path / name).stat().st_size > 0
