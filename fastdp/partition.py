"""Who owns which rows: pure functions, no MPI.

Contiguous partition: part p of n_parts gets a range of rows; sizes differ by at most one, the
first n_rows % n_parts parts get the extra row. More parts than rows gives empty parts, which still
take part in every collective.
"""


def _check(n_rows: int, n_parts: int) -> None:
    if int(n_rows) != n_rows or n_rows < 0:
        raise ValueError(f"n_rows must be a non-negative integer, got {n_rows!r}")
    if int(n_parts) != n_parts or n_parts < 1:
        raise ValueError(f"n_parts must be a positive integer, got {n_parts!r}")


def contiguous_range(n_rows: int, n_parts: int, part: int) -> range:
    """Rows of `part` (0 <= part < n_parts) in the contiguous partition of n_rows rows."""
    _check(n_rows, n_parts)
    if not 0 <= part < n_parts:
        raise ValueError(f"part must be in [0, {n_parts}), got {part}")
    base, extra = divmod(n_rows, n_parts)
    start = part * base + min(part, extra)
    return range(start, start + base + (part < extra))


def contiguous(n_rows: int, n_parts: int) -> list[range]:
    """Every part's rows in the contiguous partition: n_parts ranges covering 0..n_rows once."""
    _check(n_rows, n_parts)
    return [contiguous_range(n_rows, n_parts, p) for p in range(n_parts)]
