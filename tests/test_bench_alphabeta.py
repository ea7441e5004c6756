"""The alpha-beta Allreduce model: fitting known latency and bandwidth back, and its predictions."""

import math

import numpy as np
import pytest

from fastdp.bench import alphabeta

ALPHA = 2e-6  # s
BETA = 1e-10  # s/byte: 10 GB/s
SIZES = [8.0 * 4**k for k in range(12)]  # 8 B .. 32 MiB


def synthetic(ranks, alpha=ALPHA, beta=BETA):
    if ranks == 1:
        return [alpha + n * beta for n in SIZES]
    return [alphabeta.allreduce_seconds(n, ranks, alpha, beta) for n in SIZES]


@pytest.mark.parametrize("ranks", [1, 2, 3, 8])
def test_fit_recovers_exact_parameters(ranks):
    alpha, beta = alphabeta.fit(SIZES, synthetic(ranks), ranks)
    assert alpha == pytest.approx(ALPHA, rel=1e-9)
    assert beta == pytest.approx(BETA, rel=1e-9)


@pytest.mark.parametrize("ranks", [2, 4])
def test_fit_with_one_percent_noise(ranks):
    rng = np.random.default_rng(0)
    times = np.array(synthetic(ranks)) * (1 + 0.01 * rng.standard_normal(len(SIZES)))
    alpha, beta = alphabeta.fit(SIZES, times, ranks)
    assert alpha == pytest.approx(ALPHA, rel=0.03)
    assert beta == pytest.approx(BETA, rel=0.03)


def test_fit_is_non_negative():
    # times that fall with size would need a negative beta
    alpha, beta = alphabeta.fit([8, 80, 800], [3e-6, 2e-6, 1e-6], 2)
    assert alpha >= 0 and beta == 0


def test_model_degenerates_on_one_rank():
    assert alphabeta.coefficients(1) == (0.0, 0.0)
    assert alphabeta.allreduce_seconds(1e6, 1, ALPHA, BETA) == 0.0
    assert alphabeta.coefficients(5) == (6.0, 1.6)


@pytest.mark.parametrize("sizes, seconds, ranks, match", [
    ([8, -1], [1e-6, 2e-6], 2, "sizes_bytes must be finite and >= 0"),
    ([8, 16], [1e-6, -2e-6], 2, "seconds must be finite and > 0"),
    ([8, 16], [1e-6, 0.0], 2, "seconds must be finite and > 0"),
    ([8, 16], [1e-6, float("nan")], 2, "seconds must be finite and > 0"),
    ([8, 16, 32], [1e-6, 2e-6], 2, "same length, got 3 and 2"),
    ([8, 8, 8], [1e-6, 2e-6, 3e-6], 2, "at least 2 distinct sizes"),
    ([8], [1e-6], 2, "at least 2 distinct sizes"),
    ([[8, 16]], [[1e-6, 2e-6]], 2, "must be 1-d"),
    ([8, 16], [1e-6, 2e-6], 0, "ranks must be an integer >= 1"),
    ([8, 16], [1e-6, 2e-6], 2.5, "ranks must be an integer >= 1"),
])
def test_fit_rejects_bad_input(sizes, seconds, ranks, match):
    with pytest.raises(ValueError, match=match):
        alphabeta.fit(sizes, seconds, ranks)


@pytest.mark.parametrize("scaling", ["strong", "weak"])
def test_efficiency_is_at_most_one_and_falls_with_nodes(scaling):
    for params in alphabeta.PARAMS:
        steps = [alphabeta.predict_step(params, 1_000_000, n, 5e7, ALPHA, BETA, scaling=scaling)
                 for n in (1, 2, 4, 8, 16, 1024)]
        efficiency = [s["efficiency"] for s in steps]
        assert efficiency[0] == pytest.approx(1.0)
        assert all(0 < e <= 1 for e in efficiency)
        assert all(a > b for a, b in zip(efficiency, efficiency[1:]))


def test_predict_step_parts():
    step = alphabeta.predict_step(998, 1_000_000, 4, 1e6, ALPHA, BETA)
    assert step["buffer_bytes"] == 8000
    assert step["rows_per_node"] == 250_000
    assert step["compute_s"] == pytest.approx(0.25)
    assert step["comm_s"] == pytest.approx(4 * ALPHA + 1.5 * 8000 * BETA)
    assert step["step_s"] == pytest.approx(step["compute_s"] + step["comm_s"])
    assert step["speedup"] == pytest.approx(1.0 / step["step_s"])
    assert step["efficiency"] == pytest.approx(step["speedup"] / 4)


def test_weak_scaling_keeps_rows_per_node():
    step = alphabeta.predict_step(10, 1000, 64, 1e6, ALPHA, BETA, scaling="weak")
    assert step["rows_per_node"] == 1000
    assert step["efficiency"] == pytest.approx(1e-3 / step["step_s"])
    assert step["speedup"] == pytest.approx(64 * step["efficiency"])


def test_no_communication_cost_is_perfect_scaling():
    for scaling in alphabeta.SCALINGS:
        step = alphabeta.predict_step(10**7, 4096, 1024, 1e6, 0.0, 0.0, scaling=scaling)
        assert step["efficiency"] == pytest.approx(1.0)


def test_bigger_models_scale_worse():
    efficiency = [alphabeta.predict_step(p, 10**6, 64, 1e7, ALPHA, BETA)["efficiency"]
                  for p in alphabeta.PARAMS]
    assert all(a > b for a, b in zip(efficiency, efficiency[1:]))


@pytest.mark.parametrize("kwargs, match", [
    ({"params": 0}, "params must be an integer >= 1"),
    ({"rows": 1.5}, "rows must be an integer >= 1"),
    ({"nodes": True}, "nodes must be an integer >= 1"),
    ({"rows_per_s": 0.0}, "rows_per_s must be a finite number > 0"),
    ({"alpha": -1e-6}, "alpha must be a finite number >= 0"),
    ({"beta": math.inf}, "beta must be a finite number >= 0"),
    ({"scaling": "medium"}, "scaling must be one of"),
])
def test_predict_step_rejects_bad_input(kwargs, match):
    args = {"params": 10, "rows": 1000, "nodes": 8, "rows_per_s": 1e6, "alpha": ALPHA,
            "beta": BETA} | kwargs
    with pytest.raises(ValueError, match=match):
        alphabeta.predict_step(**args)


def test_model_table_covers_the_grid():
    table = alphabeta.model_table(2_000_000, 5e7, ALPHA, BETA, scaling="weak")
    assert alphabeta.NODES == (8, 16, 32, 64, 128, 256, 512, 1024)
    assert [(r["params"], r["nodes"]) for r in table] == [
        (p, n) for p in alphabeta.PARAMS for n in alphabeta.NODES]
    assert table[0] == alphabeta.predict_step(10, 2_000_000, 8, 5e7, ALPHA, BETA, scaling="weak")
