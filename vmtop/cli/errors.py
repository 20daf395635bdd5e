"""Errors a user can cause: printed as one line, exit code 2, never a traceback."""

from __future__ import annotations


class CliError(Exception):
    """A user-facing error. The message says what went wrong and, where possible, what to do."""

    def __init__(self, message: str, code: int = 2) -> None:
        super().__init__(message)
        self.code = code
