"""One-hot encoding of the categorical columns the config declares (`data.categorical_columns`).

The encoder is fitted on the training data's values, saved in the model bundle, and applied by
training, evaluation, `mpops predict`, `mpops monitor` and the registered pyfunc model alike, so a
value always maps to the same input. Each category becomes one 0/1 feature named `column=value`,
in the order of the data's columns (numeric columns as they are). A value training never saw is
refused (UnseenCategory, exit 3) rather than silently encoded as all zeros: a category the model
has no weights for is a different population, not a missing value.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from pipeline.core.errors import DataValidationError


class UnseenCategory(DataValidationError):
    """A categorical value at predict or monitor time that the training data did not have."""


def _key(value: Any) -> str:
    # Values compare as text: a CSV read back may turn the integer category 3 into 3.0 or "3".
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return str(value.item() if isinstance(value, np.generic) else value)


@dataclass(frozen=True)
class CategoricalEncoder:
    input_columns: tuple[str, ...]  # the columns the model takes, in order, categorical ones included
    categories: tuple[tuple[str, tuple[str, ...]], ...] = ()  # (column, its categories as text)

    @property
    def categorical(self) -> dict[str, tuple[str, ...]]:
        return dict(self.categories)

    @property
    def feature_columns(self) -> tuple[str, ...]:
        """The encoded features the network sees: numeric columns, then `column=value` per category."""
        cats = self.categorical
        return tuple(name for c in self.input_columns
                     for name in ([f"{c}={v}" for v in cats[c]] if c in cats else [c]))

    @classmethod
    def fit(cls, frame: pd.DataFrame, input_columns: tuple[str, ...], categorical: tuple[str, ...]
            ) -> CategoricalEncoder:
        cats = tuple((c, tuple(sorted({_key(v) for v in frame[c].dropna()}))) for c in input_columns
                     if c in categorical)
        return cls(tuple(input_columns), cats)

    def unseen(self, frame: pd.DataFrame) -> dict[str, list]:
        """Per categorical column, the values (in row order, once each) that training never saw."""
        out = {}
        for column, known in self.categories:
            keys = frame[column].map(_key, na_action="ignore")
            bad = frame[column][keys.notna() & ~keys.isin(known)]
            if len(bad):
                out[column] = list(dict.fromkeys(bad.tolist()))
        return out

    def check(self, frame: pd.DataFrame, where: str) -> None:
        from pipeline.core.validation.redact import listed  # text values withheld, as in validation

        unseen = self.unseen(frame)
        if unseen:
            column, values = next(iter(unseen.items()))
            raise UnseenCategory(
                f"{where}: categorical column {column!r} has {len(values)} value(s) training never saw "
                f"({listed(values[:3])}); the model knows {len(self.categorical[column])} categories of it: "
                "retrain on data that has them, or map them to a known category",
                detail="\n".join(f"  {c}: {len(v)} unseen value(s)" for c, v in unseen.items()))

    def transform(self, frame: pd.DataFrame, where: str = "data") -> np.ndarray:
        """(rows, len(feature_columns)) float32; an unseen category is an UnseenCategory error."""
        self.check(frame, where)
        cats = self.categorical
        parts = []
        for c in self.input_columns:
            if c in cats:
                keys = frame[c].map(_key, na_action="ignore")
                parts += [(keys == v).to_numpy(dtype=np.float32) for v in cats[c]]
            else:
                parts.append(pd.to_numeric(frame[c]).to_numpy(dtype=np.float32))
        return np.stack(parts, axis=1) if parts else np.zeros((len(frame), 0), np.float32)

    def inverse_transform(self, x: np.ndarray) -> pd.DataFrame:
        """Rows of the input columns back from encoded rows: numbers as float64, each category as its text."""
        cats, out, j = self.categorical, {}, 0
        for c in self.input_columns:
            if c in cats:
                width = len(cats[c])
                out[c] = [cats[c][i] for i in np.asarray(x)[:, j:j + width].argmax(axis=1)]
                j += width
            else:
                out[c] = np.asarray(x)[:, j].astype(np.float64)
                j += 1
        return pd.DataFrame(out)

    def as_inputs(self, frame: pd.DataFrame) -> pd.DataFrame:
        """The input columns as the registered model's signature types them: categories as text, numbers float64."""
        cats = self.categorical
        return pd.DataFrame({c: frame[c].map(_key) if c in cats else pd.to_numeric(frame[c]).astype("float64")
                             for c in self.input_columns})

    def to_dict(self) -> dict:
        return {"input_columns": list(self.input_columns), "categories": {c: list(v) for c, v in self.categories}}

    @classmethod
    def from_dict(cls, raw: dict) -> CategoricalEncoder:
        return cls(tuple(raw["input_columns"]), tuple((c, tuple(v)) for c, v in raw["categories"].items()))
