"""The computations behind mpops' custom Great Expectations expectations: plain pandas, numpy, cleanlab.

Every check here is linear in the rows (row hashing, bincounts, binning against sampled quantiles),
except label errors, which subsample above a configured size and say so.
"""
from __future__ import annotations

import re

import numpy as np
import pandas as pd


# Each kind: a pattern that finds a candidate, and an optional check that confirms it (Luhn for cards).
PII_PATTERNS: dict[str, str] = {
    "e-mail address": r"[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}",
    "card number": r"(?<!\d)(?:\d[ -]?){12,18}\d(?!\d)",
    "national ID": r"(?<!\d)\d{3}-\d{2}-\d{4}(?!\d)|\b[A-Z]{2} ?\d{2} ?\d{2} ?\d{2} ?[A-D]\b",  # US SSN, UK NINO
    # Not inside a longer run of digit groups (a card or account number is not a phone number).
    "phone number": r"(?<![\w-])(?<!\d[ .])(?:\+\d{1,3}[ .-]?)?(?:\(\d{2,4}\)[ .-]?|\d{2,4}[ .-])\d{3,4}[ .-]?\d{3,4}"
                    r"(?![\w-])(?![ .]\d)",
}


def feature_columns(frame: pd.DataFrame, label_column: str, split_column: str) -> list[str]:
    return [c for c in frame.columns if c not in (label_column, split_column)]


def numeric_columns(frame: pd.DataFrame, columns: list[str]) -> list[str]:
    return [c for c in columns if pd.api.types.is_numeric_dtype(frame[c]) and not pd.api.types.is_bool_dtype(frame[c])]


def undeclared_text_columns(frame: pd.DataFrame, label_column: str, split_column: str,
                            categorical_columns: list) -> list[str]:
    """Feature columns that are neither numeric nor declared categorical: training could not read them."""
    columns = feature_columns(frame, label_column, split_column)
    numeric = set(numeric_columns(frame, columns))
    return [c for c in columns if c not in numeric and c not in set(categorical_columns)]


def _plain(value):
    return value.item() if isinstance(value, np.generic) else value


def class_counts(labels: pd.Series) -> dict:
    """Rows per class, keyed by the label value itself; null labels left out (the not-null expectation counts them)."""
    counts = labels.dropna().value_counts()
    return {_plain(k): int(v) for k, v in counts.items()}


def nonfinite_counts(frame: pd.DataFrame, columns: list[str]) -> dict[str, int]:
    """±inf per numeric column; NaN is a null and the not-null expectations count it."""
    cols = numeric_columns(frame, columns)
    if not cols:
        return {}
    values = frame[cols].to_numpy(dtype=np.float64, na_value=np.nan)
    counts = np.isinf(values).sum(axis=0)
    return {c: int(n) for c, n in zip(cols, counts) if n}


def row_hashes(frame: pd.DataFrame, columns: list[str]) -> np.ndarray:
    """One uint64 per row over the feature values: duplicates found by hashing, never pairwise."""
    return pd.util.hash_pandas_object(frame[columns], index=False).to_numpy()


def duplicates(frame: pd.DataFrame, label_column: str, split_column: str) -> dict:
    """Feature rows shared between splits, and identical feature rows carrying different labels.

    Hash tables throughout (pandas isin, drop_duplicates): linear in rows, where np.isin sorts."""
    hashes = row_hashes(frame, feature_columns(frame, label_column, split_column))
    split = frame[split_column].astype("string").fillna("").to_numpy(dtype=object)
    test, val, train = split == "test", split == "val", split == "train"
    seen = train | val

    def found_in(rows: np.ndarray, reference: np.ndarray) -> int:
        return int(pd.Series(hashes[rows]).isin(hashes[reference]).sum())

    codes = pd.Series(pd.factorize(frame[label_column])[0])  # a null label is code -1: one more label value
    by_row = codes.groupby(hashes, sort=False)
    spread = by_row.max() - by_row.min()  # > 0: one feature row, two labels
    conflicting = spread[spread > 0]
    return {
        "rows": len(frame),
        "test_rows": int(test.sum()),
        "test_in_train": found_in(test, seen),
        "val_rows": int(val.sum()),
        "val_in_train": found_in(val, train),
        "duplicate_rows": int(pd.Series(hashes).duplicated(keep=False).sum()),
        "conflicting_groups": int(len(conflicting)),
        "conflicting_rows": int(pd.Series(hashes).isin(conflicting.index).sum()),
    }


def _bin_codes(values: np.ndarray, fit_rows: np.ndarray, max_bins: int, rng: np.random.Generator) -> np.ndarray:
    """Quantile bins from a sample of the fitting rows; a column with few distinct values keeps them apart."""
    sample = values[fit_rows]
    sample = sample[np.isfinite(sample)]
    if len(sample) > 100_000:
        sample = rng.choice(sample, 100_000, replace=False)
    if len(sample) == 0:
        return np.zeros(len(values), dtype=np.int64)
    edges = np.unique(np.quantile(sample, np.linspace(0, 1, max_bins + 1)))
    return np.searchsorted(edges, values, side="right")  # NaN lands in the last bin, a bin of its own


def target_leakage(frame: pd.DataFrame, label_column: str, split_column: str, max_bins: int = 32) -> dict:
    """For each feature alone: map its bins to the majority label on train rows, score on held-out rows.

    Balanced accuracy, so a majority class cannot make an honest feature look like a leak; chance
    is 1/classes. A feature that is the label in disguise scores about 1.0.
    """
    labels = frame[label_column]
    known = labels.notna().to_numpy()
    y, classes = pd.factorize(labels)
    split = frame[split_column].astype("string").fillna("").to_numpy(dtype=object)
    held_out = (split == "test") & known
    if held_out.sum() == 0 or held_out.sum() == known.sum():  # no usable test split: every other row
        held_out = known & (np.cumsum(known) % 2 == 0)
    fit = known & ~held_out
    if held_out.sum() == 0 or fit.sum() == 0 or len(classes) < 2:
        return {"best_feature": None, "best_score": float("nan"), "scores": {}, "chance": float("nan")}
    k, rng, scores = len(classes), np.random.default_rng(0), {}
    for col in numeric_columns(frame, feature_columns(frame, label_column, split_column)):
        values = frame[col].to_numpy(dtype=np.float64, na_value=np.nan)
        codes = _bin_codes(values, fit, max_bins, rng)
        table = np.bincount(codes[fit] * k + y[fit], minlength=(codes.max() + 1) * k).reshape(-1, k)
        predicted = table.argmax(axis=1)[codes[held_out]]
        truth = y[held_out]
        recalls = [np.mean(predicted[truth == c] == c) for c in range(k) if np.any(truth == c)]
        scores[col] = float(np.mean(recalls))
    if not scores:
        return {"best_feature": None, "best_score": float("nan"), "scores": {}, "chance": 1 / k}
    top = sorted(scores.items(), key=lambda kv: -kv[1])[:5]
    return {"best_feature": top[0][0], "best_score": top[0][1], "scores": dict(top), "chance": 1 / k}


def label_issues(frame: pd.DataFrame, label_column: str, split_column: str, max_rows: int, folds: int,
                 seed: int) -> dict:
    """Confident learning (cleanlab) on out-of-fold probabilities of a linear model.

    Returns the estimated error rate, the flagged rows (frame index, given label, suggested label,
    label quality score), and whether the rows were subsampled.
    """
    from cleanlab.count import num_label_issues
    from cleanlab.filter import find_label_issues
    from cleanlab.rank import get_label_quality_scores

    rows = frame[frame[label_column].notna()]
    total = len(rows)
    subsampled = total > max_rows
    if subsampled:
        rows = rows.sample(n=max_rows, random_state=seed)
    # A class too small to cross-validate is the labels check's finding; leave its rows out here.
    sizes = rows[label_column].map(rows[label_column].value_counts())
    rows = rows[sizes >= min(folds, 5)]
    y, classes = pd.factorize(rows[label_column], sort=True)
    smallest = np.bincount(y).min() if len(classes) else 0
    base = {"rows_total": total, "rows_checked": len(rows), "subsampled": bool(subsampled)}
    if len(classes) < 2:
        return {**base, "rate": float("nan"), "flagged": 0, "suspects": [],
                "not_evaluated": f"needs at least two classes with {min(folds, 5)}+ rows each"}
    probs = _out_of_fold_probabilities(rows, label_column, split_column, y, min(folds, int(smallest)), seed)
    # n_jobs=1: cleanlab would fork worker processes, which can hang inside a threaded Prefect run.
    flagged = find_label_issues(labels=y, pred_probs=probs, return_indices_ranked_by="self_confidence", n_jobs=1)
    quality = get_label_quality_scores(y, probs)
    index = rows.index.to_numpy()
    suspects = [[int(index[i]), _plain(classes[y[i]]), _plain(classes[probs[i].argmax()]),
                 round(float(quality[i]), 4)] for i in flagged]
    return {**base, "rate": num_label_issues(labels=y, pred_probs=probs) / len(rows), "flagged": len(flagged),
            "suspects": suspects}


def _out_of_fold_probabilities(rows: pd.DataFrame, label_column: str, split_column: str, y: np.ndarray,
                               folds: int, seed: int) -> np.ndarray:
    from sklearn.impute import SimpleImputer
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold, cross_val_predict
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    cols = numeric_columns(rows, feature_columns(rows, label_column, split_column))
    x = rows[cols].to_numpy(dtype=np.float64, na_value=np.nan)
    x[~np.isfinite(x)] = np.nan  # inf is its own failed check; here it must not break the fit
    model = make_pipeline(SimpleImputer(keep_empty_features=True), StandardScaler(),
                          LogisticRegression(max_iter=300))
    cv = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
    return cross_val_predict(model, x, y, cv=cv, method="predict_proba")


def _luhn_ok(candidate: str) -> bool:
    digits = [int(d) for d in re.sub(r"\D", "", candidate)][::-1]
    total = sum(d if i % 2 == 0 else (d * 2 - 9 if d * 2 > 9 else d * 2) for i, d in enumerate(digits))
    return total % 10 == 0


def pii_kinds(text: str) -> list[str]:
    """The kinds of PII one piece of text holds (pii_scan's patterns and Luhn check, for a single value)."""
    found = []
    for kind, pattern in PII_PATTERNS.items():
        matches = re.findall(pattern, text)
        if matches and (kind != "card number" or any(_luhn_ok(m) for m in matches)):
            found.append(kind)
    return found


def pii_scan(frame: pd.DataFrame, split_column: str) -> dict[str, dict[str, int]]:
    """Rows per text column and kind of PII. Only counts leave this function, never a value."""
    found: dict[str, dict[str, int]] = {}
    for col in frame.columns:
        if col == split_column or pd.api.types.is_numeric_dtype(frame[col]) or pd.api.types.is_bool_dtype(frame[col]):
            continue
        text = frame[col].dropna().astype(str)
        kinds = {}
        for kind, pattern in PII_PATTERNS.items():
            if kind == "card number":
                hits = text.str.findall(pattern).map(lambda ms: any(_luhn_ok(m) for m in ms))
            else:
                hits = text.str.contains(pattern, regex=True)
            if int(hits.sum()):
                kinds[kind] = int(hits.sum())
        if kinds:
            found[str(col)] = kinds
    return found
