"""`fastdp demo`: serial vs data-parallel on real mpiexec runs, and its verdict."""

import sys

import numpy as np
import pytest

from fastdp import demo, kernels


@pytest.mark.mpi
def test_demo_launches_mpiexec_and_agrees(command):
    result = command(sys.executable, "-m", "fastdp", "demo", "--rows", "30000", "--features", "4")
    assert result.returncode == 0, result.stdout + result.stderr
    rows = {line.split()[0]: line.split() for line in result.stdout.splitlines()
            if line.startswith(("serial ", "data-parallel "))}
    assert rows["serial"][1] == "1" and rows["data-parallel"][1] == "2"
    assert rows["serial"][4] == rows["data-parallel"][4]  # same iteration count
    ran = kernels.pick_backend("squared", np.empty((0, 4)))  # what the default "auto" runs
    assert rows["serial"][3] == rows["data-parallel"][3] == ran
    assert float(rows["data-parallel"][6]) < 1e-12  # max |theta - theta_serial|
    assert float(rows["serial"][7]) < 1e-6  # max |theta - theta_lstsq|
    assert "OK: data-parallel theta equals serial theta" in result.stdout


@pytest.mark.mpi
def test_demo_under_mpiexec_uses_the_ranks_it_has(mpirun):
    result = mpirun(3, "import sys; from fastdp.cli import main; "
                       "sys.exit(main(['demo', '--rows', '20000', '--backend', 'cython']))")
    assert result.returncode == 0, result.stdout + result.stderr
    line = next(l for l in result.stdout.splitlines() if l.startswith("data-parallel"))
    assert line.split()[1:4] == ["3", "1", "cython"]


def test_report_fails_when_parallel_differs(capsys):
    cfg = demo.DemoConfig(rows=1000, features=2)
    X_theta = [2.0, 0.0, 3.0]
    serial = {"theta": X_theta, "n_iter": 5, "loss": 0.1, "ranks": 1, "threads": {"numba": 2},
              "seconds": 0.1, "backend": "numba"}
    parallel = serial | {"theta": list(np.array(X_theta) * (1 + 1e-8)), "ranks": 2}
    assert demo._report(cfg, serial, parallel) == 1
    assert "FAIL: data-parallel theta differs" in capsys.readouterr().out
    assert demo._report(cfg, serial, serial | {"ranks": 2}) == 0


def test_config_round_trips_through_the_command_line():
    from fastdp.cli import _parser

    cfg = demo.DemoConfig(rows=123, features=4, ranks=3, backend="cython", learning_rate=0.25)
    args = vars(_parser().parse_args(["demo", *cfg.argv()]))
    args.pop("command"), args.pop("report")
    assert demo.DemoConfig(**args) == cfg
