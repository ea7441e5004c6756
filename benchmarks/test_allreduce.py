"""Communication: fastdp's Allreduce of a step's flat buffer against a bare mpi4py Allreduce of
the same buffer, on 2 ranks (`fastdp bench comm`, launched with mpiexec once per session).

Run:

    pytest benchmarks/test_allreduce.py --benchmark-only

pytest-benchmark times one whole launch (mpiexec, imports, every size), which says little by
itself; the figures are the per-call medians measured inside the ranks (interleaved calls, a
barrier before each, the slowest rank's time), recorded in extra_info and in the summary table:
"fastdp" against "bare" for buffers of the sizes of a step (p + 2 float64 values: a 32-feature
model, a 10-class softmax over 1,000 features, and a 2**20-feature hashed-text model).
"""

import json

import pytest

from fastdp.bench import comm

SIZES = {"allreduce-34-values": 34, "allreduce-10011-values": 10_011,
         "allreduce-1048578-values": 2**20 + 2}


@pytest.fixture(scope="module")
def measured(tmp_path_factory):
    """Per-size records of one `fastdp bench comm --np 2` run over SIZES."""
    out = tmp_path_factory.mktemp("comm")
    argv = ["--np", "2", "--out", str(out), "--sizes", ",".join(map(str, SIZES.values()))]
    return lambda: comm.main(argv), out


def test_allreduce(benchmark, measured, timings):
    run, out = measured
    benchmark.pedantic(run, rounds=1, iterations=1)
    record = json.loads((out / "comm.json").read_text())
    by_values = {r["values"]: r for r in record["sizes"]}
    for case, values in SIZES.items():
        r = by_values[values]
        benchmark.extra_info[f"{case} fastdp/bare"] = r["ratio"]
        timings[case, "fastdp"] = (r["fastdp_median_s"], None)
        timings[case, "bare"] = (r["bare_median_s"], None)
    assert record["alpha_s"] >= 0 and record["beta_s_per_byte"] >= 0
