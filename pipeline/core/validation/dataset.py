"""Validation of any kind of data: an image folder's manifest against the built-in image checks, else the
table against its suite."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from pipeline.core.config import DataConfig, ValidationConfig
from pipeline.core.validation.validate import ValidationReport, validate_frame


def validate_dataset(ds: Any, suite_path: str | Path | None, v: ValidationConfig, data: DataConfig
                     ) -> ValidationReport:
    """`ds`: a pipeline.core.data.Dataset."""
    if ds.manifest is not None:
        from pipeline.core.validation.images import validate_manifest  # imports Great Expectations: seconds

        return validate_manifest(ds.manifest, v, data)
    return validate_frame(ds.frame, suite_path, v, data)
