"""fastdp.bench.timing: the best-time helpers time what they are given, in the order promised."""

import pytest

from fastdp.bench import timing


def test_interleaved_best_alternates_contenders_and_keeps_each_minimum(monkeypatch):
    clock = [0.0]  # a fake perf_counter: each contender's call advances it by its next duration
    monkeypatch.setattr(timing.time, "perf_counter", lambda: clock[0])
    calls = []
    durations = {"a": iter([4.0, 1.0, 3.0]), "b": iter([2.0, 5.0, 6.0])}

    def contender(name):
        def run():
            calls.append(name)
            clock[0] += next(durations[name])
        return run

    best = timing.interleaved_best({"a": contender("a"), "b": contender("b")}, rounds=3,
                                   settle_s=0.0)
    assert calls == ["a", "b"] * 3
    assert best == {"a": 1.0, "b": 2.0}


def test_interleaved_times_keeps_every_round_in_order(monkeypatch):
    clock = [0.0]
    monkeypatch.setattr(timing.time, "perf_counter", lambda: clock[0])
    durations = {"a": iter([4.0, 1.0]), "b": iter([2.0, 5.0])}

    def contender(name):
        def run():
            clock[0] += next(durations[name])
        return run

    times = timing.interleaved_times({"a": contender("a"), "b": contender("b")}, rounds=2,
                                     settle_s=0.0)
    assert times == {"a": [4.0, 1.0], "b": [2.0, 5.0]}


def test_interleaved_best_idles_before_every_timed_call(monkeypatch):
    sleeps = []
    monkeypatch.setattr(timing.time, "sleep", sleeps.append)
    timing.interleaved_best({"a": lambda: None, "b": lambda: None}, rounds=2, settle_s=0.25)
    assert sleeps == [0.25] * 4


@pytest.mark.parametrize("rounds, settle_s", [(0, 0.1), (1, -1.0)])
def test_interleaved_best_rejects_bad_arguments(rounds, settle_s):
    with pytest.raises(ValueError, match="rounds must be >= 1 and settle_s >= 0"):
        timing.interleaved_best({"a": lambda: None}, rounds, settle_s)
