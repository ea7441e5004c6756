"""Property tests of the loss-gradient kernels (fastdp.kernels) on random, extreme and malformed
input: every input gives the reference's result or a ValueError/TypeError that names the bad
argument; never a crash, a hang, or a finite number that is wrong ("silent garbage").

What "the reference's result" means. The compiled kernels and reference.py evaluate the same
float64 formulas in different orders (blocks, groups of rows, vector lanes, fused multiply-adds),
so they agree to rounding relative to the size of what is added up, not to the size of the sum.
Each component of [grad_coef, grad_intercept, loss] is a sum of per-row terms: d_i * x_ij,
d_i and loss_i (d = dloss/dz; for softmax |d| + 1 stands for |d|, as a difference of probabilities
is only known to absolute precision). With S = sum |terms| (from the reference's d and row losses):

- all terms finite and S <= 2**1020 (no order of addition can overflow): the result is finite and
  within rtol * S of the reference, rtol = TOL[X's dtype] of test_kernels.py (plus 2**-1000 for
  float64 underflow, where any order may round to zero; for the moderate values, |x| and |coef|
  up to 4, S counts as at least 1, as in test_kernels.close);
- a term is non-finite because its row's d or loss is (a margin that overflowed, NaN or inf in
  the input): the result is non-finite too. This is what the training loop's non-finite
  guard relies on: a finite wrong number here would be silent garbage;
- the terms are finite but S is near or past overflow: the sum may overflow in one order and not
  in another, so the result is non-finite, or within rtol * S of a finite reference, or anything
  when the reference itself overflowed in its own order.

A float32 shard's gradient may be summed in float32 (32-row groups in the dense kernels), so its
gradient components may also be non-finite where d or S pass float32's range (2**127), and may
lose d * x below float32's smallest subnormal (2**-149): inf or NaN, never a finite wrong value.

For that comparison to be fair the margins must not depend on the order of addition either: a
margin one rounding away could cross the hinge's kink and change d entirely. So every generated
value is an integer times a power of two (`Scales`), chosen so that each product x_j * coef_j
and each margin is exact in float64 whatever the order (or every non-zero product of a margin
overflows, all with the same sign). The moderate values still carry more significant bits than
float32 holds (X of float64 shards, coef), so a kernel that rounded through float32 is caught.

OVERFLOW_NOTE: products that overflow with both signs in one margin are left out on purpose.
Without fused multiply-adds that margin is inf - inf = NaN. With them (the compiled kernels, and
OpenBLAS under the dense reference) fma(x, c, acc) does not round x * c, so once the margin is
+inf (or -inf) a product of the other sign leaves it so: the margin takes the sign of whichever
product came first, and a hinge or logistic row on the "right" side of it gets loss 0, finite,
where the true margin may be small. Only SciPy's CSR product (no FMA) keeps the NaN. No order of
float64 arithmetic is right past 1e308, so this is a limit of the arithmetic rather than of one
kernel, but it is the one place where finite input can give a finite wrong loss.

The CSR inputs come from the same dense values with sorted or shuffled indices, duplicate entries
(a value split in two of the same sign, so no entry cancels another), explicit zeros, empty rows
and columns, int32/int64 indices and indptr (mixed too), csr_array and csr_matrix; the dense
ones as C-contiguous arrays, read-only arrays and np.matrix. Numba compiles a separate version
for read-only arrays (seconds each), so read-only input goes to Cython (whose memoryviews must
be const) and to the reference only.

Hypothesis runs derandomized without a database, so CI sees the same examples every run.
"""

import re
import warnings
from dataclasses import dataclass

import numpy as np
import pytest
import scipy.sparse as sp
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from fastdp import kernels
from fastdp.kernels.losses import NUMPY_LOSSES
from fastdp.validation import check_shard
from test_kernels import COMPILED, LOSSES, TOL

pytestmark = pytest.mark.filterwarnings("ignore:the matrix subclass:PendingDeprecationWarning")  # np.matrix X

SCALAR_LOSSES = [loss for loss in LOSSES if loss != "softmax"]
F32_EXPONENTS = (-149, 124)  # k * 2**e with |k| <= 8 is an exact float32 (subnormals included)
F64_EXPONENTS = (-1074, 1020)


def fuzz(max_examples: int) -> settings:
    return settings(max_examples=max_examples, deadline=None, derandomize=True, database=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])


@dataclass(frozen=True)
class Scales:
    """Generated values are integers k with |k| <= the bound, times 2**exponent: X (kx, ex), coef
    (kc, ec), intercept (kb, eb), squared-loss targets (ky, ey). A margin is exact when eb >= ex + ec
    and n * kx * kc + kb stays below 2**53 (and 2**1024 / 2**(ex + ec))."""
    kx: int
    ex: int
    kc: int
    ec: int
    kb: int
    eb: int
    ky: int
    ey: int


# |x|, |coef| <= 4, |z| < 2**7, |y| <= 4. float64: x and coef with 25 significant bits, more than
# float32 holds; float32: x on a 1/16 grid (exact in float32), coef with 32 significant bits.
MODERATE = {np.float64: Scales(kx=2**25, ex=-23, kc=2**25, ec=-23, kb=2**50, eb=-46, ky=2**12, ey=-10),
            np.float32: Scales(kx=64, ex=-4, kc=2**32, ec=-30, kb=2**36, eb=-34, ky=2**12, ey=-10)}


@dataclass
class Case:
    """One kernel input: X as passed to the kernels (dense or CSR, in some container), y, coef,
    intercept; D is X's dense float64 value (duplicates added up)."""
    loss: str
    backend: str
    X: object
    y: np.ndarray
    coef: np.ndarray
    intercept: object
    D: np.ndarray
    unsorted: bool = False  # CSR indices out of order in some row (validate=True rejects it)

    @property
    def args(self):
        return self.loss, self.X, self.y, self.coef, self.intercept

    @property
    def dtype(self):
        return self.X.dtype.type

    @property
    def size(self) -> int:
        return kernels.out_size(self.loss, self.coef)


def scaled(k: np.ndarray, e: int) -> np.ndarray:
    """k * 2**e, exactly (ldexp scales subnormals exactly too)."""
    return np.ldexp(np.asarray(k, dtype=np.float64), e)


@st.composite
def extreme_scales(draw, dtype, loss: str) -> Scales:
    """Exponents from float64's (or float32's) whole range, in one of several regimes: subnormal
    or huge X, margins down to 2**-1074 or up to 2**1019, and margins whose every non-zero product
    overflows (t = ex + ec >= 1025). Left out: t in 1011..1024, where a row's finite products could
    overflow in one order of addition and not in another, and for the squared loss t in 500..515,
    where 0.5 * r * r overflows or not with the association."""
    lo, hi = F32_EXPONENTS if dtype == np.float32 else F64_EXPONENTS
    regime = draw(st.sampled_from(["tiny X", "huge X", "tiny margins", "huge margins", "overflow", "any"]))
    ex = draw(st.integers(*{"tiny X": (lo, lo + 40), "huge X": (hi - 40, hi)}.get(regime, (lo, hi))))
    t_lo, t_hi = max(-1074, ex - 1074), ex + 1020  # ec = t - ex in F64_EXPONENTS
    t_range = {"tiny margins": (t_lo, -1000), "huge margins": (900, 1010), "overflow": (1025, t_hi)}
    a, b = t_range.get(regime, (t_lo, t_hi))
    a, b = (max(a, t_lo), min(b, t_hi)) if max(a, t_lo) <= min(b, t_hi) else (t_lo, t_hi)  # out of reach
    t = draw(st.integers(a, b).filter(
        lambda t: not 1010 < t < 1025 and not (loss == "squared" and 500 <= t <= 515)))
    eb = t if t <= 1010 else draw(st.integers(-1074, 1017))
    return Scales(kx=8, ex=ex, kc=8, ec=t - ex, kb=8, eb=eb, ky=8, ey=min(max(t, lo), hi))


def ints(shape, bound: int):
    """Arrays of integers in -bound..bound, each drawn on its own (no common fill value). Large
    bounds: |k| is scrambled (times an odd constant, modulo bound + 1), so the small integers that
    Hypothesis favors still use all their bits."""
    elements = st.integers(-bound, bound)
    if bound > 2**12:
        elements = elements.map(lambda k: (1 if k > 0 else -1) * (abs(k) * 0x9E3779B1 % (bound + 1)))
    return arrays(np.int64, shape, elements=elements, fill=st.nothing())


@st.composite
def cases(draw, losses=tuple(LOSSES), backends=tuple(kernels.BACKENDS), formats=("csr", "dense"),
          extreme=False, shuffled=True, min_rows=1, max_rows=20, max_features=5):
    """A Case with random shape, dtype, sparsity pattern, container and values (see the module
    docstring), for a loss and backend drawn from the given ones."""
    loss = draw(st.sampled_from(losses))
    backend = draw(st.sampled_from(backends))
    dtype = draw(st.sampled_from([np.float64, np.float32]))
    s = draw(extreme_scales(dtype, loss)) if extreme else MODERATE[dtype]
    m = draw(st.integers(min_rows, max_rows))
    n = draw(st.integers(1, max_features))
    K = draw(st.integers(2, 4)) if loss == "softmax" else 1
    A = draw(ints((m, n), s.kx))
    A *= draw(arrays(np.bool_, (m, n)) | arrays(np.bool_, (m, n), fill=st.nothing()))  # sparse or not
    C = draw(ints((n, K), s.kc))
    if s.ex + s.ec > 1024:  # every product overflows: one sign per margin (see OVERFLOW_NOTE)
        A = np.abs(A) * np.where(draw(arrays(np.bool_, (m, 1))), -1, 1)
        C = np.abs(C) * np.where(draw(arrays(np.bool_, (1, K))), -1, 1)
    D = scaled(A, s.ex).astype(dtype)
    coef = scaled(C if loss == "softmax" else C[:, 0], s.ec)
    B = scaled(draw(ints((K,), s.kb)), s.eb)
    intercept = B if loss == "softmax" else float(B[0])
    if loss == "softmax":
        y = np.asarray(draw(arrays(np.int64, (m,), elements=st.integers(0, K - 1))),
                       dtype=draw(st.sampled_from([np.int8, np.uint8, np.int32, np.int64])))
    elif loss == "squared":
        y = scaled(draw(ints((m,), s.ky)), s.ey).astype(dtype)
    else:
        y = np.where(draw(arrays(np.bool_, (m,))), 1.0, -1.0).astype(dtype)
    readonly = backend != "numba" and draw(st.booleans())
    fmt = draw(st.sampled_from(formats))
    unsorted = False
    if fmt == "dense":
        X = np.asmatrix(D) if draw(st.booleans()) else D.copy()
    else:
        X, unsorted = draw(csr_variants(A, s.ex, dtype, shuffled))
    if readonly:
        for a in ((X.data, X.indices, X.indptr) if sp.issparse(X) else (X,)) + (y, coef, B):
            a.flags.writeable = False
    return Case(loss, backend, X, y, coef, intercept, scaled(A, s.ex), unsorted)


@st.composite
def csr_variants(draw, A: np.ndarray, ex: int, dtype, shuffled: bool):
    """(CSR X whose value is A * 2**ex, whether some row's indices are out of order)."""
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    split, zeros = draw(st.booleans()), draw(st.booleans())
    shuffle = shuffled and draw(st.booleans())
    m, n = A.shape
    data, indices, indptr = [], [], [0]
    for i in range(m):
        row = []
        for j in np.flatnonzero(A[i]):
            k = int(A[i, j])
            h = int(np.sign(k)) * (abs(k) // 2)  # k - h and h: the same sign as k, or 0
            row += [(j, k - h), (j, h)] if split and rng.random() < 0.5 else [(j, k)]
        if zeros:  # explicit zeros, in empty columns or beside an entry
            row += [(j, 0) for j in rng.integers(0, n, rng.integers(0, 3))]
        row.sort(key=lambda e: e[0])
        if shuffle:
            rng.shuffle(row)
        indices += [int(j) for j, _ in row]
        data += [k for _, k in row]
        indptr.append(len(indices))
    data = scaled(np.array(data, dtype=np.int64), ex).astype(dtype)
    cls = draw(st.sampled_from([sp.csr_array, sp.csr_matrix]))
    X = cls((data, np.array(indices, dtype=np.int64), np.array(indptr, dtype=np.int64)), shape=(m, n))
    X.indices = np.array(indices, dtype=draw(st.sampled_from([np.int32, np.int64])))
    X.indptr = np.array(indptr, dtype=draw(st.sampled_from([np.int32, np.int64])))
    unsorted = any(np.any(np.diff(X.indices[a:b]) < 0) for a, b in zip(X.indptr[:-1], X.indptr[1:]))
    return X, unsorted


@dataclass
class Terms:
    """Per row (axis 0) and output component (axis 1, loss_grad_sums' layout [grad_coef (n*K),
    grad_intercept (K), loss]): the size of the row's term (|d_ik x_ij|, |d_ik|, loss_i; for softmax
    |d| + 1, as a probability difference is only known to absolute precision), whether it is
    non-finite because the row's d or loss is, and sum |x_ij| + 1 (gradient components only; for
    float32's underflow); and per row whether some |d_ik| >= 2**127 (float32 overflow)."""
    size: np.ndarray
    nonfinite: np.ndarray
    xsum: np.ndarray
    dbig: np.ndarray
    n_grad: int  # n * K, the gradient components

    def __getitem__(self, rows):
        return Terms(self.size[rows], self.nonfinite[rows], self.xsum[rows], self.dbig[rows], self.n_grad)


def row_terms(loss: str, X, y, coef, intercept) -> Terms:
    """The reference's per-row terms of X (dense or CSR): for CSR only the stored entries (explicit
    zeros included, duplicates added up) meet d, for dense X every entry (0 * inf is NaN there)."""
    K = kernels.n_outputs(loss, coef)
    X64 = X.astype(np.float64) if sp.issparse(X) else np.asarray(X, dtype=np.float64)
    m, n = X64.shape
    with np.errstate(all="ignore"):
        z = np.asarray(X64 @ coef) + intercept
        target = np.asarray(y, dtype=np.intp if loss == "softmax" else np.float64)
        loss_rows, d = NUMPY_LOSSES[loss](z, target)
        d = d.reshape(m, K)
        if sp.issparse(X):
            rows = np.repeat(np.arange(m), np.diff(X.indptr))
            absx, touch = np.zeros((m, n)), np.zeros((m, n), dtype=bool)
            np.add.at(absx, (rows, X.indices), np.abs(X.data.astype(np.float64)))
            touch[rows, X.indices] = True
        else:
            absx, touch = np.abs(X64), np.ones((m, n), dtype=bool)
        dsize = np.abs(d) + (1.0 if loss == "softmax" else 0.0)
        grad = np.where(touch[:, :, None], absx[:, :, None] * dsize[:, None, :], 0.0).reshape(m, n * K)
        bad = ~np.isfinite(d)
        return Terms(
            size=np.concatenate([grad, dsize, np.abs(loss_rows)[:, None]], axis=1),
            nonfinite=np.concatenate([(touch[:, :, None] & bad[:, None, :]).reshape(m, n * K), bad,
                                      ~np.isfinite(loss_rows)[:, None]], axis=1),
            xsum=np.concatenate([np.repeat(absx + 1.0, K, axis=1), np.zeros((m, K + 1))], axis=1),
            dbig=(np.abs(d) >= 2.0**127).any(axis=1), n_grad=n * K)


def assert_agrees(got, ref, terms: Terms, rtol: float, floor: float, float32: bool):
    """got agrees with the reference ref as the module docstring says; floor: S is taken as at
    least floor (1 for the moderate values: like test_kernels.close, rtol in absolute terms)."""
    got, ref = np.ravel(got), np.ravel(ref)
    size = got.size
    assert ref.size == size == terms.size.shape[1]
    with np.errstate(all="ignore"):
        S = terms.size.sum(axis=0)
        nonfinite = terms.nonfinite.any(axis=0)
        grad = np.arange(size) < terms.n_grad
        tol = rtol * np.maximum(S, floor) + 2.0**-1000
        if float32:
            tol += 2.0**-148 * terms.xsum.sum(axis=0)
        loose = grad & float32 & (terms.dbig.any() | (S >= 2.0**127))
        err = np.abs(got - ref)
        finite = np.isfinite(got)
        exact = ~nonfinite & (S <= 2.0**1020)  # False where S is NaN
        ok = np.where(nonfinite, ~finite,
                      np.where(exact, (finite | loose) & ((err <= tol) | (~finite & loose)),
                               ~finite | ~np.isfinite(ref) | (err <= tol)))
    bad = np.flatnonzero(~ok)
    assert not bad.size, "\n".join(
        f"component {i} of {size}: got {got[i]!r}, reference {ref[i]!r}, sum |terms| {S[i]!r}, "
        f"tolerance {tol[i]!r}, a term non-finite: {nonfinite[i]}" for i in bad)


def reference(loss: str, X, y, coef, intercept) -> np.ndarray:
    """reference.py's [grad_coef, grad_intercept, loss] (loss_grad_sums' layout)."""
    out = np.empty(kernels.out_size(loss, coef))
    with np.errstate(all="ignore"):
        return kernels.loss_grad_sums(loss, X, y, coef, intercept, out, backend="numpy", validate=False)


def matrix_case() -> Case:
    """An np.matrix X: the reference's margins used to come out (1, m) and its gradient failed."""
    D = np.array([[0.5, -1.0], [2.0, 0.0], [0.0, 0.25]])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", PendingDeprecationWarning)
        X = np.asmatrix(D)
    return Case("logistic", "numpy", X, np.array([1.0, -1.0, 1.0]), np.array([1.0, 2.0]),
                0.5, D)


@fuzz(250)
@given(case=cases(min_rows=0), block_rows=st.integers(1, 6), use_scratch=st.booleans(),
       validate=st.booleans())
@example(case=matrix_case(), block_rows=2, use_scratch=False, validate=True)
def test_loss_grad_sums_match_the_reference(case, block_rows, use_scratch, validate):
    """Random shapes (m from 0), dtypes, sparsity patterns and containers, the rows cut into blocks
    of block_rows (kernels.BLOCK_ROWS patched), so the per-block sums and their addition run: each
    backend gives the reference's result on the dense equivalent (so CSR agrees with dense), or,
    for CSR indices out of order with validate=True, the error naming the row (and with
    validate=False the right sums)."""
    out = np.full(case.size, np.nan)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(kernels, "BLOCK_ROWS", block_rows)
        shape = kernels.scratch_shape(case.loss, case.X, case.coef)
        scratch = np.full(shape, np.nan) if use_scratch else None

        def run(validate):
            return kernels.loss_grad_sums(*case.args, out, backend=case.backend, scratch=scratch,
                                          validate=validate)

        if case.unsorted:
            for call in (lambda: run(True), lambda: kernels.validate_input(*case.args)):
                with pytest.raises(ValueError, match=r"X \(CSR\) indices are not sorted in row \d+"):
                    call()
            validate = False
        else:
            kernels.validate_input(*case.args)
        assert run(validate) is out
    want = reference(case.loss, case.D, case.y, case.coef, case.intercept)
    assert_agrees(out, want, row_terms(case.loss, case.D, case.y, case.coef, case.intercept),
                  TOL[case.dtype], floor=1.0, float32=case.dtype == np.float32)


@fuzz(150)
@given(case=cases(min_rows=0), data=st.data())
def test_block_sums_match_the_reference_block_by_block(case, data):
    """block_sums over random rows start..stop in blocks of block_rows (1, a few, past the end,
    2**40): block b holds exactly the reference's sums of its rows, whatever the rows around it."""
    m = case.D.shape[0]
    start = data.draw(st.integers(0, m), label="start")
    stop = data.draw(st.integers(start, m), label="stop")
    block_rows = data.draw(st.integers(1, stop - start + 2) | st.just(2**40), label="block_rows")
    out = np.full((kernels.n_blocks(stop - start, block_rows), case.size), np.nan)
    res = kernels.block_sums(*case.args, out, block_rows, start=start, stop=stop, backend=case.backend,
                             validate=not case.unsorted)
    assert res is out
    terms = row_terms(case.loss, case.D, case.y, case.coef, case.intercept)
    for b, a in enumerate(range(start, stop, block_rows)):
        e = min(a + block_rows, stop)
        want = reference(case.loss, case.D[a:e], case.y[a:e], case.coef, case.intercept)
        assert_agrees(out[b], want, terms[a:e], TOL[case.dtype], floor=1.0,
                      float32=case.dtype == np.float32)


def check_extreme(case: Case, block_rows: int):
    """The compiled result on case against the reference on the same X (dense or CSR: with extreme
    values, which entries are stored matters, as 0 * inf is NaN), over blocks of block_rows."""
    out = np.full(case.size, np.nan)
    with pytest.MonkeyPatch.context() as mp, np.errstate(all="ignore"):
        mp.setattr(kernels, "BLOCK_ROWS", block_rows)
        kernels.loss_grad_sums(*case.args, out, backend=case.backend)
    assert_agrees(out, reference(*case.args), row_terms(*case.args), TOL[case.dtype], floor=0.0,
                  float32=case.dtype == np.float32)


@fuzz(300)
@given(case=cases(losses=SCALAR_LOSSES, backends=COMPILED, extreme=True, shuffled=False),
       block_rows=st.integers(1, 5))
def test_extreme_values_give_the_reference_or_non_finite(case, block_rows):
    """Values from float64's (float32's) whole range: subnormal X and margins, huge X and margins
    up to 2**1019, margins whose products overflow to +-inf, gradients and losses past float32's
    range. Each component is the reference's to rounding, or non-finite where the reference is;
    never a finite wrong number (see the module docstring)."""
    check_extreme(case, block_rows)


@fuzz(200)
@given(case=cases(backends=COMPILED, formats=("csr",), min_rows=0, shuffled=False)
       | cases(losses=SCALAR_LOSSES, backends=COMPILED, formats=("csr",), extreme=True,
               shuffled=False)
       | cases(losses=["softmax"], backends=COMPILED, formats=("csr",), extreme=True,
               shuffled=False),
       tile_cols=st.integers(1, 6), block_rows=st.integers(1, 5))
def test_tiled_csr_gives_the_reference_or_non_finite(case, tile_cols, block_rows):
    """The wide-CSR kernels (kernels.tile_csr: column-major copy or column tiles, tiles of
    tile_cols columns, chunks of block_rows rows; every loss) on the same random CSR shapes, patterns, containers and values,
    moderate or extreme: each component is the reference's to rounding, or non-finite where it is."""
    out = np.full(case.size, np.nan)
    with pytest.MonkeyPatch.context() as mp, np.errstate(all="ignore"):
        mp.setattr(kernels, "TILE_CHUNK_ROWS", block_rows)  # softmax's TiledCSR
        mp.setattr(kernels.columns, "CHUNK_ROWS", block_rows)  # the scalar losses' ColumnCSR
        tiles = kernels.tile_csr(case.X, n_outputs=kernels.n_outputs(case.loss, case.coef),
                                 tile_cols=tile_cols)
        assert tiles.chunk_rows == block_rows  # many chunks: their sums added in order run too
        kernels.loss_grad_sums(*case.args, out, backend=case.backend, tiles=tiles)
    assert_agrees(out, reference(*case.args), row_terms(*case.args), TOL[case.dtype], floor=0.0,
                  float32=case.dtype == np.float32)


def softmax_huge_margin(backend: str, csr: bool) -> Case:
    """Two rows with equal margins in both classes (loss log 2 each); the second row's are 2**60.
    The compilers once regrouped zmax - z[label] with the margins' sums and gave 0 or log 2."""
    D = np.array([[0.0], [2.0**60]])
    X = sp.csr_array(D) if csr else D
    return Case("softmax", backend, X, np.array([0, 0]), np.array([[1.0, 1.0]]), np.zeros(2), D)


@fuzz(100)
@given(case=cases(losses=["softmax"], backends=COMPILED, extreme=True, shuffled=False),
       block_rows=st.integers(1, 5))
@example(case=softmax_huge_margin("numba", csr=False), block_rows=5)
@example(case=softmax_huge_margin("numba", csr=True), block_rows=5)
@example(case=softmax_huge_margin("cython", csr=False), block_rows=5)
@example(case=softmax_huge_margin("cython", csr=True), block_rows=5)
def test_extreme_softmax_gives_the_reference_or_non_finite(case, block_rows):
    """test_extreme_values_give_the_reference_or_non_finite for the softmax loss."""
    check_extreme(case, block_rows)


@fuzz(200)
@given(case=cases(backends=["numba"]) | cases(backends=["numba"], extreme=True))  # numba: not read-only
def test_decision_function_gives_the_exact_margins(case):
    """Every margin of the generated values is exact in float64 (or a sum of products that all
    overflow with one sign: +-inf), so decision_function, dense or CSR, is bitwise X @ coef +
    intercept: (m,) float64 for coef (n,), (m, K) for (n, K)."""
    with np.errstate(all="ignore"):
        want = case.D @ case.coef + case.intercept
        got = kernels.decision_function(case.X, case.coef, case.intercept)
    assert got.dtype == np.float64 and got.shape == want.shape
    np.testing.assert_array_equal(got, want)


def with_non_finite(case: Case, target: str, value: float, where: int):
    """case's (X, y, coef, intercept) with value at a position (where % size) of target; None if
    target has no entry to change."""
    X, y, coef, intercept = case.X, case.y, case.coef, case.intercept
    if target == "X":
        X = X.copy() if sp.issparse(X) else np.array(X)
        values = X.data if sp.issparse(X) else X.reshape(-1)
        if not values.size:
            return None
        values[where % values.size] = value
    elif target == "y":
        if not y.size:
            return None
        y = y.copy()
        y[where % y.size] = value
    elif target == "coef":
        coef = coef.copy()
        coef.reshape(-1)[where % coef.size] = value
    elif np.ndim(intercept):
        intercept = intercept.copy()
        intercept[where % intercept.size] = value
    else:
        intercept = value
    return X, y, coef, intercept


def hinge_case() -> Case:
    X = np.array([[1.0, -2.0], [0.5, 0.0]])
    return Case("hinge", "numba", X, np.array([1.0, -1.0]), np.array([0.25, 1.0]), 0.5, X)


@fuzz(250)
@given(case=cases(losses=SCALAR_LOSSES, shuffled=False) | cases(losses=["softmax"], shuffled=False),
       target=st.sampled_from(["X", "y", "coef", "intercept"]),
       value=st.sampled_from([np.nan, np.inf, -np.inf]), where=st.integers(0, 2**20))
@example(case=hinge_case(), target="X", value=np.nan, where=0)  # the reference's hinge said loss 0
def test_non_finite_input_is_never_hidden(case, target, value, where):
    """NaN and inf in X or y are the data layer's to reject (fastdp.validation.check_shard names
    the array); the kernels reject them only where y must be -1 or +1. Given them anyway, or NaN/inf
    in coef or intercept (a diverged model), a kernel never hides them: its loss sum is non-finite
    exactly when the reference's is, and where the reference is finite the result agrees."""
    if target == "y" and case.loss == "softmax":
        target = "intercept"  # integer labels hold no NaN
    changed = with_non_finite(case, target, value, where)
    if changed is None:
        return
    X, y, coef, intercept = changed
    if target in ("X", "y"):
        K = coef.shape[1] if case.loss == "softmax" else None
        assert re.match(rf"{target} contains (NaN|inf)", check_shard(X, y, case.loss, K)[2])
    validate = True
    if target == "y" and case.loss != "squared":
        with pytest.raises(ValueError, match=rf"y must be -1 or \+1 for loss '{case.loss}', got -?(nan|inf)"):
            kernels.loss_grad_sums(case.loss, X, y, coef, intercept, np.empty(case.size),
                                   backend=case.backend)
        validate = False
    out = np.empty(case.size)
    with np.errstate(all="ignore"):
        kernels.loss_grad_sums(case.loss, X, y, coef, intercept, out, backend=case.backend, validate=validate)
    want = reference(case.loss, X, y, coef, intercept)
    assert np.isfinite(out[-1]) == np.isfinite(want[-1]), (out[-1], want[-1])
    if np.isfinite(want).all():
        assert_agrees(out, want, row_terms(case.loss, X, y, coef, intercept), TOL[case.dtype], floor=1.0,
                      float32=case.dtype == np.float32)


@dataclass(frozen=True)
class Corruption:
    """One way to break a valid Case. make(case, rng) returns the arguments to replace (out and
    scratch: a function of the valid array), or None where the case has nothing to break."""
    argument: str  # the name the error message must contain
    make: object
    fmt: str | None = None  # only for "dense" or "csr" cases
    losses: tuple = tuple(LOSSES)
    content: bool = False  # found by validate=True only (validate=False may read out of bounds)
    decision_function: bool = False  # decision_function rejects it too


def _csr(case, **arrays):
    """A copy of case's CSR X with some of (data, indices, indptr) replaced."""
    X = case.X.copy()
    for name, value in arrays.items():
        setattr(X, name, value)
    return X


def _changed(a, i, value):
    a = np.array(a)
    a[i] = value
    return a


def _readonly(a):
    a = np.array(a)
    a.flags.writeable = False
    return a


def _bad_index(case, rng, value):
    """X with a random stored entry's column index set to value."""
    if not case.X.nnz:
        return None
    return {"X": _csr(case, indices=_changed(case.X.indices, rng.integers(case.X.nnz), value))}


def _indptr_drop(case, rng):
    """X with indptr[r] above indptr[r + 1] for an inner row boundary r."""
    m = case.X.shape[0]
    if m < 2:
        return None
    r = int(rng.integers(1, m))
    return {"X": _csr(case, indptr=_changed(case.X.indptr, r, case.X.indptr[r + 1] + 1))}


def _strided(case, rng):
    """X as a view that is not C-contiguous (two rows or more)."""
    m, n = case.X.shape
    if m < 2:
        return None
    wide = np.zeros((m, 2 * n), dtype=case.X.dtype)
    wide[:, ::2] = case.X
    return {"X": wide[:, ::2]}


def _unsorted(case, rng):
    """X with a row of two distinct columns or more reversed."""
    X = case.X
    for a, b in zip(X.indptr[:-1], X.indptr[1:]):
        if len(set(X.indices[a:b])) > 1:
            indices = np.concatenate([X.indices[:a], X.indices[a:b][::-1], X.indices[b:]])
            return {"X": _csr(case, indices=indices)}
    return None


def _y_not_pm1(case, rng):
    """y with a value other than -1 and +1 at a random row."""
    if not len(case.y):
        return None
    return {"y": _changed(case.y, rng.integers(len(case.y)), rng.choice([0, 2, 0.5, -3, np.nan, np.inf]))}


def _label(case, rng, value):
    """y (as int64) with value at a random row."""
    return {"y": _changed(case.y.astype(np.int64), rng.integers(len(case.y)), value)} if len(case.y) else None


def _pick(*choices):
    return lambda case, rng: choices[int(rng.integers(len(choices)))]


SOFTMAX, OTHERS, BINARY = ("softmax",), tuple(SCALAR_LOSSES), ("logistic", "hinge", "squared_hinge")
CORRUPTIONS = {
    "loss unknown": Corruption("loss", _pick({"loss": "cubic"}, {"loss": None})),
    "loss not a string": Corruption("loss", lambda c, r: {"loss": [c.loss]}),
    "backend unknown": Corruption("backend", _pick({"backend": "gpu"}, {"backend": None})),
    "X not C-contiguous": Corruption("X", _strided, fmt="dense"),
    "X int64": Corruption("X", lambda c, r: {"X": np.array(c.X, dtype=np.int64)}, fmt="dense"),
    "X float16": Corruption("X", lambda c, r: {"X": np.array(c.X, dtype=np.float16)}, fmt="dense"),
    "X complex": Corruption("X", lambda c, r: {"X": np.array(c.X, dtype=complex)}, fmt="dense",
                            decision_function=True),
    "X 1-D": Corruption("X", lambda c, r: {"X": np.ravel(c.D)}, decision_function=True),
    "X 3-D": Corruption("X", lambda c, r: {"X": c.D[:, :, None]}, decision_function=True),
    "X a list": Corruption("X", lambda c, r: {"X": c.D.tolist()}, decision_function=True),
    "X COO": Corruption("X", lambda c, r: {"X": sp.coo_array(c.D)}, decision_function=True),
    "X (CSR) index past the last column": Corruption(
        "X", lambda c, r: _bad_index(c, r, c.X.shape[1] + int(r.integers(1000))), fmt="csr", content=True,
        decision_function=True),
    "X (CSR) negative index": Corruption("X", lambda c, r: _bad_index(c, r, -int(r.integers(1, 1000))),
                                         fmt="csr", content=True, decision_function=True),
    "X (CSR) indptr decreases": Corruption("X", _indptr_drop, fmt="csr", content=True,
                                           decision_function=True),
    "X (CSR) indptr too short": Corruption("X", lambda c, r: {"X": _csr(c, indptr=c.X.indptr[:-1])},
                                           fmt="csr", decision_function=True),
    "X (CSR) indptr too long": Corruption(
        "X", lambda c, r: {"X": _csr(c, indptr=np.append(c.X.indptr, c.X.nnz))}, fmt="csr",
        decision_function=True),
    "X (CSR) indptr ends past nnz": Corruption(
        "X", lambda c, r: {"X": _csr(c, indptr=_changed(c.X.indptr, -1, c.X.nnz + 1))}, fmt="csr",
        decision_function=True),
    "X (CSR) indptr starts past 0": Corruption(
        "X", lambda c, r: {"X": _csr(c, indptr=_changed(c.X.indptr, 0, 1))}, fmt="csr",
        decision_function=True),
    "X (CSR) data shorter than indices": Corruption(
        "X", lambda c, r: {"X": _csr(c, data=c.X.data[:-1])} if c.X.nnz else None, fmt="csr",
        decision_function=True),
    "X (CSR) uint32 indices": Corruption(
        "X", lambda c, r: {"X": _csr(c, indices=c.X.indices.astype(np.uint32))}, fmt="csr",
        decision_function=True),
    "X (CSR) int64 data": Corruption("X", lambda c, r: {"X": _csr(c, data=c.X.data.astype(np.int64))},
                                     fmt="csr"),
    "X (CSR) indices out of order": Corruption("X", _unsorted, fmt="csr", content=True),
    "y too long": Corruption("y", lambda c, r: {"y": np.concatenate([c.y, np.zeros(1, c.y.dtype)])}),
    "y 2-D": Corruption("y", lambda c, r: {"y": c.y[:, None]}),
    "y complex": Corruption("y", lambda c, r: {"y": c.y.astype(complex)}),
    "y strings": Corruption("y", lambda c, r: {"y": c.y.astype(str)}),
    "y not -1 or +1": Corruption("y", _y_not_pm1, losses=BINARY, content=True),
    "label too large": Corruption("y", lambda c, r: _label(c, r, c.coef.shape[1] + int(r.integers(100))),
                                  losses=SOFTMAX, content=True),
    "label negative": Corruption("y", lambda c, r: _label(c, r, -int(r.integers(1, 100))), losses=SOFTMAX,
                                 content=True),
    "float labels": Corruption("y", lambda c, r: {"y": c.y.astype(np.float64)}, losses=SOFTMAX),
    "coef too long": Corruption("coef", lambda c, r: {"coef": np.concatenate([c.coef, c.coef[:1]])},
                                decision_function=True),
    "coef complex": Corruption("coef", lambda c, r: {"coef": c.coef.astype(complex)}, decision_function=True),
    "coef strings": Corruption("coef", lambda c, r: {"coef": c.coef.astype(str)}, decision_function=True),
    "coef None": Corruption("coef", lambda c, r: {"coef": None}, decision_function=True),
    "coef 1-D for softmax": Corruption("coef", lambda c, r: {"coef": c.coef[:, 0]}, losses=SOFTMAX),
    "coef one class": Corruption("coef", lambda c, r: {"coef": c.coef[:, :1]}, losses=SOFTMAX),
    "intercept an array": Corruption("intercept", lambda c, r: {"intercept": np.zeros(2)}, losses=OTHERS,
                                     decision_function=True),
    "intercept a number for softmax": Corruption("intercept", lambda c, r: {"intercept": 0.5},
                                                 losses=SOFTMAX),
    "intercept too long": Corruption("intercept", lambda c, r: {"intercept": np.append(c.intercept, 0.0)},
                                     losses=SOFTMAX, decision_function=True),
    "intercept complex": Corruption("intercept", lambda c, r: {"intercept": np.asarray(c.intercept) + 1j},
                                    decision_function=True),
    "intercept a string": Corruption(
        "intercept", lambda c, r: {"intercept": np.asarray(c.intercept).astype(str)}, decision_function=True),
    "intercept None": Corruption("intercept", lambda c, r: {"intercept": None}, decision_function=True),
    "out wrong shape": Corruption(
        "out", lambda c, r: {"out": lambda a: np.zeros(a.shape[:-1] + (a.shape[-1] + 1,))}),
    "out float32": Corruption("out", lambda c, r: {"out": lambda a: a.astype(np.float32)}),
    "out read-only": Corruption("out", lambda c, r: {"out": _readonly}),
    "out a list": Corruption("out", lambda c, r: {"out": lambda a: a.tolist()}),
    "scratch wrong shape": Corruption(
        "scratch", lambda c, r: {"scratch": lambda a: np.zeros((len(a) + 1, a.shape[1]))}),
    "scratch float32": Corruption("scratch", lambda c, r: {"scratch": lambda a: a.astype(np.float32)}),
    "scratch read-only": Corruption("scratch", lambda c, r: {"scratch": _readonly}),
    "scratch not C-contiguous": Corruption(  # (an empty array counts as contiguous)
        "scratch", lambda c, r: {"scratch": lambda a: np.zeros((len(a), 2 * a.shape[1]))[:, ::2]}
        if len(c.D) else None),
    "block_rows not an integer >= 1": Corruption(
        "block_rows", _pick(*({"block_rows": v} for v in (0, -1, 2.5, np.nan, np.inf, None, "3")))),
    "start after stop": Corruption("start", lambda c, r: {"start": c.X.shape[0] + 1}),
    "stop past the end": Corruption("stop", lambda c, r: {"stop": c.X.shape[0] + 1}),
    "start negative": Corruption("start", lambda c, r: {"start": -1}),
    "start not an integer": Corruption("start", _pick(*({"start": v} for v in (0.5, 1.0, None, "0")))),
}
ARRAY_ARGS = ("loss", "X", "y", "coef", "intercept")
API_ARGS = {"backend", "out", "scratch", "block_rows", "start", "stop"}


def attempts(case: Case, bad: dict, corruption: Corruption):
    """(what, call) for every API call that takes the corrupted argument: validate_input,
    loss_grad, loss_grad_sums and block_sums on each backend (validate=False too where the damage
    is found in O(1)), decision_function where it must reject it too."""
    args = [bad.get(name, value) for name, value in zip(ARRAY_ARGS, case.args)]
    api = set(bad) & API_ARGS
    m = case.X.shape[0]
    if not api:
        yield "validate_input", lambda: kernels.validate_input(*args)
    if corruption.decision_function:
        yield "decision_function", lambda: kernels.decision_function(*args[1:2], *args[3:])
    for backend in [bad["backend"]] if "backend" in bad else kernels.BACKENDS:
        if not api - {"backend"}:
            yield f"loss_grad {backend}", lambda b=backend: kernels.loss_grad(*args, backend=b)
        for validate in (True,) if corruption.content else (True, False):
            where = f"{backend} validate={validate}"
            if not api - {"backend", "out", "scratch"} and not ("scratch" in api and backend == "numpy"):
                out = bad.get("out", lambda a: a)(np.zeros(case.size))
                scratch = bad["scratch"](np.zeros(kernels.scratch_shape(case.loss, case.X, case.coef))) \
                    if "scratch" in api else None
                yield f"loss_grad_sums {where}", lambda b=backend, v=validate, o=out, s=scratch: \
                    kernels.loss_grad_sums(*args, o, backend=b, scratch=s, validate=v)
            if "scratch" not in api:
                out = bad.get("out", lambda a: a)(np.zeros((kernels.n_blocks(m, 2), case.size)))
                yield f"block_sums {where}", lambda b=backend, v=validate, o=out: kernels.block_sums(
                    *args, o, bad.get("block_rows", 2), start=bad.get("start", 0), stop=bad.get("stop", m),
                    backend=b, validate=v)


@pytest.mark.parametrize("name", CORRUPTIONS)
@fuzz(8)
@given(data=st.data())
def test_bad_input_is_an_error_naming_the_argument(name, data):
    """Each corruption of a valid input (wrong shape, dtype or container; labels out of range;
    CSR arrays that disagree or point outside X; bad out, scratch, block_rows, start, stop) gives
    every API call that takes the argument a ValueError or TypeError whose message names it.
    validate=False is tried only where the damage is found in O(1): the content checks are what
    keeps a kernel from reading out of bounds (decision_function makes them itself)."""
    corruption = CORRUPTIONS[name]
    case = data.draw(cases(losses=corruption.losses, formats=(corruption.fmt,) if corruption.fmt else
                           ("csr", "dense"), shuffled=False, min_rows=0), label="case")
    bad = corruption.make(case, np.random.default_rng(data.draw(st.integers(0, 2**32 - 1), label="seed")))
    if bad is None:
        return  # nothing to break in this case (no rows, no stored entries)
    for what, call in attempts(case, bad, corruption):
        with pytest.raises((ValueError, TypeError)) as info:
            call()
        assert re.search(rf"\b{corruption.argument}\b", str(info.value)), f"{what}: {info.value!r}"
