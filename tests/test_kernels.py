import math
import re

import numba
import numpy as np
import pytest
import scipy.sparse as sp

from fastdp import kernels
from fastdp.kernels import _cython_dense, numba_dense

COMPILED = ["numba", "cython"]
LOSSES = ["squared", "logistic", "hinge", "squared_hinge", "softmax"]
FORMATS = ["dense", "csr32", "csr64"]  # CSR with int32 / int64 indices
TOL = {np.float64: 1e-10, np.float32: 1e-4}
K = 4  # classes of the softmax problems


def to_format(D: np.ndarray, fmt: str):
    """Dense D as `fmt`: itself, or a csr_array / csr_matrix with int32 or int64 indices."""
    if fmt == "dense":
        return D
    X = (sp.csr_array if fmt == "csr32" else sp.csr_matrix)(D)
    index_dtype = np.int32 if fmt == "csr32" else np.int64
    X.indices, X.indptr = X.indices.astype(index_dtype), X.indptr.astype(index_dtype)
    return X


def make(loss: str, m: int, n: int, dtype, fmt: str = "dense", seed: int = 0):
    """(X, y, coef, intercept) for `loss`: X (m, n) with every fifth row all zero (empty CSR rows)
    and about 40% zeros elsewhere; y real (squared), -1/+1 (binary), int32 labels 0..K-1 (softmax)."""
    rng = np.random.default_rng(seed)
    D = rng.standard_normal((m, n)) * (rng.random((m, n)) < 0.6)
    D[::5] = 0.0
    D = D.astype(dtype)
    if loss == "softmax":
        return to_format(D, fmt), rng.integers(0, K, m).astype(np.int32), \
            rng.standard_normal((n, K)), rng.standard_normal(K)
    coef = rng.standard_normal(n)
    if loss == "squared":
        y = D @ rng.standard_normal(n) + rng.standard_normal(m)
    else:
        y = np.where(rng.random(m) < 0.5, -1.0, 1.0)
    return to_format(D, fmt), y.astype(dtype), coef, 0.3


def close(a, b, rtol):
    a, b = np.atleast_1d(a), np.atleast_1d(b)
    scale = max(1.0, np.abs(b).max()) if b.size else 1.0
    np.testing.assert_allclose(a, b, rtol=0, atol=rtol * scale)


def assert_results_close(got, ref, rtol):
    for g, r in zip(got, ref):
        assert np.shape(g) == np.shape(r)
        close(g, r, rtol)


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("backend", COMPILED)
@pytest.mark.parametrize("loss", LOSSES)
def test_matches_numpy_reference(loss, backend, dtype, fmt):
    X, y, coef, b = make(loss, 9001, 6, dtype, fmt)  # three blocks, the last one short
    ref = kernels.loss_grad(loss, X, y, coef, b, backend="numpy")
    assert_results_close(kernels.loss_grad(loss, X, y, coef, b, backend=backend), ref, TOL[dtype])


@pytest.mark.parametrize("backend", COMPILED)
@pytest.mark.parametrize("loss", LOSSES)
@pytest.mark.parametrize("m,n", [(1, 1), (7, 3), (100003, 64)])
def test_matches_numpy_reference_across_shapes(loss, backend, m, n):
    X, y, coef, b = make(loss, m, n, np.float64)
    ref = kernels.loss_grad(loss, X, y, coef, b, backend="numpy")
    assert_results_close(kernels.loss_grad(loss, X, y, coef, b, backend=backend), ref, 1e-10)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("backend", COMPILED)
@pytest.mark.parametrize("loss", ["squared", "logistic", "hinge", "squared_hinge"])
@pytest.mark.parametrize("n", [1, 24, 130])
def test_dense_groups_match_the_reference(n, loss, backend, dtype):
    """The scalar-loss dense kernels go a group of rows at a time, sized by a row's bytes: 64 rows
    at n = 1, 16 (float64) or 40 (float32) at n = 24, 24 (float64) or 56 (float32) at n = 130.
    4099 rows make block 1 three rows, fewer than one dot product's four, and end block 0 on a
    partial group where the group does not divide 4096 (float32 at n = 24, both at n = 130)."""
    X, y, coef, b = make(loss, 4099, n, dtype)
    ref = kernels.loss_grad(loss, X, y, coef, b, backend="numpy")
    assert_results_close(kernels.loss_grad(loss, X, y, coef, b, backend=backend), ref, TOL[dtype])


def test_dense_group_rule_is_the_same_in_both_backends():
    """16 to 64 rows, a multiple of 8: about 4 KiB of rows up to 256 bytes, about 32 KiB of wider
    ones; Cython's rule and Numba's twin agree."""
    expected = {8: 64, 68: 56, 128: 32, 136: 24, 192: 16, 256: 16, 257: 64, 800: 40, 2400: 16}
    for row_bytes, rows in expected.items():
        assert _cython_dense.group_rows(row_bytes) == numba_dense.group_rows(row_bytes) == rows
    for row_bytes in range(1, 5000):
        rows = numba_dense.group_rows(row_bytes)
        assert rows == _cython_dense.group_rows(row_bytes)
        assert 16 <= rows <= 64 and rows % 8 == 0
    with pytest.raises(ValueError, match="row_bytes must be >= 1, got 0"):
        _cython_dense.group_rows(0)


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("backend", kernels.BACKENDS)
@pytest.mark.parametrize("loss", LOSSES)
def test_empty_shard_gives_zeros(loss, backend, fmt):
    X, y, coef, b = make(loss, 0, 3, np.float64, fmt)
    loss_sum, grad, grad_b = kernels.loss_grad(loss, X, y, coef, b, backend=backend)
    assert loss_sum == 0 and grad.shape == np.shape(coef) and not grad.any() and not np.any(grad_b)


def hand_formula(loss: str, D: np.ndarray, y, coef, b):
    """Loss sum and gradient written out row by row with `math`, independent of fastdp."""
    grad, grad_b, total = np.zeros_like(coef), np.zeros_like(np.asarray(b, dtype=float)), 0.0
    for x, t in zip(D.astype(np.float64), y):
        z = x @ coef + b
        if loss == "softmax":
            p = np.array([math.exp(v) for v in z]) / sum(math.exp(v) for v in z)
            row, d = -math.log(p[t]), p - np.eye(len(z))[t]
        elif loss == "squared":
            row, d = 0.5 * (z - t) ** 2, z - t
        elif loss == "logistic":
            row, d = math.log(1 + math.exp(-t * z)), -t / (1 + math.exp(t * z))
        elif loss == "hinge":
            row, d = max(0.0, 1 - t * z), (-t if t * z < 1 else 0.0)
        else:
            row, d = max(0.0, 1 - t * z) ** 2, -2 * t * max(0.0, 1 - t * z)
        total += row
        grad += np.multiply.outer(x, d)
        grad_b += d
    return total, grad, grad_b


@pytest.mark.parametrize("fmt", ["dense", "csr64"])
@pytest.mark.parametrize("loss", LOSSES)
def test_reference_matches_hand_formula(loss, fmt):
    X, y, coef, b = make(loss, 50, 4, np.float64, fmt)
    D = X if fmt == "dense" else X.toarray()
    assert_results_close(kernels.loss_grad(loss, X, y, coef, b, backend="numpy"),
                         hand_formula(loss, D, y, coef, b), 1e-12)


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("backend", kernels.BACKENDS)
@pytest.mark.parametrize("loss", LOSSES)
def test_gradient_matches_central_differences(loss, backend, dtype, fmt):
    X, y, coef, b = make(loss, 37, 3, dtype, fmt, seed=1)
    _, grad, grad_b = kernels.loss_grad(loss, X, y, coef, b, backend=backend)
    h = 1e-6

    def loss_at(c, icpt):
        return kernels.loss_grad(loss, X, y, c, icpt, backend=backend)[0]

    steps = np.eye(coef.size).reshape(-1, *coef.shape) * h
    fd = np.array([loss_at(coef + e, b) - loss_at(coef - e, b) for e in steps]) / (2 * h)
    b_steps = np.eye(np.size(b)).reshape(-1, *np.shape(b)) * h
    fd_b = np.array([loss_at(coef, b + e) - loss_at(coef, b - e) for e in b_steps]) / (2 * h)
    close(grad.ravel(), fd, 1e-6)
    close(np.ravel(grad_b), fd_b, 1e-6)


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("backend", kernels.BACKENDS)
def test_logistic_is_exact_at_extreme_margins(backend, fmt):
    D = np.array([[1.0], [-1.0], [1.0], [-1.0]])
    y = np.array([1.0, 1.0, -1.0, -1.0])  # y z = 1e4, -1e4, -1e4, 1e4
    loss_sum, grad, grad_b = kernels.loss_grad("logistic", to_format(D, fmt), y, np.array([1e4]),
                                               0.0, backend=backend)
    # rows with y z = -1e4 have loss 1e4 and dloss/dz = -y; rows with y z = 1e4 contribute 0
    assert loss_sum == 2e4
    assert grad[0] == 2.0 and grad_b == 0.0


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("backend", kernels.BACKENDS)
def test_softmax_is_exact_at_extreme_margins(backend, fmt):
    D = np.array([[1.0], [1.0], [-1.0]])
    coef = np.array([[1e4, -1e4, 0.0]])  # margins +-1e4 and 0
    y = np.array([0, 2, 0])
    loss_sum, grad, grad_b = kernels.loss_grad("softmax", to_format(D, fmt), y, coef,
                                               np.zeros(3), backend=backend)
    # row 0: right at z = 1e4 (loss 0); row 1: z_y = 0 < 1e4 (loss 1e4); row 2: z_y = -1e4 (loss 2e4)
    assert loss_sum == 3e4
    d = np.array([[0.0, 0, 0], [1, 0, -1], [-1, 1, 0]])  # softmax(z) - onehot(y) per row
    np.testing.assert_array_equal(grad, D.T @ d)
    np.testing.assert_array_equal(grad_b, d.sum(axis=0))


@pytest.mark.parametrize("backend", kernels.BACKENDS)
@pytest.mark.parametrize("loss", LOSSES)
def test_csr_equals_dense_including_empty_rows_and_an_all_empty_matrix(loss, backend):
    X, y, coef, b = make(loss, 503, 5, np.float64)
    for D in (X, np.zeros_like(X)):
        dense = kernels.loss_grad(loss, D, y, coef, b, backend=backend)
        assert_results_close(kernels.loss_grad(loss, to_format(D, "csr64"), y, coef, b,
                                               backend=backend), dense, 1e-12)
    empty = kernels.loss_grad(loss, to_format(np.zeros_like(X), "csr32"), y, coef, b, backend=backend)
    assert not empty[1].any() and np.all(np.ravel(empty[2]) != 0)  # margins = intercept, d != 0


def with_threads(n: int, fn):
    before = kernels.get_num_threads()
    try:
        numba.set_num_threads(min(n, numba.config.NUMBA_NUM_THREADS))
        kernels.set_cython_threads(n)
        return fn()
    finally:
        numba.set_num_threads(before["numba"])
        kernels.set_cython_threads(before["cython"])


@pytest.mark.parametrize("fmt", ["dense", "csr32", "csr-big-blocks"])
@pytest.mark.parametrize("loss", ["logistic", "softmax"])
@pytest.mark.parametrize("backend", COMPILED)
def test_result_does_not_depend_on_thread_count(backend, loss, fmt, monkeypatch):
    X, y, coef, b = make(loss, 50_000, 5, np.float64, "dense" if fmt == "dense" else "csr32")
    if fmt == "csr-big-blocks":  # the scratch bound caps the blocks at 3: ~16,700 rows each
        monkeypatch.setattr(kernels, "SPARSE_SCRATCH_BYTES", 3 * 8 * kernels.out_size(loss, coef))
        assert kernels.scratch_shape(loss, X, coef)[0] == 3
    out = [with_threads(t, lambda: kernels.loss_grad(loss, X, y, coef, b, backend=backend))
           for t in (1, 2)]
    for one, two in zip(*out):
        assert np.array_equal(one, two)
    assert_results_close(out[0], kernels.loss_grad(loss, X, y, coef, b, backend="numpy"), 1e-10)


def test_sparse_block_rows_rule():
    assert kernels.sparse_block_rows(100, 10) == kernels.BLOCK_ROWS
    width = 2**20 + 2  # 8 MiB per block: 64 MiB holds 7.99 of them, rounded to 8
    assert kernels.sparse_block_rows(200_000, width) == math.ceil(200_000 / 8)
    assert kernels.sparse_block_rows(10_000, 2**24) == 10_000  # one block, whatever its size
    X = sp.csr_array((200_000, 2**20))
    assert kernels.scratch_shape("squared", X, np.zeros(2**20)) == (8, width)
    assert kernels.scratch_shape("squared", np.zeros((9000, 3)), np.zeros(3)) == (3, 5)


def test_output_layout_helpers():
    W = np.zeros((6, 3))
    assert kernels.n_outputs("softmax", W) == 3 and kernels.out_size("softmax", W) == 18 + 3 + 1
    assert kernels.n_outputs("logistic", np.zeros(6)) == 1 and kernels.out_size("hinge", np.zeros(6)) == 8


@pytest.mark.parametrize("backend", kernels.BACKENDS)
@pytest.mark.parametrize("fmt", ["dense", "csr64"])
def test_loss_grad_sums_writes_out_and_uses_scratch(backend, fmt):
    X, y, coef, b = make("softmax", 5000, 4, np.float64, fmt)
    out = np.full(kernels.out_size("softmax", coef), np.nan)
    scratch = np.empty(kernels.scratch_shape("softmax", X, coef))
    res = kernels.loss_grad_sums("softmax", X, y, coef, b, out, backend=backend, scratch=scratch,
                                 validate=False)
    assert res is out
    loss, grad, grad_b = kernels.loss_grad("softmax", X, y, coef, b, backend="numpy")
    close(out, np.r_[grad.ravel(), grad_b, loss], 1e-10)


@pytest.mark.parametrize("fmt", ["dense", "csr32"])
def test_decision_function(fmt):
    X, _, W, c = make("softmax", 20, 4, np.float32, fmt)
    D = X if fmt == "dense" else X.toarray()
    np.testing.assert_allclose(kernels.decision_function(X, W, c), D.astype(float) @ W + c, rtol=1e-12)
    Z = kernels.decision_function(X, W[:, 0], 0.5)
    assert Z.shape == (20,) and Z.dtype == np.float64
    np.testing.assert_allclose(Z, D.astype(float) @ W[:, 0] + 0.5, rtol=1e-12)


def bad_csr(kind: str):
    X = sp.csr_array(np.array([[1.0, 0, 2, 0, 0], [0, 3, 0, 4, 5], [6, 0, 0, 0, 7]]))
    if kind == "index":
        X.indices[5] = 70  # row 2's first entry
    elif kind == "negative":
        X.indices[1] = -3
    elif kind == "unsorted":
        X.indices[2:5] = [3, 1, 4]
    elif kind == "indptr":
        X.indptr[1:3] = [4, 3]
    elif kind == "nnz":
        X.indptr[-1] = 6
    return X


@pytest.mark.parametrize("args,message", [
    ({"loss": "cubic"}, "loss must be one of"),
    ({"backend": "gpu"}, "backend must be one of"),
    ({"X": np.zeros(3)}, "X must be 2-D"),
    ({"X": [[0.0, 1.0]] * 3}, "X must be a NumPy array or a scipy.sparse CSR matrix, got list"),
    ({"X": np.zeros((3, 2), dtype=np.int64)}, "C-contiguous float32 or float64"),
    ({"X": np.zeros((2, 3)).T}, "C-contiguous"),
    ({"X": np.zeros((3, 0)), "coef": np.zeros(0)}, "0 features"),
    ({"X": sp.coo_array(np.zeros((3, 2)))}, "sparse matrix in COO format; the kernels take CSR"),
    ({"X": sp.csr_array(np.zeros((3, 2), dtype=np.int64))}, "X (CSR) data must be float32 or float64"),
    ({"y": np.zeros(4)}, "X has 3 rows but y has shape (4,)"),
    ({"coef": np.zeros(3)}, "X has 2 features but coef has shape (3,)"),
    ({"intercept": np.zeros(2)}, "intercept must be a number for loss 'squared', got shape (2,)"),
    ({"loss": "logistic", "y": np.array([1.0, 0.0, -1.0])}, "y must be -1 or +1 for loss 'logistic', got 0.0 at row 1"),
    ({"loss": "hinge", "X": bad_csr("none"), "coef": np.zeros(5), "y": np.array([1.0, 1.0, 2.0])},
     "y must be -1 or +1 for loss 'hinge', got 2.0 at row 2"),
])
def test_bad_arguments_are_named(args, message):
    args = {"loss": "squared", "X": np.zeros((3, 2)), "y": np.zeros(3), "coef": np.zeros(2),
            "intercept": 0.0, "backend": "numba"} | args
    with pytest.raises(ValueError, match=re.escape(message)):
        kernels.loss_grad(args.pop("loss"), **args)


@pytest.mark.parametrize("simd_rows,openmp", [(True, True), (False, True), (True, False)])
@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("loss", LOSSES)
def test_auto_picks_cython_for_dense_data_with_avx512_and_openmp_else_numba(
        loss, fmt, simd_rows, openmp, monkeypatch):
    monkeypatch.setattr(kernels._cython_dense, "SIMD_ROWS", simd_rows)
    monkeypatch.setattr(kernels, "OPENMP", openmp)
    X = make(loss, 3, 2, np.float64, fmt)[0]
    expected = "cython" if simd_rows and openmp and fmt == "dense" else "numba"
    assert kernels.pick_backend(loss, X) == kernels.pick_backend(loss, X, "auto") == expected
    for backend in kernels.BACKENDS:  # a named backend is kept
        assert kernels.pick_backend(loss, X, backend) == backend


@pytest.mark.parametrize("backend", ["gpu", None, "AUTO"])
def test_pick_backend_names_the_choices(backend):
    with pytest.raises(ValueError, match=re.escape(
            f"backend must be one of ['auto', 'numba', 'cython', 'numpy'], got {backend!r}")):
        kernels.pick_backend("squared", np.zeros((2, 2)), backend)


@pytest.mark.parametrize("fmt", ["dense", "csr32"])
@pytest.mark.parametrize("loss", ["logistic", "softmax"])
def test_default_backend_gives_the_picked_backends_bits(loss, fmt):
    X, y, coef, intercept = make(loss, 301, 5, np.float64, fmt)
    picked = kernels.loss_grad(loss, X, y, coef, intercept,
                               backend=kernels.pick_backend(loss, X))
    for got, want in zip(kernels.loss_grad(loss, X, y, coef, intercept), picked):
        np.testing.assert_array_equal(got, want)


SOFTMAX_ARGS = {"X": np.zeros((3, 2)), "y": np.array([0, 4, 1]), "coef": np.zeros((2, 5)),
                "intercept": np.zeros(5)}


@pytest.mark.parametrize("args,message", [
    ({"X": bad_csr("index")}, "X (CSR) has column index 70 at row 2 but only 5 features"),
    ({"X": bad_csr("negative")}, "X (CSR) has negative column index -3 at row 0"),
    ({"X": bad_csr("unsorted")}, "X (CSR) indices are not sorted in row 1"),
    ({"X": bad_csr("indptr")}, "X (CSR) indptr decreases at row 1"),
    ({"X": bad_csr("nnz")}, "X (CSR) indptr must start at 0 and end at nnz = 7"),
    ({"y": np.array([0, 7, 1])}, "y has label 7 but coef has 5 classes (labels must be 0..4)"),
    ({"y": np.array([0, -1, 1], dtype=np.int8)}, "y has label -1 but coef has 5 classes (labels must be 0..4)"),
    ({"y": np.array([0.0, 1.0, 1.0])}, "y must hold integer class labels for loss 'softmax', got dtype float64"),
    ({"coef": np.zeros(2)}, "coef must be 2-D (n_features, n_classes) with n_classes >= 2"),
    ({"coef": np.zeros((3, 5))}, "X has 2 features but coef has shape (3, 5) (needs (2, 5))"),
    ({"intercept": np.zeros(4)}, "intercept must have shape (5,) to match coef's 5 classes, got shape (4,)"),
    ({"intercept": 0.0}, "intercept must have shape (5,) to match coef's 5 classes, got shape ()"),
])
@pytest.mark.parametrize("backend", kernels.BACKENDS)
def test_bad_softmax_and_csr_input_is_named(args, message, backend):
    args = SOFTMAX_ARGS | ({"coef": np.zeros((5, 5))} if sp.issparse(args.get("X")) else {}) | args
    pattern = re.escape(message)
    with pytest.raises(ValueError, match=pattern):
        kernels.loss_grad("softmax", **args, backend=backend)
    with pytest.raises(ValueError, match=pattern):
        kernels.validate_input("softmax", *args.values())


@pytest.mark.parametrize("backend", kernels.BACKENDS)
def test_validate_false_skips_only_the_content_checks(backend):
    X = bad_csr("unsorted")  # unsorted indices still give the right sums
    y, coef, b = np.array([1.0, -1.0, 1.0]), np.arange(5.0), 0.1
    out = np.empty(7)
    kernels.loss_grad_sums("logistic", X, y, coef, b, out, backend=backend, validate=False)
    X.sort_indices()
    loss, grad, grad_b = kernels.loss_grad("logistic", X, y, coef, b, backend="numpy")
    close(out, np.r_[grad, grad_b, loss], 1e-12)
    with pytest.raises(ValueError, match="X has 2 features but coef"):
        kernels.loss_grad_sums("logistic", np.zeros((3, 2)), y, coef, b, out, validate=False)


@pytest.mark.parametrize("fmt", ["dense", "csr32"])
@pytest.mark.parametrize("loss", ["squared", "softmax"])
def test_out_and_scratch_shapes_are_checked(loss, fmt):
    X, y, coef, b = make(loss, 10, 2, np.float64, fmt)
    size = kernels.out_size(loss, coef)
    with pytest.raises(ValueError, match=rf"out must be float64 of shape \({size},\)"):
        kernels.loss_grad_sums(loss, X, y, coef, b, np.empty(size - 1))
    with pytest.raises(ValueError, match="out must be float64"):
        kernels.loss_grad_sums(loss, X, y, coef, b, np.empty(size, dtype=np.float32))
    with pytest.raises(ValueError, match=rf"scratch must be float64 of shape \(1, {size}\)"):
        kernels.loss_grad_sums(loss, X, y, coef, b, np.empty(size), scratch=np.empty((2, size)))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_decision_function_rows_do_not_depend_on_the_other_rows(dtype):
    """The margins of a row are bitwise the same computed alone, in a slice, or in the whole set:
    what makes data-parallel prediction equal serial prediction bit for bit."""
    rng = np.random.default_rng(5)
    X = rng.normal(size=(1001, 37)).astype(dtype)
    coef, coef_k = rng.normal(size=37), rng.normal(size=(37, 4))
    for c, b in ((coef, 0.25), (coef_k, np.arange(4.0))):
        whole = kernels.decision_function(X, c, b)
        np.testing.assert_allclose(whole, X.astype(np.float64) @ c + b, rtol=1e-12, atol=1e-12)
        for rows in (slice(0, 1), slice(3, 4), slice(500, 1001), slice(17, 600)):
            assert np.array_equal(kernels.decision_function(X[rows], c, b), whole[rows])
        assert np.array_equal(kernels.decision_function(sp.csr_matrix(X)[17:600], c, b),
                              kernels.decision_function(sp.csr_matrix(X), c, b)[17:600])


def logistic_reference(t: float) -> tuple[float, float]:
    """(softplus(t), sigmoid(t)) with libm's exp and log1p, t = -y z."""
    e = math.exp(-abs(t))
    return max(t, 0.0) + math.log1p(e), (1.0 if t >= 0 else e) / (1.0 + e)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("n", [1, 7, 64, 67])
@pytest.mark.parametrize("classes", [2, 3, 4, 5, 10])
@pytest.mark.parametrize("backend", COMPILED)
def test_dense_softmax_matches_the_reference_for_any_class_count(backend, classes, n, dtype):
    """The compiled softmax kernels form margins four classes at a time (the last four overlapping
    when K is not a multiple of 4; K < 4 on a plain loop) and the gradient group by group: every
    class count and width (tails of the 8-lane vectors), with partial groups and blocks, matches
    NumPy."""
    rng = np.random.default_rng(classes * 100 + n)
    m = 301  # several groups of rows, the last one partial
    X = rng.standard_normal((m, n)).astype(dtype)
    y = rng.integers(0, classes, m)
    coef, b = rng.standard_normal((n, classes)), rng.standard_normal(classes)
    size = kernels.out_size("softmax", coef)
    ref = kernels.loss_grad_sums("softmax", X, y, coef, b, np.empty(size), backend="numpy")
    out = np.empty((kernels.n_blocks(m, 128), size))
    kernels.block_sums("softmax", X, y, coef, b, out, 128, backend=backend)
    close(out.sum(axis=0), ref, TOL[dtype])


@pytest.mark.parametrize("backend", COMPILED)
def test_logistic_rows_match_libm_to_a_few_ulp(backend):
    """The kernels' branch-free exp and log1p (pointwise.pxd, numba_dense.exp_neg/log1p_unit) against
    libm, row by row, over margins from 0 to past exp's underflow (subnormal results included)."""
    mags = np.concatenate([[0.0, 5e-324, 1e-300, 1e-16, 0.5 * math.log(2)], np.geomspace(1e-8, 800.0, 3000),
                           np.linspace(700.0, 760.0, 200)])
    z = np.concatenate([mags, -mags])
    X = z[:, None].copy()
    y = np.where(np.arange(z.size) % 2 == 0, 1.0, -1.0)
    out = np.empty((z.size, 3))
    kernels.block_sums("logistic", X, y, np.array([1.0]), 0.0, out, 1, backend=backend)
    for (_, d, loss), zi, yi in zip(out, z, y):
        want_loss, sig = logistic_reference(-yi * zi)
        # 2 ulp, or 4 ulp of the subnormals (the reference rounds twice too)
        assert loss == pytest.approx(want_loss, rel=4.5e-16, abs=2e-323), (zi, yi)
        assert d == pytest.approx(-yi * sig, rel=4.5e-16, abs=2e-323), (zi, yi)


@pytest.mark.parametrize("backend", COMPILED)
@pytest.mark.parametrize("loss", ["squared", "logistic", "hinge", "squared_hinge"])
def test_nan_margin_gives_nan_loss_and_gradient(loss, backend):
    X = np.array([[np.nan], [1.0]])
    out = np.empty((2, 3))
    kernels.block_sums(loss, X, np.array([1.0, -1.0]), np.array([1.0]), 0.0, out, 1, backend=backend,
                       validate=False)
    assert np.isnan(out[0, 2]), "a NaN margin's loss is NaN, so the non-finite guard sees it"
    if loss != "hinge":  # hinge's derivative is a step function of the margin: -y or 0
        assert np.isnan(out[0, :2]).all()
    assert np.isfinite(out[1]).all()


def _bindable(loss: str, m: int, dtype, seed: int = 0):
    """make()'s dense problem in the kinds a training loop passes: softmax labels as intp."""
    X, y, coef, intercept = make(loss, m, 9, dtype, seed=seed)
    if loss == "softmax":
        y = y.astype(np.intp)
    return X, y, coef, intercept


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("backend", COMPILED)
@pytest.mark.parametrize("loss", LOSSES)
def test_bound_batch_sums_give_loss_grad_sums_bits(loss, backend, dtype):
    X, y, coef, intercept = _bindable(loss, 5000, dtype)
    out = np.full(kernels.out_size(loss, coef), np.nan)
    sums = kernels.bind_batch_sums(loss, X[:10], y[:10], coef, intercept, out, backend=backend)
    rng = np.random.default_rng(1)
    for k in (1, 7, 64, 1000, kernels.BLOCK_ROWS):  # batches up to one block, the same buffer
        rows = np.sort(rng.choice(len(y), k, replace=False))
        Xb, yb = X[rows], y[rows]
        sums(Xb, yb, coef, intercept)
        want = kernels.loss_grad_sums(loss, Xb, yb, coef, intercept, np.empty_like(out), backend=backend)
        np.testing.assert_array_equal(out, want)


def test_bound_batch_sums_take_the_auto_backend():
    X, y, coef, intercept = _bindable("logistic", 100, np.float64)
    out = np.empty(kernels.out_size("logistic", coef))
    kernels.bind_batch_sums("logistic", X, y, coef, intercept, out)(X, y, coef, intercept)
    np.testing.assert_array_equal(out, kernels.loss_grad_sums("logistic", X, y, coef, intercept,
                                                               np.empty_like(out)))


@pytest.mark.parametrize("case", ["csr", "numpy", "int32 labels", "float64 y, float32 X",
                                  "float32 coef", "softmax intercept as a list"])
def test_bind_batch_sums_is_none_where_loss_grad_sums_must_convert_or_has_no_kernel(case):
    loss = "softmax" if "labels" in case or "softmax" in case else "squared"
    X, y, coef, intercept = _bindable(loss, 50, np.float32 if "float32 X" in case else np.float64)
    backend = "numpy" if case == "numpy" else "auto"
    if case == "csr":
        X = sp.csr_matrix(X)
    elif case == "int32 labels":
        y = y.astype(np.int32)
    elif case == "float64 y, float32 X":
        y = y.astype(np.float64)
    elif case == "float32 coef":
        coef = coef.astype(np.float32)
    elif case == "softmax intercept as a list":
        intercept = list(intercept)
    out = np.empty(kernels.out_size(loss, np.asarray(coef)))
    assert kernels.bind_batch_sums(loss, X, y, coef, intercept, out, backend=backend) is None


@pytest.mark.parametrize("args,message", [
    (("logistic", np.zeros(5), np.ones(5), np.zeros(1), 0.0, np.empty(3)), "X must be 2-D"),
    (("logistic", np.zeros((5, 2)), np.ones(4), np.zeros(2), 0.0, np.empty(4)),
     "X has 5 rows but y has shape (4,)"),
    (("logistic", np.zeros((5, 2)), np.ones(5), np.zeros(3), 0.0, np.empty(4)),
     "X has 2 features but coef has shape (3,)"),
    (("logistic", np.zeros((5, 2)), np.ones(5), np.zeros(2), 0.0, np.empty(5)),
     "out must be C-contiguous float64 of shape (4,), got float64 (5,)"),
    (("logistic", np.zeros((5, 2)), np.ones(5), np.zeros(2), 0.0, np.empty(8)[::2]),
     "out must be C-contiguous float64 of shape (4,)"),
    (("logistic", np.zeros((5, 2)), np.ones(5), np.zeros(2), 0.0, [0.0] * 4),
     "out must be a NumPy array, got list"),
    (("logit", np.zeros((5, 2)), np.ones(5), np.zeros(2), 0.0, np.empty(4)), "loss must be one of"),
])
def test_bind_batch_sums_names_bad_arguments(args, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        kernels.bind_batch_sums(*args)


def test_a_bound_kernel_refuses_another_dtype_rather_than_misread_it():
    X, y, coef, intercept = _bindable("squared", 20, np.float64)
    out = np.empty(kernels.out_size("squared", coef))
    sums = kernels.bind_batch_sums("squared", X, y, coef, intercept, out, backend="cython")
    with pytest.raises((ValueError, TypeError)):
        sums(X.astype(np.float32), y, coef, intercept)
