"""Speed-up summary of the kernel benchmarks (benchmarks/test_bench_kernels.py).

Run (pyproject's testpaths only names tests/, so give the folder):

    pytest benchmarks --benchmark-only
    pytest benchmarks --benchmark-only --benchmark-save=NAME    # keep a baseline in .benchmarks/
    pytest benchmarks --benchmark-only --benchmark-compare      # compare with the latest saved one
    pytest benchmarks --benchmark-only --benchmark-json=out.json

After pytest-benchmark's own table, a short table gives, for each case (loss, format, shape) and
each kernel timed in this run, its min time, the GB/s of X it reads, and its speed-up over the
NumPy/SciPy reference timed in the same run ("x numpy"; "-" when that reference did not run).
"""

import pytest

BASELINE = "numpy"  # the benchmark id of the NumPy/SciPy reference
TIMINGS = pytest.StashKey[dict[tuple[str, str], tuple[float, float]]]()


@pytest.fixture(scope="session")
def timings(pytestconfig: pytest.Config) -> dict[tuple[str, str], tuple[float, float]]:
    """(case id, kernel id) -> (min seconds, GB/s of X), filled by the benchmarks, printed at the end."""
    return pytestconfig.stash.setdefault(TIMINGS, {})


@pytest.hookimpl(trylast=True)  # after pytest-benchmark's table
def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter, config: pytest.Config) -> None:
    timings = config.stash.get(TIMINGS, {})
    if not timings:
        return
    tr = terminalreporter
    tr.write_sep("-", "loss gradient: speed-up over the NumPy/SciPy reference, same run")
    width = max(len(case) for case, _ in timings)
    tr.write_line(f"{'case':<{width}} {'kernel':<8} {'min (ms)':>9} {'GB/s':>7} {'x numpy':>8}")
    for (case, name), (min_s, gb_per_s) in timings.items():
        base = timings.get((case, BASELINE))
        ratio = f"{base[0] / min_s:>8.2f}" if base else f"{'-':>8}"
        tr.write_line(f"{case:<{width}} {name:<8} {min_s * 1e3:>9.1f} {gb_per_s:>7.2f} {ratio}")
