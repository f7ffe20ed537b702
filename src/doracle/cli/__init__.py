"""The ``doracle`` command line. Argument parsing only; the work happens in the package rooms.

Subcommand groups live in their own modules and register themselves on the parser. Heavy imports
(torch, timm) happen inside the handlers, so light commands (``solve-game``, the LP meta-solve and
pruning jobs) start fast.
"""

from __future__ import annotations

import argparse
import errno
import sys

from doracle import __version__, provenance
from doracle.cli import game, pipeline, sweep
from doracle.errors import EXIT_PREEMPTED, DoracleError, Preempted, leave, say_error


def build_parser() -> argparse.ArgumentParser:
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


def main(argv: list[str] | None = None, *, extra: dict | None = None) -> int:
    """Run one command; exit code 2 (no traceback) for bad input. ``extra``: attributes set on the
    parsed arguments, for callers in Python (a sweep's trial ``pipeline``: Worker)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    for k, v in (extra or {}).items():
        setattr(args, k, v)
    try:
        rc = args.handler(args)
    except Preempted as exc:
        say_error(exc, "preempted")
        return EXIT_PREEMPTED
    except DoracleError as exc:
        say_error(exc)
        return 2
    except KeyboardInterrupt:
        print("doracle: interrupted", file=sys.stderr)
        return 130
    except OSError as exc:
        if exc.errno in _WRITE_ERRNOS:
            # a full disk or a read-only results folder: writes are atomic (a temp file renamed into
            # place), so the files already there are intact and the temp file is gone
            where = exc.filename or "a results file"
            if exc.errno in (errno.EACCES, errno.EPERM):
                say_error(f"cannot access {where}: {exc.strerror} (another user's files, or a "
                          "folder without write permission?); nothing was half-written")
            else:
                say_error(f"cannot write {where}: {exc.strerror} (full disk, quota, or a read-only "
                          "results folder?); nothing was half-written: free space or remount, then rerun")
            return 2
        if exc.filename is None:
            raise
        # a file named on the command line that cannot be read
        say_error(f"{exc.filename}: {exc.strerror or exc}")
        return 2
    finally:

        provenance.log_modules(argv if argv is not None else sys.argv[1:])
    return int(rc or 0)


def run() -> None:
    """The ``doracle`` console script (and ``python -m doracle``): :func:`main`, then the exit. A
    command that imported torch (every network job) leaves without the interpreter's teardown, which
    frees torch's modules one by one (:func:`doracle.errors.leave`, as a forked job and a
    forwarded command do)."""
    rc = main()
    if "torch" in sys.modules:
        leave(rc)
    sys.exit(rc)


_WRITE_ERRNOS = {errno.ENOSPC, errno.EROFS, errno.EACCES, errno.EPERM, errno.EDQUOT, errno.EFBIG}
