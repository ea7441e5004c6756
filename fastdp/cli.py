"""The `fastdp` command."""

from __future__ import annotations

import argparse
import sys

from . import kernels
from .demo import DemoConfig, run


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="fastdp", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    demo = sub.add_parser("demo", help="linear regression, serial vs data-parallel on MPI ranks")
    defaults = DemoConfig()
    demo.add_argument("--rows", type=_positive_int, default=defaults.rows)
    demo.add_argument("--features", type=_positive_int, default=defaults.features)
    demo.add_argument("--ranks", type=_positive_int, default=defaults.ranks,
                      help="ranks to launch with mpiexec (ignored when already under mpiexec)")
    demo.add_argument("--backend", choices=[b for b in kernels.BACKENDS], default=defaults.backend)
    demo.add_argument("--seed", type=int, default=defaults.seed)
    demo.add_argument("--learning-rate", type=float, default=defaults.learning_rate)
    demo.add_argument("--max-iter", type=_positive_int, default=defaults.max_iter)
    demo.add_argument("--tol", type=float, default=defaults.tol)
    demo.add_argument("--report", help=argparse.SUPPRESS)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `fastdp` console script."""
    args = vars(_parser().parse_args(argv))
    args.pop("command")
    report = args.pop("report")
    return run(DemoConfig(**args), report_path=report)


if __name__ == "__main__":
    sys.exit(main())
