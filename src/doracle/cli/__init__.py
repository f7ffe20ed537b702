"""The ``doracle`` command line. Argument parsing only; the work happens in the package rooms.

Subcommand groups live in their own modules and register themselves on the parser. Heavy imports
(torch, timm) happen inside the handlers, so light commands (``solve-game``, the LP meta-solve and
pruning jobs) start fast.
"""

from __future__ import annotations

import argparse
import sys

from doracle import __version__
from doracle.errors import EXIT_PREEMPTED, DoracleError, Preempted


def build_parser() -> argparse.ArgumentParser:
    from doracle.cli import game, pipeline, sweep

    parser = argparse.ArgumentParser(
        prog="doracle",
        description="Double-oracle games (adversarial training, GANs), reproducible from a laptop to a SLURM cluster.",
    )
    parser.add_argument("--version", action="version", version=f"doracle {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    game.register(sub)
    pipeline.register(sub)
    sweep.register(sub)

    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        rc = args.handler(args)
    except Preempted as exc:
        print(f"doracle: preempted: {exc}", file=sys.stderr)
        return EXIT_PREEMPTED
    except DoracleError as exc:
        print(f"doracle: error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:  # a file named on the command line that cannot be read or written
        if exc.filename is None:
            raise
        print(f"doracle: error: {exc.filename}: {exc.strerror or exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("doracle: interrupted", file=sys.stderr)
        return 130
    return int(rc or 0)
