"""Reports as JSON that strict parsers (JavaScript's JSON.parse, jq, Go) accept: a value that could not be
computed (NaN, an infinite ratio) is written as null, never as the NaN or Infinity Python would write."""
from __future__ import annotations

import json
import math
from typing import Any

import numpy as np


def finite(value: Any) -> Any:
    """`value` with every non-finite float replaced by None, numpy scalars and arrays as plain Python."""
    if isinstance(value, np.ndarray):
        value = value.tolist()
    elif isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [finite(v) for v in value]
    return value


def dumps(value: Any, **kwargs: Any) -> str:
    """json.dumps that refuses what strict JSON cannot hold, after `finite` made every figure JSON."""
    return json.dumps(finite(value), allow_nan=False, **kwargs)
