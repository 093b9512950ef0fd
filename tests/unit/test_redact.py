"""What a validation report may show of a cell: numbers yes, text only where the suite itself names it."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from pipeline.core.validation.redact import Withheld, listed, scrub, shown, suite_values


def test_numbers_are_shown_and_text_is_withheld_with_its_length_only():
    assert shown(99) == 99 and shown(np.float32(2.5)) == 2.5 and shown(np.int64(7)) == 7
    assert shown(None) is None and shown(True) is True
    assert shown("alice@example.org") == "<text withheld, 17 chars>"
    assert isinstance(shown("x"), Withheld) and shown(shown("x")) == shown("x")


def test_a_number_with_the_digits_of_a_card_is_withheld():
    assert shown(4556737586899855) == "<number withheld: looks like a card number>"
    assert shown(4556737586899856) == 4556737586899856  # fails the Luhn check: just a large number


def test_text_the_suite_names_is_shown_as_it_is():
    known = suite_values([{"type": "expect_column_values_to_be_in_set", "kwargs": {"value_set": [0, 1, "cat"]}},
                          {"type": "expect_column_kl_divergence_to_be_less_than",
                           "kwargs": {"partition_object": {"values": ["dog"], "weights": [1.0]}}}])
    assert known == {"0", "1", "cat", "dog"}
    assert shown("cat", known) == "cat" and shown("1", known) == "1" and shown("eel", known) != "eel"
    assert listed(["1", 1, "bob@example.org"], known) == "['1', 1, <text withheld, 15 chars>]"


@pytest.mark.parametrize("cells", [["1.5", "carol@example.org"], ["4111 1111 1111 1111"]])
def test_an_exception_message_loses_what_it_quotes(cells):
    with pytest.raises(ValueError) as err:
        pd.Series(cells).astype("float64")
    assert cells[-1] in str(err.value)  # pandas quotes the cell: the reason for scrub
    text = scrub(str(err.value))
    assert cells[-1] not in text and "<withheld>" in text
    assert scrub("mail dave@example.org or call") == "mail <withheld> or call"
