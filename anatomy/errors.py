"""Errors a user can act on: what was wrong, where, and what to do about it.

Library code raises these and never calls sys.exit; the CLI prints them in one or two lines and exits 1.
"""

from __future__ import annotations


class AnatomyError(Exception):
    """A user-facing error with an optional hint saying how to fix it."""

    def __init__(self, message: str, hint: str | None = None):
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return self.message if not self.hint else f"{self.message}\n  hint: {self.hint}"


class InputError(AnatomyError):
    """A file or record the user gave cannot be read as asked."""


class CheckpointError(AnatomyError):
    """A checkpoint does not match the architecture it is loaded into."""


class EncoderError(AnatomyError):
    """An encoder spec cannot be resolved or used for the requested work."""


class OptionError(InputError):
    """An option value outside its allowed range; the CLI reports it as a usage error (exit 2)."""

    def __init__(self, option: str, message: str, hint: str | None = None):
        super().__init__(f"{option}: {message}", hint)
        self.option, self.detail = option, message
