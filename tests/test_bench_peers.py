"""fastdp bench peers on tiny data: every task runs, its contenders agree with the reference, the
table and the files are written. No speed is asserted; PyTorch rows need torch installed."""

import json

import numpy as np
import pytest

from fastdp.bench import cases, peers


def test_suite_runs_and_writes_its_report(tmp_path, capsys):
    argv = ["--rows", "3000", "--csr-rows", "300", "--rounds", "1", "--out", str(tmp_path)]
    assert peers.main(argv) == 0
    printed = capsys.readouterr().out
    for task in ("logistic gradient, dense", "logistic gradient, CSR 300 x 2^20",
                 "GD step, 2 processes", "SGD epoch, CSR 300 x 2^20"):
        assert task in printed
    record = json.loads((tmp_path / "peers.json").read_text())
    peers_run = {(r["task"].split(",")[0], r["peer"]) for r in record["rows"]}
    assert ("logistic gradient", "scipy two-pass") in peers_run
    assert all(r["fastdp_s"] > 0 for r in record["rows"])
    assert (tmp_path / "peers.png").stat().st_size > 0


def test_pytorch_autograd_computes_fastdps_sums():
    pytest.importorskip("torch")
    case = cases.Case("logistic", "dense", 400, 5)
    shard = cases.make_shard(case)
    np.testing.assert_allclose(peers.torch_logistic(*shard)(), cases.reference(case, shard),
                               rtol=1e-10)


def test_bad_arguments_exit(capsys):
    with pytest.raises(SystemExit):
        peers.main(["--rows", "1"])
