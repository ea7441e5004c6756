"""Benchmarks behind `fastdp bench <suite>`: each suite measures ratios in one run on this machine,
prints a table, and writes <suite>.json and PNG plots into --out (default ./bench-results).

    fastdp bench kernels     kernel throughput: GB/s against the measured read bandwidth, x NumPy
    fastdp bench comm        Allreduce time against message size; fitted latency and bandwidth
    fastdp bench scaling     strong / weak scaling over ranks (launches mpiexec); alpha-beta model
    fastdp bench peers       NumPy, SciPy, PyTorch, scikit-learn doing the same work

Each suite is a module here with `main(argv) -> int`; `fastdp.bench.SUITES` names them.
"""

SUITES: tuple[str, ...] = ("kernels", "comm", "scaling", "peers")
