"""What validation may say about cell values: numbers yes, the text of the data never.

Great Expectations puts sample values into its results (`partial_unexpected_list`, value counts,
observed partitions), and an exception may quote a cell in its message. A PII value in any text
column would then reach stderr, report.json, the Data Docs page, the logs and MLflow. So every
value is passed through `shown` before any of them sees it: a number is shown, unless its digits
look like a card number; a text value is replaced by a placeholder that gives only its length,
unless the reviewed suite itself names it (its value sets: the label classes, the split names),
since then it is part of the contract, not a secret of the data.
"""
from __future__ import annotations

import re
from typing import Any, Iterable

import numpy as np

from pipeline.core.validation.checks import pii_kinds

# Their results hold column names and dtype names, never a cell value.
SCHEMA_EXPECTATIONS = frozenset({
    "expect_column_to_exist", "expect_table_columns_to_match_set", "expect_table_columns_to_match_ordered_list",
    "expect_table_column_count_to_equal", "expect_table_column_count_to_be_between",
    "expect_column_values_to_be_of_type", "expect_column_values_to_be_in_type_list",
    "expect_table_row_count_to_equal", "expect_table_row_count_to_be_between",
})
_QUOTED = re.compile(r"'[^']*'|\"[^\"]*\"")


class Withheld(str):
    """A placeholder for a value that is not shown (a str, so GE's renderers and JSON take it as text)."""


def shown(value: Any, known: frozenset[str] = frozenset()) -> Any:
    """The value as a report may show it: numbers and suite-named text as they are, other text withheld."""
    if isinstance(value, np.generic):
        value = value.item()
    if value is None or isinstance(value, (bool, Withheld)):
        return value
    if isinstance(value, (int, float)):
        return Withheld("<number withheld: looks like a card number>") if pii_kinds(str(value)) else value
    text = str(value)
    if text in known:
        return value
    return Withheld(f"<text withheld, {len(text)} chars>")


def listed(values: Iterable[Any], known: frozenset[str] = frozenset()) -> str:
    """Values for a message: repr for what is shown (so '3' and 3 differ), the bare placeholder otherwise."""
    out = [shown(v, known) for v in values]
    return "[" + ", ".join(v if isinstance(v, Withheld) else repr(v) for v in out) + "]"


def scrub(message: str) -> str:
    """An exception message without what it quotes (pandas and numpy quote the offending cell) or any PII."""
    text = _QUOTED.sub("'<withheld>'", str(message))
    for match in sorted({m for m in re.findall(r"\S+", text) if pii_kinds(m)}, key=len, reverse=True):
        text = text.replace(match, "<withheld>")
    return text


def suite_values(expectations: Iterable[dict]) -> frozenset[str]:
    """Every value the suite itself names in a value set or a partition: the text `shown` may show."""
    found: set[str] = set()
    for e in expectations:
        kwargs = e.get("kwargs", {})
        found |= {str(v) for v in kwargs.get("value_set") or ()}
        found |= {str(v) for v in (kwargs.get("partition_object") or {}).get("values") or ()}
    return frozenset(found)


def _walk(obj: Any, known: frozenset[str]) -> Any:
    if isinstance(obj, dict):  # keys are Great Expectations' own field names; values may be cells
        return {k: _walk(v, known) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_walk(v, known) for v in obj]
    return shown(obj, known)


def _scrub_exception(info: Any) -> Any:
    if isinstance(info, dict):
        return {k: (scrub(v) if k in ("exception_message", "exception_traceback") and isinstance(v, str)
                    else _scrub_exception(v)) for k, v in info.items()}
    return info


def redact_results(result: Any, known: frozenset[str], own_types: Iterable[str] = ()) -> None:
    """Withhold every text cell value in a GE validation result, in place, before anything renders it.

    `own_types` are mpops' expectations: they build their results from counts and `shown` values."""
    trusted = SCHEMA_EXPECTATIONS | set(own_types)
    for r in result.results:
        if r.exception_info:
            r.exception_info = _scrub_exception(dict(r.exception_info))
        if r.result and r.expectation_config.type not in trusted:
            r.result = _walk(dict(r.result), known)
