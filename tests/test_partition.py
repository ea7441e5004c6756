import pytest

from fastdp import partition


@pytest.mark.parametrize("n_rows", [0, 1, 2, 7, 10, 100003])
@pytest.mark.parametrize("n_parts", [1, 2, 3, 4, 16])
def test_contiguous_covers_every_row_once_with_sizes_within_one(n_rows, n_parts):
    parts = partition.contiguous(n_rows, n_parts)
    assert len(parts) == n_parts
    assert [r for part in parts for r in part] == list(range(n_rows))
    sizes = [len(p) for p in parts]
    assert max(sizes) - min(sizes) <= 1
    assert sizes == sorted(sizes, reverse=True)  # the remainder goes to the first parts
    assert parts == [partition.contiguous_range(n_rows, n_parts, p) for p in range(n_parts)]


def test_more_parts_than_rows_gives_empty_parts():
    assert [len(p) for p in partition.contiguous(2, 4)] == [1, 1, 0, 0]


@pytest.mark.parametrize("args,message", [
    ((-1, 2), "n_rows must be a non-negative integer"),
    ((2.5, 2), "n_rows must be a non-negative integer"),
    ((5, 0), "n_parts must be a positive integer"),
])
def test_bad_arguments(args, message):
    with pytest.raises(ValueError, match=message):
        partition.contiguous(*args)


def test_part_out_of_range():
    with pytest.raises(ValueError, match=r"part must be in \[0, 3\), got 3"):
        partition.contiguous_range(10, 3, 3)


# --- strategies (hypothesis: every row exactly once, determinism, the bounds) ---------------------

import numpy as np  # noqa: E402
from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

costs_lists = st.lists(st.floats(0, 1e6, allow_nan=False, allow_infinity=False), max_size=400)
parts_counts = st.integers(1, 17)


def assert_exact_cover(parts, n_rows, n_parts):
    assert len(parts) == n_parts and all(isinstance(p, range) for p in parts)
    assert sorted(r for p in parts for r in p) == list(range(n_rows))


@given(st.integers(0, 500), parts_counts, st.sampled_from(["contiguous", "strided"]))
def test_plain_strategies_cover_every_row_once_with_sizes_within_one(n_rows, n_parts, strategy):
    parts = partition.partition(n_rows, n_parts, strategy)
    assert_exact_cover(parts, n_rows, n_parts)
    sizes = [len(p) for p in parts]
    assert max(sizes) - min(sizes) <= 1
    assert parts == partition.partition(n_rows, n_parts, strategy)


@settings(max_examples=300)
@given(costs_lists, parts_counts)
def test_balanced_parts_are_contiguous_and_within_one_row_of_their_share(costs, n_parts):
    costs = np.array(costs)
    parts = partition.balanced(costs, n_parts)
    assert_exact_cover(parts, len(costs), n_parts)
    assert [p.start for p in parts[1:]] == [p.stop for p in parts[:-1]]  # consecutive ranges
    assert parts == partition.balanced(costs.copy(), n_parts)  # deterministic
    if costs.sum() > 0:
        share = costs.sum() / n_parts
        worst = costs.max()
        for p in parts:
            assert abs(costs[p.start:p.stop].sum() - share) <= worst * (1 + 1e-9) + 1e-6


@given(st.lists(st.floats(0.01, 100.0), min_size=1, max_size=12), st.integers(0, 5000))
def test_weighted_sizes_follow_capacities_within_one_row(capacities, n_rows):
    parts = partition.weighted(n_rows, capacities)
    assert_exact_cover(parts, n_rows, len(capacities))
    for p, share in zip(parts, n_rows * np.array(capacities) / sum(capacities)):
        assert abs(len(p) - share) <= 1 + 1e-9


def test_balanced_meets_the_issue_bound_on_skewed_document_lengths():
    """max/mean cost <= 1.05 when no single row exceeds that slack: token counts of 100,000
    documents, log-normally skewed, on 2..16 parts."""
    costs = np.random.default_rng(0).lognormal(3.0, 1.0, 100_000).round() + 1
    for n_parts in (2, 3, 4, 7, 16):
        loads = [costs[p.start:p.stop].sum() for p in partition.balanced(costs, n_parts)]
        assert costs.max() <= 0.05 * np.mean(loads)
        assert max(loads) / np.mean(loads) <= 1.05
        plain = [costs[p.start:p.stop].sum() for p in partition.contiguous(len(costs), n_parts)]
        assert max(loads) <= max(plain)


def test_balanced_with_capacities_gives_cost_proportional_to_capacity():
    costs = np.arange(1, 10_001, dtype=float)  # later rows cost more
    parts = partition.partition(10_000, 2, "balanced", costs=costs, capacities=[1.0, 3.0])
    loads = [costs[p.start:p.stop].sum() for p in parts]
    assert loads[1] / loads[0] == pytest.approx(3.0, rel=1e-3)


def test_zero_costs_share_the_rows():
    assert [len(p) for p in partition.balanced(np.zeros(10), 3)] == [3, 4, 3]


@pytest.mark.parametrize("call,message", [
    (lambda: partition.balanced([1.0, -2.0], 2), r"costs must be finite and >= 0, got -2.0 at row 1"),
    (lambda: partition.balanced([1.0, float("nan")], 2), "costs must be finite and >= 0, got nan at row 1"),
    (lambda: partition.balanced(np.ones((2, 2)), 2), "costs must be 1-D"),
    (lambda: partition.weighted(10, [1.0, 0.0]), "capacities must be finite and > 0, got 0.0 for part 1"),
    (lambda: partition.weighted(10, [1.0, float("inf")]), "capacities must be finite and > 0"),
    (lambda: partition.balanced([1.0] * 4, 2, capacities=[1.0]), r"capacities must have one value per part \(2\)"),
    (lambda: partition.partition(4, 2, "random"), "strategy must be one of"),
    (lambda: partition.partition(4, 2, "balanced"), "strategy 'balanced' needs costs"),
    (lambda: partition.partition(4, 2, "weighted"), "strategy 'weighted' needs capacities"),
    (lambda: partition.partition(4, 2, "balanced", costs=[1.0] * 3), r"costs must have one value per row \(4\)"),
    (lambda: partition.weighted(-1, [1.0]), "n_rows must be a non-negative integer"),
])
def test_bad_strategy_input(call, message):
    with pytest.raises(ValueError, match=message):
        call()
