"""Exceptions with messages meant for users (the CLI turns them into exit code 2), the exit codes,
and how a doracle process leaves (:func:`leave`). Standard library only: the console script's
entry point (doracle.forkserver) imports it."""


import atexit
import os
import re
import sys

#: C0 and C1 control characters but newline and tab (ESC starts a terminal's escape sequences)
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def printable(text: object) -> str:
    """``text`` with its control characters written as ``\\xNN``: a message that echoes a key, a
    value or a path taken from input never drives the terminal it is printed on (a YAML key
    ``"a\\x1b[2J"`` would clear the screen)."""
    return _CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}", str(text))


def say_error(message: object, kind: str = "error") -> None:
    """Print ``doracle: <kind>: message`` on stderr, control characters escaped (:func:`printable`)."""

    print(f"doracle: {kind}: {printable(message)}", file=sys.stderr)


class DoracleError(Exception):
    """Base class for every error doracle reports to a user (bad input, bad params, ...)."""


class ConfigError(DoracleError):
    """params.yaml (or a CLI option) is invalid; the message names the key."""


class ArtifactError(DoracleError):
    """An artifact is missing, corrupt, or does not match its recorded hash."""


class SolverError(DoracleError):
    """A meta-solver failed or did not report optimality."""


class TrainingDiverged(DoracleError):
    """A training loss became NaN or infinite (learning rate too high, bf16 overflow, ...)."""


#: exit status of a job that saved its state after SIGTERM / SIGUSR1 (EX_TEMPFAIL: "try again")
EXIT_PREEMPTED = 75


class Preempted(DoracleError):
    """A job stopped on a signal after saving its state; rerunning it resumes where it stopped."""


def did_you_mean(name: object, valid) -> str:
    """``"did you mean 'x'? "`` for the valid name closest to ``name`` (difflib), or ``""``: the one
    hint every "unknown name" message shares (registry names, params keys, choices)."""

    import difflib  # only for a message

    close = difflib.get_close_matches(str(name), [str(v) for v in valid], n=1, cutoff=0.6)
    return f"did you mean {close[0]!r}? " if close else ""


def unknown_name(kind: str, name: object, valid) -> str:
    """``unknown <kind> 'name'; did you mean 'x'? valid names: a, b``"""
    valid = list(valid)
    return f"unknown {kind} {name!r}; {did_you_mean(name, valid)}valid names: {', '.join(map(str, valid))}"


def leave(rc: int):
    """Exit now without the interpreter's teardown, which frees torch's modules one by one (0.3-0.5 s
    a job, docs/performance.md): the exit handlers (logging's, coverage.py's) run first and the
    standard streams are flushed. A job's files are written, closed and renamed into place by then.
    The one fast exit: a torch job's (``doracle.cli.run``), a forked job's and its command's."""
    try:
        atexit._run_exitfuncs()
    finally:
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except Exception:  # noqa: BLE001 - a closed or broken stream must not stop the exit
                pass
        os._exit(rc)
