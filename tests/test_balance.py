import numpy as np
import pytest

from fastdp import balance
from fastdp.comm import SerialComm


def test_slowdown_factor_parsing():
    env = {"FASTDP_SLOWDOWN": "1:2.0, 3:1.5"}
    assert balance.slowdown_factor(1, env) == 2.0 and balance.slowdown_factor(3, env) == 1.5
    assert balance.slowdown_factor(0, env) == 1.0 and balance.slowdown_factor(0, {}) == 1.0
    with pytest.raises(ValueError, match="FASTDP_SLOWDOWN must look like '1:2.0,3:1.5'"):
        balance.slowdown_factor(0, {"FASTDP_SLOWDOWN": "fast"})
    with pytest.raises(ValueError, match="the factor of rank 1 must be >= 1, got 0.5"):
        balance.slowdown_factor(1, {"FASTDP_SLOWDOWN": "1:0.5"})


def test_plan_moves_rows_to_the_fast_rank_only_when_it_pays():
    # rank 1 runs at half the speed: 2:1 rows make both take 2/3 of the old step
    proposal = balance.plan([500, 500], [2000.0, 1000.0], threshold=0.05)
    assert [len(p) for p in proposal] == [667, 333]
    assert proposal[0].start == 0 and proposal[1].stop == 1000
    assert balance.plan([667, 333], [2000.0, 1000.0], threshold=0.05) is None  # balanced already
    assert balance.plan([500, 500], [1000.0, 1040.0], threshold=0.05) is None  # 2% is below 5%
    assert balance.plan([0, 0], [1.0, 1.0], threshold=0.05) is None


def test_balancer_averages_rates():
    balancer = balance.LoadBalancer(SerialComm(), smoothing=0.5)
    assert balancer.propose(100, 100, 1.0) is None and balancer.rates == [100.0]
    balancer.propose(100, 50, 0.25)  # rows processed per second, not rows held
    assert balancer.rates == [150.0]
    with pytest.raises(ValueError, match="threshold must be in"):
        balance.LoadBalancer(SerialComm(), threshold=1.0)


def test_balancer_proposes_nothing_from_a_window_with_no_timed_rows():
    balancer = balance.LoadBalancer(SerialComm())
    assert balancer.propose(100, 0, 0.0) is None and balancer.rates is None  # no evidence kept
    assert balancer.propose(100, 100, 1.0) is None and balancer.rates == [100.0]


def test_serial_redistribute_is_the_identity():
    X = np.arange(6.0).reshape(3, 2)
    (same,) = balance.redistribute(SerialComm(), [X], [range(0, 3)], [range(0, 3)])
    assert np.array_equal(same, X)
