"""`fastdp bench scaling` without MPI: speedup and efficiency from step times, the node rate, and
the options it refuses."""

import pytest

from fastdp.bench import scaling


def run(ranks, threads, step_s, compute_s=0.5e-3, rows=1000):
    return {"ranks": ranks, "threads": threads, "step_s": step_s, "compute_s": compute_s,
            "compute_max_s": compute_s, "rows": rows}


def test_strong_scaling_against_the_fewest_ranks_of_the_same_threads():
    runs = [run(1, 1, 4.0), run(2, 1, 2.5), run(4, 1, 1.0), run(2, 2, 2.0), run(4, 2, 1.0)]
    out = scaling.add_scaling(runs, "strong")
    assert [r["speedup"] for r in out] == pytest.approx([1.0, 1.6, 4.0, 1.0, 2.0])
    assert [r["efficiency"] for r in out] == pytest.approx([1.0, 0.8, 1.0, 1.0, 1.0])
    assert out[0]["compute_share"] == pytest.approx(0.5e-3 / 4.0)
    assert runs[0].keys() == run(1, 1, 4.0).keys()  # the input is left as it was


def test_weak_scaling_efficiency_is_the_step_time_ratio():
    out = scaling.add_scaling([run(1, 1, 1.0), run(2, 1, 1.25), run(4, 1, 2.0)], "weak")
    assert [r["efficiency"] for r in out] == pytest.approx([1.0, 0.8, 0.5])
    assert [r["speedup"] for r in out] == pytest.approx([1.0, 1.6, 2.0])


def test_add_scaling_rejects_an_unknown_scaling():
    with pytest.raises(ValueError, match="scaling must be one of"):
        scaling.add_scaling([run(1, 1, 1.0)], "medium")


def test_node_rate_comes_from_the_fewest_ranks_and_most_threads():
    runs = [run(2, 1, 1.0, 0.25, 4000), run(1, 1, 1.0, 0.5, 4000), run(1, 2, 1.0, 0.2, 4000)]
    rate, source = scaling.node_rate(runs)
    assert source is runs[2]
    assert rate == pytest.approx(20_000)


@pytest.mark.parametrize("argv, match", [
    (["--rows", "0"], "--rows must be >= 1"),
    (["--steps", "0"], "--steps must be >= 1"),
    (["--np", "1,0"], "expected integers >= 1"),
    (["--threads", "two"], "expected comma-separated integers"),
    (["--np", "1,4", "--rows", "3"], "--rows must be >= the largest --np"),
    (["--weak", "--strong"], "not allowed with argument"),
])
def test_main_rejects_bad_options(argv, match, capsys):
    with pytest.raises(SystemExit) as exc:
        scaling.main(argv)
    assert exc.value.code == 2
    assert match in capsys.readouterr().err
