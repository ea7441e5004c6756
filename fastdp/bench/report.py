"""What every benchmark suite writes: a JSON record with the machine and date, and PNG plots."""

from __future__ import annotations

import datetime
import json
import os
import platform
from typing import Any

from ..threads import available_cores

DEFAULT_OUT = "bench-results"


def machine() -> dict[str, Any]:
    """The machine a result was measured on: CPU model, cores available, Python and library
    versions, and the date."""
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    import numba
    import numpy

    return {"cpu": cpu, "cores": available_cores(), "python": platform.python_version(),
            "numpy": numpy.__version__, "numba": numba.__version__,
            "date": datetime.datetime.now().isoformat(timespec="seconds")}


def write_json(out: str, suite: str, result: dict[str, Any]) -> str:
    """Write {"suite", "machine", **result} to <out>/<suite>.json; returns the path."""
    os.makedirs(out, exist_ok=True)
    path = os.path.join(out, f"{suite}.json")
    with open(path, "w") as f:
        json.dump({"suite": suite, "machine": machine(), **result}, f, indent=2)
        f.write("\n")
    return path


def pyplot() -> Any:
    """matplotlib.pyplot on the Agg backend (files only, no display); an ImportError says how to
    install it."""
    try:
        import matplotlib
    except ImportError:
        raise ImportError('plots need matplotlib: pip install "fastdp[bench]"') from None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_figure(fig: Any, out: str, name: str) -> str:
    """Save a matplotlib figure as <out>/<name>.png and close it; returns the path."""
    os.makedirs(out, exist_ok=True)
    path = os.path.join(out, f"{name}.png")
    fig.savefig(path, dpi=120, bbox_inches="tight")
    pyplot().close(fig)
    return path
