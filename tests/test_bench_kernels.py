"""fastdp bench kernels: every contender checked against the reference, the targets computed from
the measured ratios, JSON and PNG written. Tiny shards (--scale 1e-3); no speed is asserted."""

import json

import numpy as np
import pytest

from fastdp.bench import cases, kernels, report
from fastdp.bench.bandwidth import bandwidth_probe, read_bandwidth


def test_suite_runs_checks_and_writes_its_report(tmp_path, capsys):
    argv = ["--scale", "1e-3", "--rounds", "1", "--bandwidth-bytes", str(1 << 20), "--out",
            str(tmp_path), "--cases", "squared-dense-4e6x32", "squared-dense-4e6x32-f32",
            "logistic-csr-2e5x2^20", "softmax10-dense-1e6x64"]
    assert kernels.main(argv) == 0
    printed = capsys.readouterr().out
    assert "x numpy" in printed and "float32 / float64 rows/s" in printed and "paired" in printed
    assert report.describe() in printed.splitlines()  # the machine line
    probe_lines = [line for line in printed.splitlines() if line.split()[1:2] == ["read"]]
    assert len(probe_lines) == 4, "each case's line of the bandwidth probe"
    record = json.loads((tmp_path / "kernels.json").read_text())
    assert record["machine"]["cores"] >= 1
    assert set(record["bandwidth_gb_per_s"]) == set(record["results"])
    assert min(record["bandwidth_gb_per_s"].values()) > 0
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
    def result(rounds, share=0.5, share_median=0.4):
        best = min(rounds)
        return {"seconds": best, "gb_per_s": 1.0 / best, "rows_per_s": 100.0 / best,
                "bandwidth_share": share, "share_median": share_median, "round_seconds": rounds}

    results = {"squared-dense-4e6x32": {"numba": result([2.0, 3.0, 2.5], 0.95),
                                        "cython": result([1.0, 2.0, 2.0], 0.8, 0.7),
                                        "numpy": result([5.0, 6.0, 8.0])},
               "squared-dense-4e6x32-f32": {"numba": result([0.5, 1.0, 1.0]),
                                            "cython": result([0.6, 0.6, 0.6]),
                                            "numpy": result([3.0, 3.0, 3.0])}}
    targets = {t["target"]: t for t in kernels.evaluate_targets(results)}
    # the best compiled contender is the fastest one (cython), and its share is the one reported
    share = targets["dense squared f64: % of read bandwidth"]
    assert share["measured"] == pytest.approx(0.8) and share["paired"] == pytest.approx(0.7)
    assert share["met"] and share["ceiling"] is None
    numpy = targets["dense squared f64: x NumPy two-pass"]
    assert numpy["measured"] == pytest.approx(5.0) and numpy["met"]  # 5 s best over 1 s best
    assert numpy["paired"] == pytest.approx(4.0)  # median of 5/1, 6/2, 8/2
    assert numpy["ceiling"] == pytest.approx(5.0 / 0.8)  # cython at the probe's bandwidth
    f32 = targets["dense squared: float32 / float64 rows/s"]
    assert f32["measured"] == pytest.approx(2.0)  # numba's best 0.5 s against cython's 1.0 s
    assert f32["paired"] == pytest.approx(2.0)  # median of 1/0.5, 2/1, 2/1
    assert f32["ceiling"] == pytest.approx(2.0 / 0.5)  # numba's share of the f32 rounds' probe
    table = kernels.format_table(results, {case: 1.0 for case in results}, list(targets.values()))
    printed = {line[:44].strip(): line[44:].split() for line in table.splitlines()[-4:]}
    assert printed["target"] == ["measured", "paired", "minimum", "ceiling", "met"]
    assert printed["dense squared f64: % of read bandwidth"][-2:] == ["-", "yes"]
    assert printed["dense squared f64: x NumPy two-pass"][-2:] == ["6.25", "yes"]
    assert "dense logistic f64: x NumPy two-pass" not in targets  # not measured in this run


def test_time_cases_measures_the_probe_in_the_same_rounds(monkeypatch):
    """The share of the bandwidth is the contender's best GB/s over the probe's best GB/s in the
    case's own rounds; the median share pairs each round's contender with that round's probe.
    Two cases timed together share one probe and one set of rounds."""
    f64 = cases.CASES["squared-dense-4e6x32"]._replace(rows=200)
    f32 = cases.CASES["squared-dense-4e6x32-f32"]._replace(rows=200)
    n_bytes = cases.bytes_of_x(cases.make_shard(f64).X)
    probe_s = [1.0, 0.5, 1.0]  # round 2: the machine was 2x faster for the probe
    kernel_s = [2.0, 2.0, 4.0]
    calls = []

    def fake_times(runs, rounds):
        calls.append(list(runs))
        assert list(runs)[0] == kernels.PROBE and rounds == 3
        return {name: probe_s if name == kernels.PROBE else kernel_s for name in runs}

    monkeypatch.setattr(kernels, "interleaved_times", fake_times)
    results, read = kernels.time_cases({"a": f64, "b": f32}, 3, (lambda: None, n_bytes))
    assert calls == [[kernels.PROBE] + [f"{case}/{name}" for case in "ab" for name in cases.CONTENDERS]]
    assert read == pytest.approx(2 * n_bytes / 1e9)  # the probe's best round: 0.5 s
    for case, share in (("a", 0.25), ("b", 0.125)):  # float32: half the bytes in the same time
        for r in results[case].values():
            assert r["seconds"] == 2.0 and r["rows_per_s"] == 100.0
            assert r["bandwidth_share"] == pytest.approx(share)  # 2 s against 0.5 s
            # per round: 0.5, 0.25, 0.25 of the probe (float64); the median is 0.25
            assert r["share_median"] == pytest.approx(share)
            assert r["round_seconds"] == kernel_s


def test_float32_cases_share_their_float64_cases_rounds():
    f32, f64 = "squared-dense-4e6x32-f32", "squared-dense-4e6x32"
    lf32, lf64 = "logistic-dense-4e6x32-f32", "logistic-dense-4e6x32"
    csr = "logistic-csr-2e5x2^20"
    assert kernels.case_groups([f64, csr, f32, lf32, lf64]) == [[f64, f32], [csr], [lf32, lf64]]
    assert kernels.case_groups([f32, csr]) == [[f32], [csr]]  # its partner not selected
    assert kernels.case_groups(list(cases.CASES)) == [
        [f64, f32], [lf64, lf32]] + [[name] for name in cases.CASES if name not in (f64, f32, lf64, lf32)]


def test_bandwidth_probe_checks_its_arguments():
    assert read_bandwidth(1 << 16, repeats=1) > 0
    run, size = bandwidth_probe(1 << 16)
    assert size == 1 << 16 and run() == size // 8
    with pytest.raises(ValueError, match="n_bytes must be >= 8"):
        read_bandwidth(4)
    with pytest.raises(ValueError, match="repeats must be >= 1"):
        read_bandwidth(1 << 16, repeats=0)


@pytest.mark.parametrize("argv", [["--rounds", "0"], ["--scale", "0"], ["--bandwidth-bytes", "4"],
                                  ["--cases", "no-such-case"]])
def test_bad_arguments_exit_naming_them(argv, capsys):
    with pytest.raises(SystemExit) as raised:
        kernels.main(argv)
    assert raised.value.code == 2
    assert argv[0] in capsys.readouterr().err


def test_help_describes_the_suite_in_its_whole_first_sentence(capsys):
    with pytest.raises(SystemExit):
        kernels.main(["--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "read bandwidth and the NumPy/SciPy two-pass reference, measured in one run." in text
    assert "--bandwidth-bytes" in text and "(default 10)" in text
