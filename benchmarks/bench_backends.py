"""Numba against Cython on dense and CSR data, across widths, dtypes and losses: the evidence
behind fastdp.kernels.pick_backend, which the default backend ("auto") follows.

    python benchmarks/bench_backends.py [--features 1,3,8,17,100,300] [--mib 256]
                                        [--csr-features 4096,65536,262144,1048576]
                                        [--csr-rows 200000] [--rounds 7]
                                        [--losses squared,logistic,hinge,softmax] [--classes 5]

Dense: for each width n, X is a dense (m, n) array of about --mib MiB in float64 (m = rows that
fill it; the float32 array has the same rows); softmax runs once for each class count of
--classes. CSR (squared and logistic, where --losses has them): for each width n, --csr-rows
rows of hashed text (fastdp.bench.cases.hashed_text: about 100 non-zeros a row), float64, read
as a full-batch fit reads it: through kernels.tile_csr's copy when kernels.tiles_pay_off says so
("copy" column), else by the plain CSR kernel. Each loss's loss_grad_sums is timed on both
compiled backends in interleaved rounds (fastdp.bench.timing.interleaved_best). Printed per
case: the best round of each backend, numba / cython (above 1: Cython is faster) and what
"auto" picks. Both backends' sums are checked against each other first (float64: 1e-9
relative, float32: 1e-4).
"""

import argparse

import numpy as np

from fastdp import kernels
from fastdp.bench.cases import hashed_text
from fastdp.bench.timing import interleaved_best

LOSSES = ("squared", "logistic", "hinge", "softmax")
CSR_LOSSES = ("squared", "logistic")


def int_list(text: str) -> list[int]:
    return [int(v) for v in text.split(",")]


def problem(loss: str, K: int, m: int, n: int, dtype, rng: np.random.Generator):
    """(X, y, coef, intercept, out) for loss_grad_sums."""
    X = rng.standard_normal((m, n)).astype(dtype)
    if K > 1:
        return (X, rng.integers(0, K, m), rng.standard_normal((n, K)) * 0.1, np.zeros(K),
                np.empty(n * K + K + 1))
    y = X @ rng.standard_normal(n) if loss == "squared" else np.where(rng.random(m) < 0.5, -1.0, 1.0)
    return X, y.astype(dtype), rng.standard_normal(n) * 0.1, 0.1, np.empty(n + 2)


def compare(label: str, loss: str, X, y, coef, intercept, out: np.ndarray, rounds: int,
            tiles=None) -> None:
    """Check both backends against each other, time them interleaved and print one line."""
    def run(backend: str, into: np.ndarray, validate: bool = True) -> np.ndarray:
        return kernels.loss_grad_sums(loss, X, y, coef, intercept, into, backend=backend,
                                      validate=validate, tiles=tiles)

    sums = {b: run(b, out.copy()) for b in ("numba", "cython")}
    dtype = X.dtype
    tol = 1e-9 if dtype == np.float64 else 1e-4
    scale = max(1.0, float(np.abs(sums["cython"]).max()))
    if not np.allclose(sums["numba"], sums["cython"], rtol=0, atol=tol * scale):
        raise SystemExit(f"{label} {loss} {np.dtype(dtype).name}: the backends disagree")
    best = interleaved_best({b: (lambda b=b: run(b, out, validate=False))
                             for b in ("numba", "cython")}, rounds)
    name = f"{loss}/{coef.shape[1]}" if coef.ndim == 2 else loss  # softmax/K
    print(f"{label} {np.dtype(dtype).name:>8} {name:>10} {best['numba'] * 1e3:>9.2f} "
          f"{best['cython'] * 1e3:>10.2f} {best['numba'] / best['cython']:>13.2f} "
          f"{kernels.pick_backend(loss, X):>7}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--features", type=int_list, default=[1, 3, 8, 17, 100, 300])
    parser.add_argument("--mib", type=float, default=256.0)
    parser.add_argument("--csr-features", type=int_list, default=[2**12, 2**16, 2**18, 2**20])
    parser.add_argument("--csr-rows", type=int, default=200_000)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--losses", type=lambda text: text.split(","), default=list(LOSSES))
    parser.add_argument("--classes", type=int_list, default=[5], help="softmax's class counts")
    args = parser.parse_args()
    unknown = sorted(set(args.losses) - set(LOSSES))
    if unknown:
        parser.error(f"--losses must be among {', '.join(LOSSES)}, got {', '.join(unknown)}")
    if min(args.classes) < 2:
        parser.error(f"--classes must be >= 2, got {args.classes}")
    cases = [(loss, K) for loss in args.losses
             for K in (args.classes if loss == "softmax" else [1])]
    rng = np.random.default_rng(0)
    print(f"{'X':>5} {'n':>8} {'rows':>9} {'copy':>5} {'dtype':>8} {'loss':>10} {'numba ms':>9} "
          f"{'cython ms':>10} {'numba/cython':>13} {'auto':>7}")
    for n in args.features:
        m = max(1, int(args.mib * 2**20 / (8 * n)))
        for dtype in (np.float64, np.float32):
            for loss, K in cases:
                compare(f"{'dense':>5} {n:>8} {m:>9} {'':>5}", loss,
                        *problem(loss, K, m, n, dtype, rng), args.rounds)
    csr_losses = [loss for loss in CSR_LOSSES if loss in args.losses]
    for n in args.csr_features if csr_losses else []:
        X = hashed_text(args.csr_rows, n, rng)
        for loss in csr_losses:
            y = np.where(rng.random(X.shape[0]) < 0.5, -1.0, 1.0)
            copy = kernels.tiles_pay_off(loss, X)
            compare(f"{'csr':>5} {n:>8} {X.shape[0]:>9} {'yes' if copy else 'no':>5}", loss, X, y,
                    rng.standard_normal(n) * 0.1, 0.1, np.empty(n + 2), args.rounds,
                    kernels.tile_csr(X) if copy else None)


if __name__ == "__main__":
    main()
