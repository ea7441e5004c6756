import io

import numpy as np
from sklearn.datasets import load_breast_cancer
from sklearn.preprocessing import StandardScaler

from fastdp.estimators import LogisticRegression
from fastdp.progress import Progress


def test_bar_draws_throttled_and_ends_with_the_last_state():
    out = io.StringIO()
    bar = Progress(10, stream=out, min_interval=3600)
    for step in range(10):
        bar.update(step, 1.0 / (step + 1))
    bar.close()
    text = out.getvalue()
    assert text.count("\r") == 2  # the first update, then the last one at close
    assert text.endswith("] 10/10  objective 0.1  0.0 s\n")
    assert "[" + "#" * 30 + "]" in text


def test_disabled_bar_writes_nothing():
    out = io.StringIO()
    bar = Progress(5, enabled=False, stream=out)
    bar.update(0, 1.0)
    bar.close()
    assert out.getvalue() == ""


def test_verbose_fit_shows_progress_on_stderr(capsys):
    X, y = load_breast_cancer(return_X_y=True)
    LogisticRegression(verbose=True, solver="gd", max_iter=20, tol=0).fit(
        StandardScaler().fit_transform(X), y)
    err = capsys.readouterr().err
    assert "] 20/20  objective" in err and err.endswith("\n")
    assert np.isfinite(float(err.rsplit("objective", 1)[1].split()[0]))
