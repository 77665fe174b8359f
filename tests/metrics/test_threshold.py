"""Thresholds are chosen on validation data only."""

from __future__ import annotations

import inspect

import numpy as np
import pytest
from sklearn import metrics as skm

from guardray.metrics.threshold import choose_threshold


def test_max_f1_is_optimal_over_all_cuts():
    rng = np.random.default_rng(0)
    for _ in range(20):
        y = rng.integers(0, 2, 60)
        y[:2] = [0, 1]
        s = np.clip(rng.normal(0.35 + 0.3 * y, 0.2), 0, 1)
        choice = choose_threshold(s, y)
        best_possible = max(skm.f1_score(y, (s >= t).astype(int)) for t in np.unique(s))
        assert choice.source == "validation" and choice.n_validation == 60
        assert choice.validation_f1 == pytest.approx(best_possible)


def test_cut_lies_midway_between_scores_and_ties_prefer_default():
    y = np.array([0, 0, 1, 1])
    s = np.array([0.1, 0.2, 0.8, 0.9])
    # Any cut in (0.2, 0.8] is perfect; the midpoint 0.5 is chosen.
    assert choose_threshold(s, y).threshold == pytest.approx(0.5)
    s2 = np.array([0.1, 0.2, 0.3, 0.4])
    assert choose_threshold(s2, y).threshold == pytest.approx(0.25)


def test_single_class_validation_falls_back_to_default():
    choice = choose_threshold([0.2, 0.9, 0.4], [0, 0, 0], default=0.5)
    assert choice.threshold == 0.5 and choice.source == "default"
    assert "all safe" in choice.note
    assert choose_threshold([], [], default=0.4).threshold == 0.4


def test_fixed_rule_and_unknown_rule():
    assert choose_threshold([0.1, 0.9], [0, 1], rule="fixed", default=0.7).threshold == 0.7
    with pytest.raises(ValueError, match="unknown threshold rule 'best'; valid: max_f1, fixed"):
        choose_threshold([0.1], [0], rule="best")


def test_signature_takes_no_test_data():
    params = list(inspect.signature(choose_threshold).parameters)
    assert params == ["val_scores", "val_labels", "rule", "default"]
