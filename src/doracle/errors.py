"""Exceptions with messages meant for users. The CLI turns them into exit code 2."""


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
