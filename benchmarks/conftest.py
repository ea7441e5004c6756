"""Speed-up summary of the benchmarks (kernels: test_kernel_throughput.py; SGD on text:
test_bench_sgd_text.py; training loop against the bare kernel: test_train_epoch.py; Allreduce:
test_allreduce.py).

Run (pyproject's testpaths only names tests/, so give the folder):

    pytest benchmarks --benchmark-only
    pytest benchmarks --benchmark-only --benchmark-save=NAME    # keep a baseline in .benchmarks/
    pytest benchmarks --benchmark-only --benchmark-compare      # compare with the latest saved one
    pytest benchmarks --benchmark-only --benchmark-json=out.json

After pytest-benchmark's own table, a short table gives, for each case and each contender timed
in this run, its min time, the GB/s of X it reads (kernels), and its speed-up over the case's
reference timed in the same run ("x ref": over "numpy", the NumPy/SciPy reference, for kernels;
over "sklearn" for SGD epochs; over "kernel", the bare kernel, for training steps; over "bare",
mpi4py's own Allreduce, for communication; "-" when the reference did not run).
"""

import pytest

BASELINES = ("numpy", "sklearn", "kernel", "bare")  # ids of the references a case's ratios are taken against
TIMINGS = pytest.StashKey[dict[tuple[str, str], tuple[float, float | None]]]()


@pytest.fixture(scope="session")
def timings(pytestconfig: pytest.Config) -> dict[tuple[str, str], tuple[float, float | None]]:
    """(case id, contender id) -> (min seconds, GB/s of X or None), filled by the benchmarks,
    printed at the end."""
    return pytestconfig.stash.setdefault(TIMINGS, {})


@pytest.hookimpl(trylast=True)  # after pytest-benchmark's table
def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter, config: pytest.Config) -> None:
    timings = config.stash.get(TIMINGS, {})
    if not timings:
        return
    tr = terminalreporter
    tr.write_sep("-", "speed-up over the case's reference, same run")
    width = max(len(case) for case, _ in timings)
    tr.write_line(f"{'case':<{width}} {'kernel':<8} {'min (ms)':>9} {'GB/s':>7} {'x ref':>8}")
    for (case, name), (min_s, gb_per_s) in timings.items():
        base = next((timings[case, b] for b in BASELINES if (case, b) in timings), None)
        ratio = f"{base[0] / min_s:>8.2f}" if base else f"{'-':>8}"
        gb = f"{gb_per_s:>7.2f}" if gb_per_s is not None else f"{'-':>7}"
        tr.write_line(f"{case:<{width}} {name:<8} {min_s * 1e3:>9.3f} {gb} {ratio}")
