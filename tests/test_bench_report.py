"""fastdp.bench.report: the machine record every suite writes, and its one-line description."""

import json

from fastdp.bench import report

CPUINFO = """processor\t: 0
vendor_id\t: GenuineIntel
cpu family\t: 6
model\t\t: 167
model name\t: Intel(R) Xeon(R) Processor
flags\t\t: fpu avx512f

processor\t: 1
vendor_id\t: AuthenticAMD
model name\t: not the first processor
"""


def write_cache(root, index, level, kind, size):
    entry = root / f"index{index}"
    entry.mkdir()
    for name, value in (("level", level), ("type", kind), ("size", size)):
        if value is not None:
            (entry / name).write_text(f"{value}\n")


def test_cpu_info_reads_the_first_processor_only(tmp_path):
    path = tmp_path / "cpuinfo"
    path.write_text(CPUINFO)
    info = report.cpu_info(str(path))
    assert info["vendor_id"] == "GenuineIntel" and info["model"] == "167"
    assert info["model name"] == "Intel(R) Xeon(R) Processor" and "processor" in info
    assert report.cpu_info(str(tmp_path / "missing")) == {}


def test_cpu_caches_reads_the_data_and_unified_caches_by_level(tmp_path):
    write_cache(tmp_path, 0, 1, "Data", "48K")
    write_cache(tmp_path, 1, 1, "Instruction", "64K")
    write_cache(tmp_path, 2, 2, "Unified", "2048K")
    write_cache(tmp_path, 3, 3, "Unified", "480M")
    write_cache(tmp_path, 4, 4, "Unified", None)  # sysfs without a size: left out
    (tmp_path / "uevent").write_text("")
    assert report.cpu_caches(str(tmp_path)) == {"L1": 48 << 10, "L2": 2 << 20, "L3": 480 << 20}
    assert report.cpu_caches(str(tmp_path / "missing")) == {}


def test_describe_names_the_cpu_its_identity_cores_and_caches():
    record = {"cpu": "AMD EPYC Processor", "cpu_id": "AuthenticAMD family 25 model 17",
              "cores": 2, "caches": {"L2": 1 << 20, "L1": 32 << 10, "L3": 32 << 20}}
    assert report.describe(record) == (
        "machine: AMD EPYC Processor (AuthenticAMD family 25 model 17), 2 cores; "
        "cpu0's caches: L1 32 KiB, L2 1 MiB, L3 32 MiB")
    bare = {"cpu": "x86_64", "cpu_id": "", "cores": 1, "caches": {}}
    assert report.describe(bare) == "machine: x86_64, 1 cores"


def test_the_json_record_carries_the_machine(tmp_path):
    path = report.write_json(str(tmp_path), "suite", {"value": 1})
    record = json.loads(open(path).read())
    machine = record["machine"]
    assert record["suite"] == "suite" and record["value"] == 1
    assert {"cpu", "cpu_id", "cores", "caches", "python", "numpy", "numba", "date"} <= set(machine)
    assert machine["cores"] >= 1 and all(size > 0 for size in machine["caches"].values())
    assert report.describe(machine).startswith(f"machine: {machine['cpu']}")


def test_summary_is_the_first_paragraph_on_one_line():
    assert report.summary("`x`: one sentence\nover two lines.\n\n    usage\n") == (
        "`x`: one sentence over two lines.")
