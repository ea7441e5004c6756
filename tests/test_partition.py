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
