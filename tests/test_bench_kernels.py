"""fastdp bench kernels: every contender checked against the reference, the targets computed from
the measured ratios, JSON and PNG written. Tiny shards (--scale 1e-3); no speed is asserted."""

import json

import numpy as np
import pytest

from fastdp.bench import cases, kernels
from fastdp.bench.bandwidth import read_bandwidth


def test_suite_runs_checks_and_writes_its_report(tmp_path, capsys):
    argv = ["--scale", "1e-3", "--rounds", "1", "--bandwidth-bytes", str(1 << 20), "--out",
            str(tmp_path), "--cases", "squared-dense-4e6x32", "squared-dense-4e6x32-f32",
            "logistic-csr-2e5x2^20", "softmax10-dense-1e6x64"]
    assert kernels.main(argv) == 0
    printed = capsys.readouterr().out
    assert "x numpy" in printed and "float32 / float64 rows/s" in printed
    record = json.loads((tmp_path / "kernels.json").read_text())
    assert record["machine"]["cores"] >= 1 and record["bandwidth_gb_per_s"] > 0
    assert set(record["results"]["logistic-csr-2e5x2^20"]) == {"numba", "cython", "numpy"}
    assert {t["target"] for t in record["targets"]} >= {"CSR logistic: x SciPy two-pass",
                                                        "dense squared: float32 / float64 rows/s"}
    assert (tmp_path / "kernels.png").stat().st_size > 0


@pytest.mark.parametrize("name", list(cases.CASES))
def test_every_case_and_contender_matches_the_reference(name):
    case = cases.CASES[name]._replace(rows=500)
    shard = cases.make_shard(case)
    assert shard.X.dtype == case.dtype
    ref = cases.reference(case, shard)
    for contender in cases.CONTENDERS:
        cases.assert_matches(case, cases.make_kernel(case, contender, shard)(), ref)


def test_a_wrong_kernel_fails_the_check():
    case = cases.CASES["logistic-dense-4e6x32"]._replace(rows=300)
    shard = cases.make_shard(case)
    ref = cases.reference(case, shard)
    with pytest.raises(AssertionError, match="gradient"):
        cases.assert_matches(case, ref * np.r_[np.ones(len(ref) - 2), 1.001, 1.0], ref)


def test_targets_are_ratios_of_the_measured_results():
    def result(seconds):
        return {"seconds": seconds, "gb_per_s": 1.0 / seconds, "rows_per_s": 100.0 / seconds}

    results = {"squared-dense-4e6x32": {"numba": result(2.0), "cython": result(1.0),
                                        "numpy": result(5.0)},
               "squared-dense-4e6x32-f32": {"numba": result(0.5), "cython": result(0.6),
                                            "numpy": result(3.0)}}
    targets = {t["target"]: t for t in kernels.evaluate_targets(results, bandwidth=1.25)}
    assert targets["dense squared f64: % of read bandwidth"]["measured"] == pytest.approx(0.8)
    assert targets["dense squared f64: x NumPy two-pass"]["measured"] == pytest.approx(5.0)
    assert targets["dense squared f64: x NumPy two-pass"]["met"]
    assert targets["dense squared: float32 / float64 rows/s"]["measured"] == pytest.approx(2.0)
    assert "dense logistic f64: x NumPy two-pass" not in targets  # not measured in this run


def test_bandwidth_probe_checks_its_arguments():
    assert read_bandwidth(1 << 16, repeats=1) > 0
    with pytest.raises(ValueError, match="n_bytes must be >= 8"):
        read_bandwidth(4)
