"""Errors that carry the exit code of docs/design.md; the command line maps them to exits."""
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

    def __init__(self, message: str, detail: str = "", report: object = None) -> None:
        super().__init__(message, detail)
        self.gate_report = report  # `mpops run --report` writes the report of a failed gate too


class NotServable(MpopsError):
    """The registered version failed the servability check: it stays challenger only, champion untouched.
    The exit code of a failed gate: the check is the last gate before `champion` moves."""

    exit_code = 4


class DriftDetected(MpopsError):
    exit_code = 5

    def __init__(self, message: str, detail: str = "", outcome: object = None) -> None:
        super().__init__(message, detail)
        self.outcome = outcome  # the monitoring outcome, so the command line can print the report


class ServiceUnavailable(MpopsError):
    """A service the command needs (the MLflow tracking store, the Prefect API) cannot be reached."""

    exit_code = 6
