"""Exit codes of ``qomon-async import`` and ``qomon-async demo``."""

from __future__ import annotations

import enum

__all__ = [
    "EXIT_FATAL",
    "EXIT_OK",
    "EXIT_ROW_FAILURES",
    "EXIT_USAGE",
    "ExitCode",
    "exit_code_for",
]


class ExitCode(enum.IntEnum):
    """The process exit status (an ``int``: ``sys.exit(ExitCode.OK)`` works)."""

    OK = 0
    """Every row was created or repeats an earlier row (or, for ``--dry-run``, is valid)."""
    ROW_FAILURES = 1
    """The run went through, but some rows failed, are unknown, or were not sent."""
    USAGE = 2
    """Bad usage or input: arguments, input file, mapping file, journal; nothing was sent
    after the problem was found."""
    FATAL = 3
    """The run was stopped by a fatal error (authentication or permission refused)."""


EXIT_OK = ExitCode.OK
EXIT_ROW_FAILURES = ExitCode.ROW_FAILURES
EXIT_USAGE = ExitCode.USAGE
EXIT_FATAL = ExitCode.FATAL


def exit_code_for(*, failed: int, unknown: int, skipped: int = 0, fatal: bool = False) -> ExitCode:
    """The exit code of a finished run from its counts: ``FATAL`` if the run was stopped by a
    fatal error, else ``ROW_FAILURES`` if any row is failed, unknown or skipped, else ``OK``.

    Rows skipped because an earlier run already created them (resume) are not "skipped" here:
    count them as created; nor are duplicates of an earlier row of the input.
    """
    if fatal:
        return ExitCode.FATAL
    if failed or unknown or skipped:
        return ExitCode.ROW_FAILURES
    return ExitCode.OK
