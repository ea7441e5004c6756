"""`mpiexec -n 2 fastdp train` gives the serial model, each rank reading only its rows; bad input
on one rank's rows ends the job with one error line and a non-zero status, never a hang."""

import os
import sys

import numpy as np
import pytest

import fastdp
from fastdp.cli import main
from fastdp.demo import find_mpiexec
from fastdp.model_io import read_metadata

pytestmark = pytest.mark.mpi

FASTDP = os.path.join(os.path.dirname(sys.executable), "fastdp")
LBFGS = ["--model", "logistic", "--solver", "lbfgs", "--tol", "1e-10", "--max-iter", "10000"]


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    directory = tmp_path_factory.mktemp("data")
    rng = np.random.default_rng(1)
    X = rng.normal(size=(2001, 8))  # an odd count of rows: ranks hold 1001 and 1000
    y = X @ rng.normal(size=8) + 0.5 + rng.logistic(size=2001) > 0
    np.save(directory / "logistic.npy", np.column_stack([X, y]))
    np.save(directory / "tiny.npy", np.column_stack([X, y])[:2])  # fewer rows than ranks
    import pyarrow as pa
    import pyarrow.parquet as pq

    columns = {f"f{j}": X[:, j] for j in range(8)} | {"label": y.astype(np.int64)}
    pq.write_table(pa.table(columns), directory / "logistic.parquet", row_group_size=300)
    weights = rng.normal(size=60)  # word i pushes a mail toward spam by weights[i]
    with open(directory / "mail.txt", "w") as f:
        for _ in range(301):  # an odd count: ranks hold 151 and 150 lines
            words = rng.choice(60, 8)
            label = "spam" if weights[words].sum() + rng.logistic() > 0 else "ham"
            f.write(f"{label}\t{' '.join(f'w{i}' for i in words)}\n")
    lines = [",".join(f"{v:.17g}" for v in row) for row in rng.normal(size=(40, 3))]
    lines[34] = ",".join(["1.5", "oops", "2.5"])  # line 35: in rank 1's rows 20..39
    (directory / "bad.csv").write_text("\n".join(lines) + "\n")
    mails = (directory / "mail.txt").read_text().splitlines()
    mails[200] = "no label on this line"  # line 201: in rank 1's lines 152..301
    (directory / "nolabel.txt").write_text("\n".join(mails) + "\n")
    return directory


def mpi_train(command, n: int, argv: list[str], timeout: float = 120):
    mpiexec = find_mpiexec()
    if mpiexec is None:
        pytest.fail("mpiexec not found: install the test extras (pip install -e '.[test]')")
    return command(mpiexec, "-n", str(n), FASTDP, "train", *argv, timeout=timeout)


@pytest.mark.parametrize("name,options", [("logistic.npy", []), ("mail.txt", ["--n-features", "4096"])])
def test_two_ranks_train_the_serial_model(tmp_path, data, command, capsys, name, options):
    serial, parallel = str(tmp_path / "serial.fdp"), str(tmp_path / "parallel.fdp")
    argv = ["--data", str(data / name)] + LBFGS + options
    assert main(["train"] + argv + ["--output", serial]) == 0
    result = mpi_train(command, 2, argv + ["--output", parallel])
    assert result.returncode == 0, result.stderr
    assert result.stdout.count("fastdp train:") == 1 and "2 rank(s)" in result.stdout
    one, two = fastdp.load(serial), fastdp.load(parallel)
    if name.endswith(".txt"):
        one, two = one.named_steps["model"], two.named_steps["model"]
    np.testing.assert_allclose(two.coef_, one.coef_, rtol=0, atol=1e-8)
    np.testing.assert_allclose(two.intercept_, one.intercept_, rtol=0, atol=1e-8)
    np.testing.assert_array_equal(two.classes_, one.classes_)
    assert fastdp.model_io.read_metadata(parallel)["config"]["ranks"] == 2


@pytest.mark.parametrize("name,model,message", [
    ("bad.csv", "linear", "fastdp: error: rank 1: {path}, line 35, column 2: 'oops' is not a number\n"),
    ("missing.npy", "linear", "fastdp: error: {path}: no such file\n"),
    ("nolabel.txt", "logistic", "fastdp: error: rank 1: {path}, line 201: no TAB after a label; "
                                "expected 'label<TAB>text', got 'no label on this line'\n"),
])
def test_bad_input_ends_the_job_with_one_error_line(tmp_path, data, command, name, model, message):
    path = str(data / name)
    result = mpi_train(command, 2, ["--data", path, "--model", model, "--output",
                                    str(tmp_path / "m.fdp")], timeout=60)
    assert result.returncode != 0 and result.stdout == ""
    assert result.stderr == message.format(path=path)
    assert not os.path.exists(tmp_path / "m.fdp")


@pytest.mark.parametrize("n", [2, 3])
@pytest.mark.parametrize("name,options,output", [
    ("logistic.npy", ["--label-column", "-1"], "p.npy"),
    ("mail.txt", ["--labeled"], "p.txt"),
    ("logistic.parquet", ["--label-column", "label", "--chunk-rows", "7"], "p.parquet"),
    ("mail.txt", ["--labeled", "--chunk-rows", "5"], "p.csv"),
    ("tiny.npy", ["--labeled"], "p.npy"),
])
def test_predict_on_n_ranks_writes_the_serial_predictions(tmp_path, data, command, capsys, n,
                                                           name, options, output):
    """Streamed in chunks round-robin over the ranks, written in order by rank 0: the bytes of
    the serial output, which holds the model's predictions."""
    model = str(tmp_path / "m.fdp")
    extra = ["--n-features", "4096"] if name.endswith(".txt") else []
    training = "logistic.npy" if name.endswith((".npy", ".parquet")) else name
    assert main(["train", "--data", str(data / training), "--model", "logistic", "--output",
                 model] + extra) == 0
    serial, parallel = str(tmp_path / f"serial-{output}"), str(tmp_path / output)
    assert main(["predict", "--model", model, "--input", str(data / name), "--output", serial]
                + options) == 0
    serial_line = capsys.readouterr().out.splitlines()[-1]
    result = command(find_mpiexec(), "-n", str(n), FASTDP, "predict", "--model", model, "--input",
                     str(data / name), "--output", parallel, *options, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [serial_line.replace(serial, parallel)]
    with open(serial, "rb") as a, open(parallel, "rb") as b:
        assert a.read() == b.read()  # the same bytes: same predictions, same order
    shard = fastdp.data.read_rows(data / name, **({"label_column": "label"}
                                                  if name.endswith(".parquet") else {}))
    expected = fastdp.load(model).predict(shard.X)
    if output.endswith(".parquet"):
        import pyarrow.parquet as pq

        assert pq.read_table(parallel).column("prediction").to_pylist() == expected.tolist()
    elif output.endswith(".npy"):
        assert np.load(parallel).tolist() == expected.tolist()
    else:
        assert open(parallel).read().splitlines() == [str(v) for v in expected]


def test_ranks_seeing_different_row_counts_is_an_error(tmp_path, data, command, monkeypatch):
    """A file that changes between the ranks' reads: rank 1 reads a longer copy."""
    short, long_ = tmp_path / "short.npy", tmp_path / "long.npy"
    table = np.load(data / "logistic.npy")
    np.save(short, table[:1000])
    np.save(long_, table[:1500])
    script = tmp_path / "swap.py"
    script.write_text(
        "import sys, fastdp.data as io\n"
        "from fastdp import world\n"
        "from fastdp.cli import main\n"
        "real = io.read_rows\n"
        f"io.read_rows = lambda path, **kw: real({str(long_)!r} if kw['rank'] == 1 else path, **kw)\n"
        f"sys.exit(main(['train', '--data', {str(short)!r}, '--model', 'logistic', "
        f"'--output', {str(tmp_path / 'm.fdp')!r}]))\n")
    result = command(find_mpiexec(), "-n", "2", sys.executable, str(script), timeout=60)
    assert result.returncode == 2
    assert result.stderr == (f"fastdp: error: {short}: the ranks see different row counts (rank 0: "
                             "1000, rank 1: 1500); was the file changed while it was read?\n")
    assert not (tmp_path / "m.fdp").exists()


def test_rebalance_moves_rows_from_a_slowed_rank_and_keeps_the_model(tmp_path, data, command):
    serial, parallel = str(tmp_path / "serial.fdp"), str(tmp_path / "parallel.fdp")
    argv = ["--data", str(data / "logistic.npy"), "--model", "logistic", "--solver", "gd",
            "--max-iter", "200", "--tol", "0"]
    assert main(["train"] + argv + ["--output", serial]) == 0
    result = command("env", "FASTDP_SLOWDOWN=1:3.0", find_mpiexec(), "-n", "2", FASTDP, "train",
                     *argv, "--output", parallel, "--rebalance", "--verbose", timeout=120)
    assert result.returncode == 0, result.stderr
    assert "partition: contiguous, rebalanced" in result.stdout, result.stdout
    config = read_metadata(parallel)["config"]
    assert config["partition"].startswith("contiguous, rebalanced")
    assert config["training_report"]["ranks"][0]["rows"] > config["training_report"]["ranks"][1]["rows"]
    one, two = fastdp.load(serial), fastdp.load(parallel)
    np.testing.assert_allclose(two.coef_, one.coef_, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(two.intercept_, one.intercept_, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("case", ["bad row mid-stream", "truncated parquet", "unwritable output"])
def test_predict_failures_end_every_rank_and_leave_no_output(tmp_path, data, command, case):
    model, output = str(tmp_path / "m.fdp"), str(tmp_path / "p.csv")
    assert main(["train", "--data", str(data / "logistic.npy"), "--model", "logistic", "--output",
                 model]) == 0
    table = np.load(data / "logistic.npy")
    if case == "bad row mid-stream":  # row 30 is in chunk 3 of 10 rows: rank 1's second chunk
        lines = [",".join(f"{v:.17g}" for v in row) for row in table[:60]]
        lines[30] = lines[30].replace(",", ",oops", 1)
        source = tmp_path / "in.csv"
        source.write_text("\n".join(lines) + "\n")
        message = f"rank 1: {source}, line 31, column 2: 'oops"
    elif case == "truncated parquet":
        content = (data / "logistic.parquet").read_bytes()
        source = tmp_path / "in.parquet"
        source.write_bytes(content[:len(content) // 2])
        message = f"{source}: not a readable Parquet file"
    else:
        source, output = data / "logistic.npy", str(tmp_path / "nowhere" / "p.csv")
        message = f"cannot write {output}"
    result = command(find_mpiexec(), "-n", "2", FASTDP, "predict", "--model", model, "--input",
                     str(source), "--output", output, "--chunk-rows", "10", "--labeled",
                     timeout=60)
    assert result.returncode == 2, result.stderr
    assert result.stderr.count("fastdp: error:") == 1 and message in result.stderr, result.stderr
    assert sorted(os.listdir(tmp_path)) == sorted(["m.fdp"] + (["in.csv"] if "mid" in case else [])
                                                  + (["in.parquet"] if "parquet" in case else []))
