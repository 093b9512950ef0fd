"""Validation of an image folder: its per-image manifest (pipeline/core/images.py) in one Great Expectations run.

The manifest is the table GE sees: one row per file with its class, size, mode, intensity and content
hash, and the split training will use. mpops' own expectations name the offending files: unreadable
or non-image files, sizes and modes outside the configured policy, identical images on both sides of
the train/test split; the label checks of tabular data (too few classes, tiny classes, imbalance)
run on the class column.
"""
from __future__ import annotations

import os
from typing import ClassVar, Tuple

import pandas as pd

from pipeline.core.config import DataConfig, ValidationConfig
from pipeline.core.data import SPLIT_COLUMN, assign_split
from pipeline.core.images import CLASS_COLUMN
from pipeline.core.validation import expectations as mpops_expectations
from pipeline.core.validation.expectations import _MpopsExpectation, _result, _table_metric

SUITE_NAME = "image-folder (built in)"
LISTED = 10  # files named per failed check in the message; the report's details hold them all


def _named(paths: list[str]) -> str:
    more = f" and {len(paths) - LISTED} more" if len(paths) > LISTED else ""
    return ", ".join(paths[:LISTED]) + more


def unreadable(frame: pd.DataFrame) -> dict:
    bad = frame[frame["status"] != "ok"]
    return {p: s for p, s in zip(bad["path"], bad["status"])}


def shape_outliers(frame: pd.DataFrame, mixed_sizes: bool, mixed_modes: bool, min_side: int) -> dict:
    """Files outside the policy: smaller than min_side, or (when mixing is refused) not of the commonest size/mode."""
    ok = frame[frame["status"] == "ok"]
    out: dict[str, str] = {}
    small = ok[(ok["width"] < min_side) | (ok["height"] < min_side)]
    for p, w, h in zip(small["path"], small["width"], small["height"]):
        out[p] = f"{w}x{h} is below {min_side} px"
    size = ok["width"].astype(str) + "x" + ok["height"].astype(str)
    checks = ((mixed_sizes, size, "size"), (mixed_modes, ok["mode"], "mode"))
    for allowed, values, what in checks:
        if not allowed and values.nunique() > 1:
            common = values.mode().iloc[0]
            odd = ok[values != common]
            for p, v in zip(odd["path"], values[odd.index]):
                out[p] = "; ".join(filter(None, (out.get(p), f"{what} {v} differs from the commonest {common}")))
    return out


def hash_leaks(frame: pd.DataFrame, split_column: str) -> dict:
    """Test images whose content hash also occurs in train/val: test file -> its twin in train."""
    ok = frame[frame["status"] == "ok"]
    train = ok[ok[split_column] != "test"].drop_duplicates("content_hash").set_index("content_hash")["path"]
    test = ok[ok[split_column] == "test"]
    leaked = test[test["content_hash"].isin(train.index)]
    return {"leaks": {p: train[h] for p, h in zip(leaked["path"], leaked["content_hash"])}, "test_rows": len(test)}


_table_metric("mpops.images_unreadable", (), unreadable)
_table_metric("mpops.images_shape", ("mixed_sizes", "mixed_modes", "min_side"), shape_outliers)
_table_metric("mpops.images_leaks", ("split_column",), hash_leaks)


class ExpectImagesToBeReadable(_MpopsExpectation):
    check_name: ClassVar[str] = "readable images"
    metric_dependencies: ClassVar[Tuple[str, ...]] = ("mpops.images_unreadable",)
    success_keys: ClassVar[Tuple[str, ...]] = ()

    def _validate(self, metrics, runtime_configuration=None, execution_engine=None):
        bad = metrics["mpops.images_unreadable"]
        message = (f"readable images: {len(bad)} file(s) are not readable images: "
                   + _named([f"{p} ({s})" for p, s in bad.items()])) if bad else "readable images: every file decodes"
        return _result(not bad, len(bad), message, files=bad)


class ExpectImageShapesWithinPolicy(_MpopsExpectation):
    check_name: ClassVar[str] = "image sizes and modes"
    mixed_sizes: bool = True
    mixed_modes: bool = True
    min_side: int = 8
    metric_dependencies: ClassVar[Tuple[str, ...]] = ("mpops.images_shape",)
    success_keys: ClassVar[Tuple[str, ...]] = ("mixed_sizes", "mixed_modes", "min_side")

    def _validate(self, metrics, runtime_configuration=None, execution_engine=None):
        bad = metrics["mpops.images_shape"]
        message = (f"image sizes and modes: {len(bad)} file(s) outside the policy: "
                   + _named([f"{p} ({why})" for p, why in bad.items()])) if bad else \
            "image sizes and modes: every image within the policy"
        return _result(not bad, len(bad), message, files=bad)


class ExpectNoImageLeakage(_MpopsExpectation):
    check_name: ClassVar[str] = "train-test leakage"
    metric_dependencies: ClassVar[Tuple[str, ...]] = ("mpops.images_leaks",)
    success_keys: ClassVar[Tuple[str, ...]] = ("split_column",)

    def _validate(self, metrics, runtime_configuration=None, execution_engine=None):
        d = metrics["mpops.images_leaks"]
        leaks = d["leaks"]
        message = (f"train-test leakage: {len(leaks)} of {d['test_rows']} test images are identical to a training "
                   "image (content hash): " + _named([f"{t} = {s}" for t, s in leaks.items()])) if leaks else \
            f"train-test leakage: none of {d['test_rows']} test images occurs in train (content hash)"
        return _result(not leaks and d["test_rows"] > 0, len(leaks), message, files=leaks)


IMAGE_CHECKS = {cls.expectation_type: cls.check_name for cls in
                (ExpectImagesToBeReadable, ExpectImageShapesWithinPolicy, ExpectNoImageLeakage)}
mpops_expectations.CHECK_NAMES.update(IMAGE_CHECKS)  # the report names these checks like mpops' others


def image_expectations(v: ValidationConfig, classes: list[str]) -> list[dict]:
    known = {"known_values": sorted(classes)}  # class folder names are the label set, as a suite would list them
    label = {"label_column": CLASS_COLUMN, **known}
    return [
        {"type": "expect_images_to_be_readable", "kwargs": {}},
        {"type": "expect_image_shapes_within_policy",
         "kwargs": {"mixed_sizes": v.image_mixed_sizes, "mixed_modes": v.image_mixed_modes,
                    "min_side": v.min_image_side}},
        {"type": "expect_label_classes_to_have_min_count", "kwargs": {**label, "min_count": v.min_class_count}},
        {"type": "expect_class_imbalance_to_be_within",
         "kwargs": {**label, "max_ratio": v.max_imbalance_ratio, "min_share": v.min_class_share,
                    "warn_fraction": v.warn_fraction}},
        {"type": "expect_no_image_leakage", "kwargs": {"split_column": SPLIT_COLUMN}},
    ]


def validate_manifest(manifest: pd.DataFrame, v: ValidationConfig, data: DataConfig):
    """The ValidationReport (pipeline.core.validation.validate) of an image folder's manifest."""
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "False")
    import great_expectations as gx
    from great_expectations.data_context.types.base import ProgressBarsConfig

    from pipeline.core.validation.report import offline_data_docs
    from pipeline.core.validation.validate import ValidationReport, _check

    frame = manifest.assign(**{SPLIT_COLUMN: assign_split(manifest, CLASS_COLUMN, data.test_size, data.split_seed)})
    classes = sorted(str(c) for c in manifest[CLASS_COLUMN].dropna().unique())
    suite = gx.ExpectationSuite(name="image-folder", expectations=image_expectations(v, classes))
    context = gx.get_context(mode="ephemeral")
    context.variables.progress_bars = ProgressBarsConfig(globally=False)
    batch = (context.data_sources.add_pandas("mpops").add_dataframe_asset("manifest")
             .add_batch_definition_whole_dataframe("all").get_batch(batch_parameters={"dataframe": frame}))
    result = batch.validate(suite, result_format="SUMMARY")
    known = frozenset(classes)
    return ValidationReport(suite=SUITE_NAME, rows=len(frame), checks=tuple(_check(r, known) for r in result.results),
                            data_docs_html=offline_data_docs(result))

