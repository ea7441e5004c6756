"""`fastdp bench comm` end to end: it relaunches itself on 2 ranks, writes its record and plot."""

import json
import math
import sys

import pytest

from fastdp.bench import comm

pytestmark = pytest.mark.mpi

SIZES = [1, 16, 256, 4096]


def test_comm_suite_on_two_ranks(command, tmp_path):
    result = command(sys.executable, "-m", "fastdp.bench.comm", "--np", "2", "--sizes",
                     ",".join(map(str, SIZES)), "--repeats", "5", "--out", str(tmp_path),
                     timeout=120)
    assert result.returncode == 0, result.stderr
    assert "fastdp/bare" in result.stdout and "alpha =" in result.stdout
    record = json.loads((tmp_path / "comm.json").read_text())
    assert record["suite"] == "comm" and record["ranks"] == 2
    assert [m["values"] for m in record["sizes"]] == SIZES
    assert [m["bytes"] for m in record["sizes"]] == [8 * n for n in SIZES]
    for m in record["sizes"]:
        assert m["repeats"] == comm.MIN_REPEATS
        for key in ("bare_median_s", "bare_min_s", "fastdp_median_s", "fastdp_min_s", "ratio"):
            assert m[key] > 0, (key, m)
        assert m["bare_min_s"] <= m["bare_median_s"]
    for key in ("alpha_s", "beta_s_per_byte"):
        assert math.isfinite(record[key]) and record[key] >= 0
    assert isinstance(record["target"]["met"], bool)
    assert (tmp_path / "comm.png").stat().st_size > 0


@pytest.mark.parametrize("argv, match", [
    (["--np", "1"], "--np must be >= 2"),
    (["--repeats", "0"], "--repeats must be >= 1"),
    (["--sizes", "1,0"], "expected integers >= 1"),
    (["--sizes", "8,x"], "expected comma-separated integers"),
])
def test_comm_suite_rejects_bad_options(argv, match, capsys):
    with pytest.raises(SystemExit) as exc:
        comm.main(argv)
    assert exc.value.code == 2
    assert match in capsys.readouterr().err
