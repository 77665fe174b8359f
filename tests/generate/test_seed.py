"""Seed rows from policy examples and deterministic splits."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from guardray import schema as S
from guardray.generate.seed import assign_split, seed_rows
from guardray.policies import load_policies

REPO = Path(__file__).resolve().parents[2]


def test_seed_rows_follow_schema_and_labels():
    policies = load_policies([REPO / "configs" / "policies" / "tax.yaml"])
    rows = seed_rows(policies)
    tax = policies[0]
    assert len(rows) == len(tax.examples.safe) + len(tax.examples.unsafe)
    for row in rows:
        assert tuple(row) == S.COLUMNS
        assert row[S.ID] == S.sample_id("tax", row[S.TEXT])
        expected = S.UNSAFE if row[S.TEXT] in tax.examples.unsafe else S.SAFE
        assert row[S.LABEL] == expected == row[S.LABEL_INITIAL]
        assert row[S.SOURCE] == "seed" and row[S.SPLIT] == "train"


def test_sample_id_is_stable_and_separates_fields():
    assert S.sample_id("tax", "hello") == S.sample_id("tax", "hello")
    assert S.sample_id("tax", "hello") != S.sample_id("finance", "hello")
    assert S.sample_id("ab", "c") != S.sample_id("a", "bc")
    assert len(S.sample_id("a", "b")) == 32


def test_split_is_deterministic_and_close_to_fractions():
    ids = [S.sample_id("p", str(i)) for i in range(20000)]
    splits = [assign_split(i, 0.1, 0.2, seed=3) for i in ids]
    assert splits == [assign_split(i, 0.1, 0.2, seed=3) for i in ids]
    frac = {k: v / len(ids) for k, v in Counter(splits).items()}
    assert abs(frac["test"] - 0.2) < 0.015 and abs(frac["validation"] - 0.1) < 0.015
    assert splits != [assign_split(i, 0.1, 0.2, seed=4) for i in ids]  # the seed matters


@pytest.mark.parametrize("val, test", [(0.5, 0.5), (-0.1, 0.1), (1.0, 0.0)])
def test_bad_split_fractions(val, test):
    with pytest.raises(ValueError, match="split fractions"):
        assign_split("x", val, test)
