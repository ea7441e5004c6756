import numba
import numpy as np
import pytest

from fastdp import kernels

COMPILED = ["numba", "cython"]
TOL = {np.float64: 1e-10, np.float32: 1e-4}


def make(m: int, n: int, dtype, seed: int = 0):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((m, n)).astype(dtype)
    y = (X @ rng.standard_normal(n) + rng.standard_normal(m)).astype(dtype)
    return X, y, rng.standard_normal(n), 0.7


def close(a, b, rtol):
    a, b = np.atleast_1d(a), np.atleast_1d(b)
    scale = max(1.0, np.abs(b).max())
    np.testing.assert_allclose(a, b, rtol=0, atol=rtol * scale)


@pytest.mark.parametrize("backend", COMPILED)
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("m", [0, 1, 7, 100003])
@pytest.mark.parametrize("n", [1, 3, 64])
def test_matches_numpy_reference(backend, dtype, m, n):
    X, y, coef, b = make(m, n, dtype)
    ref = kernels.loss_grad("squared", X, y, coef, b, backend="numpy")
    got = kernels.loss_grad("squared", X, y, coef, b, backend=backend)
    for g, r in zip(got, ref):
        close(g, r, TOL[dtype])
    if m == 0:
        assert got[0] == 0 and got[2] == 0 and not got[1].any()


def numpy_truth(X, y, coef, b):
    """Squared loss sum and gradient written out by hand, independent of fastdp."""
    r = X.astype(np.float64) @ coef + b - y
    return 0.5 * r @ r, X.T.astype(np.float64) @ r, r.sum()


@pytest.mark.parametrize("m,n", [(7, 3), (1000, 64)])
def test_reference_matches_hand_formula(m, n):
    X, y, coef, b = make(m, n, np.float64)
    for g, r in zip(kernels.loss_grad("squared", X, y, coef, b, backend="numpy"),
                    numpy_truth(X, y, coef, b)):
        close(g, r, 1e-12)


@pytest.mark.parametrize("backend", COMPILED + ["numpy"])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("m", [0, 1, 7, 100003])
@pytest.mark.parametrize("n", [1, 3, 64])
def test_gradient_matches_central_differences(backend, dtype, m, n):
    X, y, coef, b = make(m, n, dtype, seed=1)
    _, grad, grad_b = kernels.loss_grad("squared", X, y, coef, b, backend=backend)
    h = 1e-3  # the loss is quadratic: central differences are exact up to rounding

    def loss(c, icpt):
        return kernels.loss_grad("squared", X, y, c, icpt, backend=backend)[0]

    fd = np.array([(loss(coef + h * e, b) - loss(coef - h * e, b)) / (2 * h) for e in np.eye(n)])
    fd_b = (loss(coef, b + h) - loss(coef, b - h)) / (2 * h)
    close(grad, fd, 1e-6)
    close(grad_b, fd_b, 1e-6)


@pytest.mark.parametrize("backend", COMPILED)
def test_result_does_not_depend_on_thread_count(backend):
    X, y, coef, b = make(50_000, 5, np.float64)
    before = kernels.get_num_threads()
    try:
        results = []
        for t in (1, 2):
            numba.set_num_threads(min(t, numba.config.NUMBA_NUM_THREADS))
            kernels.set_cython_threads(t)
            results.append(kernels.loss_grad("squared", X, y, coef, b, backend=backend))
    finally:
        numba.set_num_threads(before["numba"])
        kernels.set_cython_threads(before["cython"])
    assert results[0][0] == results[1][0]
    assert np.array_equal(results[0][1], results[1][1])


def test_loss_grad_sums_writes_out_and_uses_scratch():
    X, y, coef, b = make(5000, 4, np.float64)
    out = np.full(6, np.nan)
    scratch = np.empty((kernels.n_blocks(5000), 6))
    res = kernels.loss_grad_sums("squared", X, y, coef, b, out, backend="cython", scratch=scratch)
    assert res is out
    loss, grad, grad_b = kernels.loss_grad("squared", X, y, coef, b, backend="numpy")
    close(out, np.r_[grad, grad_b, loss], 1e-10)


@pytest.mark.parametrize("kwargs,message", [
    ({"loss": "cubic"}, "loss must be one of"),
    ({"backend": "gpu"}, "backend must be one of"),
    ({"X": np.zeros(3)}, "X must be 2-D"),
    ({"X": np.zeros((3, 2), dtype=np.int64)}, "C-contiguous float32 or float64"),
    ({"X": np.zeros((2, 3)).T}, "C-contiguous"),
    ({"X": np.zeros((3, 0)), "coef": np.zeros(0)}, "0 features"),
    ({"y": np.zeros(4)}, "X has 3 rows but y has shape (4,)"),
    ({"coef": np.zeros(3)}, "X has 2 features but coef has shape (3,)"),
])
def test_bad_arguments_are_named(kwargs, message):
    args = {"loss": "squared", "X": np.zeros((3, 2)), "y": np.zeros(3), "coef": np.zeros(2),
            "intercept": 0.0, "backend": "numba"} | kwargs
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        kernels.loss_grad(args.pop("loss"), **args)


def test_out_and_scratch_shapes_are_checked():
    X, y, coef, _ = make(10, 2, np.float64)
    with pytest.raises(ValueError, match="out must be float64 of shape"):
        kernels.loss_grad_sums("squared", X, y, coef, 0.0, np.empty(3))
    with pytest.raises(ValueError, match="scratch must be float64 of shape"):
        kernels.loss_grad_sums("squared", X, y, coef, 0.0, np.empty(4), scratch=np.empty((2, 4)))
