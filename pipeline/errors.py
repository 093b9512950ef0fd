"""Errors that carry the exit code of DESIGN.md; the CLI maps them to exits."""
from __future__ import annotations


class MpopsError(Exception):
    """A user-facing failure: `str(err)` is the one clear line, `detail` the rest."""

    exit_code = 1

    def __init__(self, message: str, detail: str = "") -> None:
        super().__init__(message)
        self.detail = detail


class ConfigError(MpopsError):
    exit_code = 2


class DataValidationError(MpopsError):
    exit_code = 3


class GateFailed(MpopsError):
    exit_code = 4


class DriftDetected(MpopsError):
    exit_code = 5
