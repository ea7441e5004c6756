"""fastdp bench peers on tiny data: every task runs, its contenders agree with the reference, the
table and the files are written. No speed is asserted; PyTorch rows need torch installed."""

import json

import numpy as np
import pytest

from fastdp.bench import cases, peers


def test_suite_runs_and_writes_its_report(tmp_path, capsys):
    argv = ["--rows", "3000", "--csr-rows", "300", "--rounds", "1", "--bandwidth-bytes",
            str(1 << 20), "--out", str(tmp_path)]
    assert peers.main(argv) == 0
    printed = capsys.readouterr().out
    for task in ("logistic gradient, dense", "logistic gradient, CSR 300 x 2^20",
                 "GD step, 2 processes", "SGD epoch, CSR 300 x 2^20"):
        assert task in printed
    assert printed.splitlines()[1].split()[-1] == "ceiling"  # after the machine line
    record = json.loads((tmp_path / "peers.json").read_text())
    peers_run = {(r["task"].split(",")[0], r["peer"]) for r in record["rows"]}
    assert ("logistic gradient", "scipy two-pass") in peers_run
    assert all(r["fastdp_s"] > 0 for r in record["rows"])
    for r in record["rows"]:  # a ceiling where the probe was timed beside the peer
        gradient = r["task"].startswith("logistic gradient") and r["peer_s"] is not None
        assert (r["ceiling"] > 0) if gradient else r["ceiling"] is None
    assert (tmp_path / "peers.png").stat().st_size > 0


def test_a_rows_ceiling_is_the_peers_time_over_one_pass_at_the_probes_bandwidth():
    row = peers._row("task", "peer", 0.3, 0.1, 0.05)
    assert row["fastdp_x"] == pytest.approx(3.0) and row["ceiling"] == pytest.approx(6.0)
    assert peers._row("task", "peer", None, 0.1, 0.05)["ceiling"] is None  # not installed
    assert peers._row("task", "peer", 0.3, 0.1)["ceiling"] is None  # no probe beside it
    table = peers.format_table([row, peers._row("other", "peer", 0.2, 0.1)])
    assert [line.split()[-1] for line in table.splitlines()[1:3]] == ["6.00", "-"]


def test_pytorch_autograd_computes_fastdps_sums():
    pytest.importorskip("torch")
    case = cases.Case("logistic", "dense", 400, 5)
    shard = cases.make_shard(case)
    np.testing.assert_allclose(peers.torch_logistic(*shard)(), cases.reference(case, shard),
                               rtol=1e-10)


def test_bad_arguments_exit(capsys):
    with pytest.raises(SystemExit):
        peers.main(["--rows", "1"])
    assert "--rows must be >= 2" in capsys.readouterr().err


def test_help_describes_the_suite_and_its_options(capsys):
    with pytest.raises(SystemExit):
        peers.main(["--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "PyTorch and scikit-learn doing the same work, measured in one run on this machine." in text
    assert "rows of the dense tasks (default 4000000)" in text
