"""Deterministic mode (fastdp.deterministic, fit(..., deterministic=True)), on one process: the
tree's structure, its independence of the partition (ranks played in turn), the per-block kernel
sums, and fits that equal the normal ones up to rounding, bitwise the same run after run and
whatever the thread count. tests/test_deterministic_mpi.py runs it on 1 to 4 ranks."""

import numba
import numpy as np
import pytest
import scipy.sparse as sp

from fastdp import deterministic as det
from fastdp import kernels, synthetic
from fastdp.train import fit

# -- the tree ------------------------------------------------------------------------------------


def span(level, k, leaves):
    return det.node_span(level, k, leaves)


def maximal_nodes(lo, hi, leaves):
    """Brute force: the nodes within lo..hi whose parent is not (or that are at the top)."""
    top = det.top_level(leaves)
    found = []
    for level in range(top + 1):
        for k in range(-(-leaves // (1 << level))):
            a, b = span(level, k, leaves)
            if not (lo <= a and b <= hi and a < b):
                continue
            pa, pb = span(level + 1, k >> 1, leaves)
            if level == top or not (lo <= pa and pb <= hi):
                found.append((level, k))
    return sorted(found, key=lambda node: span(*node, leaves)[0])


def pairwise(vals, level, k, leaves):
    """The tree's definition, recursively: node = left + right (or its only child)."""
    if level == 0:
        return vals[k].copy()
    left = pairwise(vals, level - 1, 2 * k, leaves)
    if (2 * k + 1) << (level - 1) >= leaves:
        return left
    return left + pairwise(vals, level - 1, 2 * k + 1, leaves)


@pytest.mark.parametrize("leaves", [1, 2, 3, 5, 8, 13, 17])
def test_cover_is_the_maximal_nodes_and_tiles_the_range(leaves):
    for lo in range(leaves + 1):
        for hi in range(lo, leaves + 1):
            nodes = det.cover(lo, hi, leaves)
            assert nodes == maximal_nodes(lo, hi, leaves)
            covered = [leaf for node in nodes for leaf in range(*span(*node, leaves))]
            assert covered == list(range(lo, hi))
            assert len(nodes) <= 2 * det.top_level(leaves) + 1


def test_aligned_partitions():
    G = det.BLOCK_ROWS
    parts = det.aligned_partition(5 * G + 7, 3)
    assert [(p.start, p.stop) for p in parts] == [(0, 2 * G), (2 * G, 4 * G), (4 * G, 5 * G + 7)]
    assert det.is_aligned(parts)
    assert [len(p) for p in det.aligned_partition(G + 1, 4)] == [G, 1, 0, 0]
    assert det.is_aligned(det.aligned_partition(G + 1, 4))
    assert not det.is_aligned([range(0, 10), range(10, 2 * G)])
    moved = det.align([range(0, G + 100), range(G + 100, 3 * G - 5), range(3 * G - 5, 3 * G + 9)])
    assert [(p.start, p.stop) for p in moved] == [(0, G), (G, 3 * G), (3 * G, 3 * G + 9)]
    assert det.align([range(0, 3), range(3, 3), range(3, 10)]) == [range(0, 0), range(0, 0),
                                                                   range(0, 10)]


@pytest.mark.parametrize("leaves", [1, 2, 5, 11, 16])
def test_reduce_tree_adds_the_cover_nodes_as_the_tree_defines_them(leaves):
    rng = np.random.default_rng(leaves)
    vals = rng.standard_normal((leaves, 3)) * 10.0 ** rng.integers(-8, 9, (leaves, 3))
    for lo in range(leaves):
        for hi in range(lo + 1, leaves + 1):
            levels, ks, got = det.reduce_tree(np.zeros(hi - lo, dtype=np.int64), np.arange(lo, hi),
                                              vals[lo:hi].copy(), leaves, lo, hi,
                                              det.top_level(leaves))
            assert list(zip(levels.tolist(), ks.tolist())) == det.cover(lo, hi, leaves)
            for (level, k), value in zip(det.cover(lo, hi, leaves), got):
                assert np.array_equal(value, pairwise(vals, level, k, leaves))


class PlayedComm:
    """Plays rank `rank` of `size`: gather_rows returns what every rank sends (`gathered`)."""

    def __init__(self, rank, size, gathered=None):
        self.rank, self.size, self.gathered = rank, size, gathered

    def gather_rows(self, local, counts, root=None):
        assert root is None and len(local) == counts[self.rank] and len(counts) == self.size
        start = sum(counts[:self.rank])
        assert np.array_equal(self.gathered[start:start + len(local)], local)
        return self.gathered


def played_step(ranges, leaf_vals, n_rows, block_rows, members=None, scratch_bytes=det.SCRATCH_BYTES):
    """A step on len(ranges) played ranks: every rank's part (a kernel that hands out leaf_vals
    rows), then the reduction on every rank; returns the total, checking all ranks agree."""
    width = leaf_vals.shape[1]
    parts = []
    for r, rows in enumerate(ranges):
        tree = det.TreeSum(PlayedComm(r, len(ranges)), n_rows, width, block_rows, scratch_bytes)
        if members is None:
            lo = rows.start // block_rows

            def kernel(out, G, first, stop, lo=lo):
                assert G == block_rows and first % G == 0
                out[:] = leaf_vals[lo + first // G: lo + -(-stop // G)]

            parts.append(tree.full_batch(kernel, ranges))
        else:
            lo = int(np.searchsorted(members, rows.start))

            def kernel(out, G, first, stop, lo=lo):
                assert G == 1
                out[:] = leaf_vals[lo + first: lo + stop]

            parts.append(tree.mini_batch(kernel, ranges, members))
    gathered = np.concatenate([np.vstack([p.nodes, [[float(r == 0)] + [0.0] * (width - 1)]])
                               for r, p in enumerate(parts)])
    totals = []
    for r, part in enumerate(parts):
        tree = det.TreeSum(PlayedComm(r, len(ranges), gathered), n_rows, width, block_rows)
        total, signals = tree.reduce(part, float(r == 0))
        assert signals == 1.0
        totals.append(total)
    for total in totals:
        assert np.array_equal(total, totals[0])
    return totals[0]


def random_ranges(n_rows, size, rng, block_rows=1):
    """A contiguous partition of n_rows rows into `size` parts, cuts on multiples of block_rows."""
    cuts = np.sort(rng.integers(0, -(-n_rows // block_rows) + 1, size - 1)) * block_rows
    bounds = [0, *np.minimum(cuts, n_rows).tolist(), n_rows]
    return [range(a, b) for a, b in zip(bounds[:-1], bounds[1:])]


@pytest.mark.parametrize("n_leaves", [1, 2, 5, 11, 16, 33])
def test_full_batch_tree_is_the_same_bits_for_every_aligned_partition(n_leaves):
    rng = np.random.default_rng(n_leaves)
    # values of wildly different magnitudes, so that another order of additions shows
    leaf_vals = rng.standard_normal((n_leaves, 3)) * 10.0 ** rng.integers(-8, 9, (n_leaves, 3))
    block_rows = 4
    n_rows = n_leaves * block_rows - 1
    expected = pairwise(leaf_vals, det.top_level(n_leaves), 0, n_leaves)
    for size in (1, 2, 3, 4, 7):
        partitions = [det.aligned_partition(n_rows, size, block_rows)]
        partitions += [random_ranges(n_rows, size, rng, block_rows) for _ in range(3)]
        for ranges in partitions:
            assert np.array_equal(played_step(ranges, leaf_vals, n_rows, block_rows), expected)
            # the same with subtrees computed one half after the other (a small scratch bound)
            assert np.array_equal(played_step(ranges, leaf_vals, n_rows, block_rows,
                                              scratch_bytes=8 * 3 * 2), expected)


def test_full_batch_tree_refuses_an_unaligned_partition():
    tree = det.TreeSum(PlayedComm(0, 2), 20, 3, 4)
    with pytest.raises(ValueError, match="partition on multiples of 4 rows"):
        tree.full_batch(lambda *args: None, [range(0, 6), range(6, 20)])


@pytest.mark.parametrize("batch", [1, 7, 100])
def test_mini_batch_tree_is_the_same_bits_for_every_partition(batch):
    rng = np.random.default_rng(batch)
    n_rows = 1000
    members = np.sort(rng.permutation(n_rows)[:batch])
    leaf_vals = rng.standard_normal((batch, 2)) * 10.0 ** rng.integers(-8, 9, (batch, 2))
    expected = pairwise(leaf_vals, det.top_level(batch), 0, batch)
    for size in (1, 2, 3, 5):
        for _ in range(3):
            ranges = random_ranges(n_rows, size, rng)
            assert np.array_equal(played_step(ranges, leaf_vals, n_rows, 4096, members), expected)


# -- the kernels' per-block sums ---------------------------------------------------------------------

def problems():
    X, y = synthetic.linear_regression(10_000, 6, seed=9)
    labels = np.where(y > 3.0, 1.0, -1.0)
    Xs = sp.csr_matrix(np.where(np.abs(X) > 0.7, X, 0.0))
    classes = (np.digitize(y, [1.0, 3.0, 5.0])).astype(np.int64)
    coef = np.linspace(-0.3, 0.4, 6)
    coef_k = np.linspace(-0.2, 0.3, 24).reshape(6, 4)
    return [("squared", X, y, coef, 0.2), ("logistic", Xs, labels, coef, -0.1),
            ("softmax", X, classes, coef_k, np.zeros(4)), ("softmax", Xs, classes, coef_k, np.ones(4)),
            ("hinge", X.astype(np.float32), labels.astype(np.float32), coef, 0.0)]


@pytest.mark.parametrize("backend", kernels.BACKENDS)
def test_block_sums_are_the_blocks_of_loss_grad_sums(backend):
    for loss, X, y, coef, intercept in problems():
        width = kernels.out_size(loss, coef)
        G = 4096
        out = np.empty((kernels.n_blocks(X.shape[0], G), width))
        kernels.block_sums(loss, X, y, coef, intercept, out, G, backend=backend)
        for b in range(out.shape[0]):
            one = np.empty(width)
            kernels.loss_grad_sums(loss, X[b * G:(b + 1) * G], y[b * G:(b + 1) * G], coef,
                                   intercept, one, backend=backend)
            np.testing.assert_allclose(out[b], one, rtol=1e-5 if X.dtype == np.float32 else 1e-12,
                                       atol=1e-9)
        # a block's row does not depend on the rows around it: start on block 1, or stop early
        later = np.empty((out.shape[0] - 1, width))
        kernels.block_sums(loss, X, y, coef, intercept, later, G, start=G, backend=backend)
        assert np.array_equal(later, out[1:])
        first = np.empty((1, width))
        kernels.block_sums(loss, X, y, coef, intercept, first, G, stop=G, backend=backend)
        assert np.array_equal(first[0], out[0])
        rows = np.empty((5, width))  # per-row sums (what a mini-batch step adds up)
        kernels.block_sums(loss, X, y, coef, intercept, rows, 1, start=7, stop=12, backend=backend)
        for i in range(5):
            one = np.empty((1, width))
            kernels.block_sums(loss, X, y, coef, intercept, one, 1, start=7 + i, stop=8 + i,
                               backend=backend)
            assert np.array_equal(one[0], rows[i])


@pytest.mark.parametrize("backend", ["numba", "cython"])
def test_block_sums_do_not_depend_on_where_the_rows_lie_in_memory(backend):
    """A rank's rows are its own copy (moved by MPI, gathered into a batch): the bits of a
    block must not depend on the address of its rows (vectorized loops peeled for alignment
    would make them)."""
    for loss, X, y, coef, intercept in problems():
        if sp.issparse(X):
            continue
        width = kernels.out_size(loss, coef)
        expected = np.empty((3, width))
        kernels.block_sums(loss, X, y, coef, intercept, expected, 4096, backend=backend)
        for shift in range(1, 8):
            raw = np.empty(X.nbytes + 128, dtype=np.uint8)
            offset = (-raw.ctypes.data) % 64 + shift * X.itemsize
            moved = raw[offset:offset + X.nbytes].view(X.dtype).reshape(X.shape)
            moved[:] = X
            got = np.empty_like(expected)
            kernels.block_sums(loss, moved, y, coef, intercept, got, 4096, backend=backend)
            assert np.array_equal(got, expected), (loss, X.dtype, shift)


def test_block_sums_checks_its_arguments():
    loss, X, y, coef, intercept = problems()[0]
    with pytest.raises(ValueError, match="out must be C-contiguous float64 of shape"):
        kernels.block_sums(loss, X, y, coef, intercept, np.empty((2, 8)), 4096)
    with pytest.raises(ValueError, match="not within X's"):
        kernels.block_sums(loss, X, y, coef, intercept, np.empty((1, 8)), 4096, start=5, stop=3)
    with pytest.raises(ValueError, match="block_rows must be an integer >= 1"):
        kernels.block_sums(loss, X, y, coef, intercept, np.empty((1, 8)), 0)


def with_threads(n, fn):
    """fn() with n threads for both compiled backends, restored afterwards."""
    before = kernels.get_num_threads()
    numba.set_num_threads(n)
    kernels.set_cython_threads(n)
    try:
        return fn()
    finally:
        numba.set_num_threads(before["numba"])
        kernels.set_cython_threads(before["cython"])


needs_two_threads = pytest.mark.skipif(numba.config.NUMBA_NUM_THREADS < 2,
                                       reason="Numba was started with a single thread")


@needs_two_threads
@pytest.mark.parametrize("backend", ["numba", "cython"])
def test_block_sums_do_not_depend_on_the_thread_count(backend):
    for loss, X, y, coef, intercept in problems():
        out = np.empty((kernels.n_blocks(X.shape[0], 4096), kernels.out_size(loss, coef)))

        def run():
            kernels.block_sums(loss, X, y, coef, intercept, out, 4096, backend=backend)
            return out.copy()

        assert np.array_equal(with_threads(1, run), with_threads(2, run))


# -- fits ----------------------------------------------------------------------------------------------

X_DENSE, Y_DENSE = synthetic.linear_regression(20_000, 8, seed=5)
LABELS = np.where(Y_DENSE > np.median(Y_DENSE), 1.0, -1.0)
X_CSR = sp.csr_matrix(np.where(np.abs(X_DENSE) > 0.8, X_DENSE, 0.0))
CLASSES = np.digitize(Y_DENSE, [1.0, 3.0, 5.0]).astype(np.int64)
CASES = {
    "gd": (X_DENSE, Y_DENSE, dict(solver="gd", max_iter=40, learning_rate=0.3)),
    "gd-momentum-l1": (X_DENSE, Y_DENSE, dict(solver="gd", max_iter=20, momentum=0.9, alpha=0.01,
                                              l1_ratio=0.5)),
    "csr-logistic": (X_CSR, LABELS, dict(loss="logistic", solver="gd", max_iter=30)),
    "softmax": (X_DENSE, CLASSES, dict(loss="softmax", n_classes=4, solver="gd", max_iter=20)),
    "sgd": (X_DENSE, Y_DENSE, dict(solver="sgd", batch_size=100, max_iter=2, learning_rate=0.05,
                                   tol=0)),
    "csr-adam": (X_CSR, LABELS, dict(loss="logistic", solver="adam", batch_size=300, max_iter=2,
                                     learning_rate=0.01, tol=0)),
    "lbfgs": (X_DENSE, LABELS, dict(loss="logistic", solver="lbfgs", max_iter=30)),
}


def theta(result):
    return np.append(result.coef, result.intercept)


@pytest.mark.parametrize("backend", kernels.BACKENDS)
@pytest.mark.parametrize("case", sorted(CASES))
def test_deterministic_fit_equals_normal_fit_and_repeats_bitwise(case, backend):
    X, y, kwargs = CASES[case]
    normal = fit(X, y, backend=backend, **kwargs)
    first = fit(X, y, backend=backend, deterministic=True, **kwargs)
    again = fit(X, y, backend=backend, deterministic=True, **kwargs)
    np.testing.assert_allclose(theta(first), theta(normal), rtol=0, atol=1e-12)
    assert np.array_equal(theta(first), theta(again))
    assert np.array_equal(first.loss_history, again.loss_history)
    assert first.n_iter == normal.n_iter
    np.testing.assert_allclose(first.loss_history, normal.loss_history, rtol=1e-12)


@needs_two_threads
@pytest.mark.parametrize("backend", ["numba", "cython"])
@pytest.mark.parametrize("case", ["gd", "csr-logistic", "sgd", "softmax"])
def test_deterministic_fit_does_not_depend_on_the_thread_count(case, backend, monkeypatch):
    X, y, kwargs = CASES[case]
    monkeypatch.setenv("NUMBA_NUM_THREADS", "2")  # fit keeps the threads set here
    monkeypatch.setenv("OMP_NUM_THREADS", "2")
    one = with_threads(1, lambda: fit(X, y, backend=backend, deterministic=True, **kwargs))
    two = with_threads(2, lambda: fit(X, y, backend=backend, deterministic=True, **kwargs))
    assert one.threads[backend] == 1 and two.threads[backend] == 2
    assert np.array_equal(theta(one), theta(two))


def test_deterministic_mode_refuses_overlap_and_non_booleans():
    with pytest.raises(ValueError, match=r"deterministic=True and overlap=True .* overlap=False"):
        fit(X_DENSE, Y_DENSE, solver="sgd", deterministic=True, overlap=True)
    with pytest.raises(ValueError, match="deterministic must be True or False, got 'yes'"):
        fit(X_DENSE, Y_DENSE, deterministic="yes")


def test_deterministic_run_resumes_bitwise(tmp_path):
    X, y, kwargs = CASES["sgd"]
    path = tmp_path / "ckpt"
    whole = fit(X, y, deterministic=True, **kwargs)

    def crash(t, theta, objective):
        if t == 250:
            raise RuntimeError("killed")

    with pytest.raises(RuntimeError, match="killed"):
        fit(X, y, deterministic=True, checkpoint=path, checkpoint_every=100, callback=crash, **kwargs)
    resumed = fit(X, y, deterministic=True, resume=path, **kwargs)
    assert np.array_equal(theta(resumed), theta(whole))
    assert np.array_equal(resumed.loss_history, whole.loss_history)


def test_deterministic_report_shows_the_aligned_partition():
    result = fit(X_DENSE, Y_DENSE, solver="gd", max_iter=2, deterministic=True)
    assert result.report["partition"] == [[0, 20_000]]
    assert result.report["evaluations"] == 3
