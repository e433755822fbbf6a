"""Exit codes and the one exception family for mistakes a user can make."""

from __future__ import annotations

from enum import IntEnum


class ExitCode(IntEnum):
    """What `lossctl` returns to the shell."""

    OK = 0
    """Every check that ran passed (skipped checks do not count against it)."""
    CHECK_FAILED = 1
    """At least one check failed or raised an error in the user's code."""
    USAGE = 2
    """Nothing could run: bad arguments, an invalid spec, an unavailable device, or no
    Function could be loaded."""
    INTERNAL = 3
    """lossctl itself broke (a bug to report): the traceback is printed."""
    INTERRUPTED = 130
    """Ctrl-C: the cases that finished were reported."""


class LossctlError(Exception):
    """A fatal misuse: the CLI prints `message` (and `hint`) and exits with `exit_code`."""

    exit_code: ExitCode = ExitCode.USAGE

    def __init__(self, message: str, *, hint: str | None = None, details: str | None = None):
        super().__init__(message)
        self.message = message
        self.hint = hint
        self.details = details
        """Extra text shown under the message, e.g. the user's own traceback."""

    def __str__(self) -> str:
        return self.message if self.hint is None else f"{self.message}\n{self.hint}"


class SpecError(LossctlError):
    """A spec file that cannot be read or does not follow the spec format."""

    def __init__(
        self,
        message: str,
        *,
        source: str | None = None,
        key: str | None = None,
        line: int | None = None,
        hint: str | None = None,
    ):
        where = source or "<spec>"
        if line is not None:
            where = f"{where}:{line}"
        prefix = f"{where}: {key}: " if key else f"{where}: "
        super().__init__(prefix + message, hint=hint)
        self.source = source
        self.key = key
        self.line = line


class LoadError(LossctlError):
    """A TARGET that cannot be imported, found, or called."""


class BindError(LossctlError):
    """Spec arguments that do not fit the Function's forward signature."""


class DeviceError(LossctlError):
    """A device that does not exist or is not available here."""


class UsageError(LossctlError):
    """Command-line arguments that make no sense together."""
