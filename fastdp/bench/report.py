"""What every benchmark suite writes: a JSON record with the machine and date, and PNG plots."""

from __future__ import annotations

import datetime
import json
import os
import platform
from typing import Any

from ..threads import available_cores

DEFAULT_OUT = "bench-results"


CPUINFO = "/proc/cpuinfo"
CACHES = "/sys/devices/system/cpu/cpu0/cache"


def machine() -> dict[str, Any]:
    """The machine a result was measured on: CPU model (with its vendor, family and model
    numbers, which tell two hosts apart where a virtual machine's model name does not), cores
    available, the first core's data caches (cpu_caches), Python and library versions, and the
    date."""
    info = cpu_info()
    import numba
    import numpy

    return {"cpu": info.get("model name", platform.processor() or platform.machine()),
            "cpu_id": " ".join(f"{label}{info[key]}" for key, label in
                               (("vendor_id", ""), ("cpu family", "family "), ("model", "model "))
                               if key in info),
            "cores": available_cores(), "caches": cpu_caches(), "python": platform.python_version(),
            "numpy": numpy.__version__, "numba": numba.__version__,
            "date": datetime.datetime.now().isoformat(timespec="seconds")}


def cpu_info(path: str = CPUINFO) -> dict[str, str]:
    """The first processor's fields of /proc/cpuinfo ({} where it cannot be read)."""
    info: dict[str, str] = {}
    try:
        with open(path) as f:
            for line in f:
                if not line.strip():
                    break  # the end of the first processor's block
                key, _, value = line.partition(":")
                info.setdefault(key.strip(), value.strip())
    except OSError:
        pass
    return info


def cpu_caches(root: str = CACHES) -> dict[str, int]:
    """The data and unified caches of the first core from sysfs, by level ("L1", "L2", "L3"),
    in bytes ({} where sysfs does not say): what the kernels' block and tile sizes were tuned
    against (fastdp/kernels/tiles.py)."""
    units = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}
    try:
        entries = sorted(os.listdir(root))
    except OSError:
        return {}
    caches = {}
    for entry in entries:
        try:
            kind, level, size = (_read(os.path.join(root, entry, name))
                                 for name in ("type", "level", "size"))
        except OSError:
            continue  # not a cache index (uevent), or one sysfs leaves incomplete
        digits, scale = (size[:-1], units[size[-1]]) if size[-1:] in units else (size, 1)
        if kind != "Instruction" and level.isdigit() and digits.isdigit():
            caches[f"L{level}"] = int(digits) * scale
    return caches


def _read(path: str) -> str:
    with open(path) as f:
        return f.read().strip()


def describe(record: dict[str, Any] | None = None) -> str:
    """One line for a report's header: the CPU, its identity, cores and caches of `record`
    (default: machine())."""
    record = machine() if record is None else record
    caches = ", ".join(f"{name} {size / 2**20:g} MiB" if size >= 1 << 20 else
                       f"{name} {size >> 10} KiB" for name, size in sorted(record["caches"].items()))
    identity = f" ({record['cpu_id']})" if record["cpu_id"] else ""
    return (f"machine: {record['cpu']}{identity}, {record['cores']} cores"
            + (f"; cpu0's caches: {caches}" if caches else ""))


def write_json(out: str, suite: str, result: dict[str, Any]) -> str:
    """Write {"suite", "machine", **result} to <out>/<suite>.json; returns the path."""
    os.makedirs(out, exist_ok=True)
    path = os.path.join(out, f"{suite}.json")
    with open(path, "w") as f:
        json.dump({"suite": suite, "machine": machine(), **result}, f, indent=2)
        f.write("\n")
    return path


def summary(doc: str) -> str:
    """The first paragraph of a suite's module docstring as one line: its --help description."""
    return " ".join(doc.split("\n\n")[0].split())


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
