"""The objective's thresholds, hand-computed: one cut for every row, or one per policy."""

from __future__ import annotations

import numpy as np
import pytest

from guardray.search.objective import evaluate_scores

# policy a's scores sit high, b's low: each policy is separable at its own cut, not at one
SCORES = np.array([0.1, 0.2, 0.6, 0.7, 0.02, 0.03, 0.08, 0.09])
LABELS = np.array([0, 0, 1, 1, 0, 0, 1, 1])
POLICIES = ["a"] * 4 + ["b"] * 4


def test_one_threshold_for_all_rows_flags_every_row_of_the_high_scoring_policy():
    res = evaluate_scores(SCORES, LABELS, POLICIES)
    # pooled unsafe F1: a cut in (0.03, 0.08] gives TP 4, FP 2 (F1 0.8); one in (0.2, 0.6]
    # gives TP 2, FN 2 (F1 0.667): max-F1 takes the low cut, which flags all of a's rows
    assert 0.03 < res["threshold"] <= 0.08 and res["scope"] == "all"
    a, b = res["policies"]["a"], res["policies"]["b"]
    assert a["threshold"] == b["threshold"] == res["threshold"]
    assert a["precision"] == 0.5 and a["recall"] == 1.0
    assert a["macro_f1"] == pytest.approx((2 / 3 + 0) / 2)  # safe F1 0, unsafe F1 2/3
    assert b["macro_f1"] == 1.0
    assert res["mean"] == pytest.approx((1 / 3 + 1) / 2) and res["worst_policy"] == "a"


def test_per_policy_thresholds_are_chosen_on_each_policys_rows():
    res = evaluate_scores(SCORES, LABELS, POLICIES, scope="policy")
    a, b = res["policies"]["a"], res["policies"]["b"]
    assert 0.2 < a["threshold"] <= 0.6 and 0.03 < b["threshold"] <= 0.08
    assert a["threshold_choice"]["n_validation"] == 4
    assert a["macro_f1"] == b["macro_f1"] == res["mean"] == res["worst"] == 1.0
    assert 0.03 < res["threshold"] <= 0.08  # the cut over all rows is still reported


def test_given_per_policy_thresholds_are_applied_and_a_missing_one_falls_back():
    res = evaluate_scores(SCORES, LABELS, POLICIES, threshold=0.05, scope="policy",
                          policy_thresholds={"a": 0.65})
    a, b = res["policies"]["a"], res["policies"]["b"]
    # a at 0.65: predictions 0 0 0 1; unsafe F1 2/3 (P 1, R 1/2), safe F1 0.8 (P 2/3, R 1)
    assert a["threshold"] == 0.65 and a["macro_f1"] == pytest.approx((2 / 3 + 0.8) / 2)
    assert b["threshold"] == 0.05 and b["macro_f1"] == 1.0
    assert res["threshold_choice"] is None


def test_an_unknown_scope_is_refused():
    with pytest.raises(ValueError, match="threshold scope"):
        evaluate_scores(SCORES, LABELS, POLICIES, scope="row")
