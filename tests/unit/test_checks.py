import numpy as np
import pandas as pd
import pytest

from pipeline.core.validation import checks


def _frame(n=400, seed=0):
    rng = np.random.default_rng(seed)
    f = pd.DataFrame(rng.normal(size=(n, 4)), columns=list("abcd"))
    f["label"] = rng.integers(0, 3, n)
    f["split"] = np.where(np.arange(n) % 4 == 0, "test", "train")
    return f


def test_duplicates_counts_test_rows_seen_in_train_and_conflicts():
    f = _frame()
    test, train = np.flatnonzero(f.split == "test"), np.flatnonzero(f.split == "train")
    f.iloc[test[:7], :4] = f.iloc[train[:7], :4].to_numpy()  # 7 test rows copy train features
    f.loc[f.index[test[:7]], "label"] = f.label.iloc[train[:7]].to_numpy()
    f.loc[f.index[test[:2]], "label"] = (f.label.iloc[train[:2]].to_numpy() + 1) % 3  # 2 of them disagree
    d = checks.duplicates(f, "label", "split")
    assert d["test_rows"] == 100 and d["test_in_train"] == 7
    assert d["duplicate_rows"] == 14 and d["conflicting_groups"] == 2 and d["conflicting_rows"] == 4


def test_val_rows_count_as_seen_for_test():
    f = _frame()
    f.loc[f.index[1], "split"] = "val"
    f.iloc[0, :4] = f.iloc[1, :4].to_numpy()  # row 0 is test
    d = checks.duplicates(f, "label", "split")
    assert d["test_in_train"] == 1 and d["val_rows"] == 1 and d["val_in_train"] == 0


def test_target_leakage_finds_the_label_in_disguise():
    f = _frame()
    honest = checks.target_leakage(f, "label", "split")
    assert honest["best_score"] < 0.6  # random features: near chance (1/3)
    leaky = checks.target_leakage(f.assign(c=f.label * 10.0 + 0.5), "label", "split")
    assert leaky["best_feature"] == "c" and leaky["best_score"] == pytest.approx(1.0)


def test_target_leakage_is_not_fooled_by_a_majority_class():
    f = _frame()
    f["label"] = np.where(np.arange(len(f)) % 20 == 0, 1, 0)  # 95% one class
    assert checks.target_leakage(f, "label", "split")["best_score"] < 0.75


def test_label_issues_estimates_planted_flips(digits_frame):
    clean = checks.label_issues(digits_frame, "label", "split", max_rows=5000, folds=5, seed=0)
    flipped = digits_frame.copy()
    rows = np.random.default_rng(0).choice(len(flipped), 360, replace=False)
    flipped.loc[rows, "label"] = (flipped.loc[rows, "label"] + 3) % 10
    noisy = checks.label_issues(flipped, "label", "split", max_rows=5000, folds=5, seed=0)
    assert clean["rate"] < 0.02 < 0.1 < noisy["rate"]
    found = {s[0] for s in noisy["suspects"]}
    hits = len(found & set(rows.tolist()))
    assert hits / len(rows) > 0.8 and hits / len(found) > 0.6  # most planted flips found, most flags real
    assert all(s[2] != s[1] for s in noisy["suspects"])  # suggested label differs from the given one


def test_label_issues_not_evaluated_on_a_single_class(digits_frame):
    r = checks.label_issues(digits_frame[digits_frame.label == 1], "label", "split", 5000, 5, 0)
    assert np.isnan(r["rate"]) and "two classes" in r["not_evaluated"]


def test_label_issues_leave_out_a_class_too_small_to_cross_validate(digits_frame):
    f = digits_frame.copy()
    f.loc[0, "label"] = 42  # a class of one row: the labels check reports it
    r = checks.label_issues(f, "label", "split", 5000, 5, 0)
    assert r["rows_checked"] == len(f) - 1 and r["rate"] < 0.02


@pytest.mark.parametrize("value, kind", [
    ("write to jane.doe@mail.example.com", "e-mail address"),
    ("call +44 20 7946 0958 now", "phone number"),
    ("card 4111 1111 1111 1111", "card number"),
    ("ssn 078-05-1120", "national ID"),
    ("NINO QQ123456C", "national ID"),
])
def test_pii_kinds_are_found_and_values_never_returned(value, kind):
    f = pd.DataFrame({"note": ["nothing here", value, None], "x": [1, 2, 3]})
    found = checks.pii_scan(f, "split")
    assert found["note"][kind] == 1
    assert value not in repr(found)


def test_pii_ignores_numbers_that_are_not_pii():
    f = pd.DataFrame({"note": ["order 4111 1111 1111 1112", "2024-01-15", "version 3.10.2", "12.5 kg"],
                      "amount": [4111111111111111, 1, 2, 3]})  # bad Luhn; a date; numeric column skipped
    assert checks.pii_scan(f, "split") == {}


def test_nonfinite_counts_inf_only():
    f = pd.DataFrame({"a": [1.0, np.inf, -np.inf], "b": [np.nan, 1.0, 2.0], "s": ["x", "y", "z"]})
    assert checks.nonfinite_counts(f, ["a", "b", "s"]) == {"a": 2}
