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
    valid = "valid: max_f1, max_f1_1se, fixed"
    with pytest.raises(ValueError, match=f"unknown threshold rule 'best'; {valid}"):
        choose_threshold([0.1], [0], rule="best")


def test_signature_takes_no_test_data():
    params = list(inspect.signature(choose_threshold).parameters)
    assert params == ["val_scores", "val_labels", "rule", "default"]


def _f1(y, pred):
    return skm.f1_score(y, pred, zero_division=0.0)


def test_bootstrap_se_matches_a_direct_loop():
    from guardray.metrics.threshold import bootstrap_f1_se

    rng = np.random.default_rng(3)
    y = rng.integers(0, 2, 40)
    s = np.clip(rng.normal(0.3 + 0.4 * y, 0.25), 0, 1)
    idx = np.random.default_rng(0).integers(0, 40, size=(50, 40))
    direct = [_f1(y[i], (s[i] >= 0.5).astype(int)) for i in idx]
    assert bootstrap_f1_se(y, s, 0.5, n=50, seed=0) == pytest.approx(np.std(direct, ddof=1))


def test_one_se_rule_keeps_the_default_when_validation_cannot_tell():
    # 10 unsafe rows, 10 safe; the max-F1 cut (0.95) beats 0.5 by one false positive only.
    y = np.array([1] * 10 + [0] * 10)
    s = np.array([0.99] * 9 + [0.97] + [0.9] + [0.01] * 9)
    best = choose_threshold(s, y)
    assert best.threshold == pytest.approx(0.935) and best.validation_f1 == pytest.approx(1.0)
    choice = choose_threshold(s, y, rule="max_f1_1se")
    # F1 at 0.5: tp 10, fp 1 -> 20 / 21 = 0.952; SE of F1 at 0.935 on these rows is 0 (every
    # resample is separated perfectly), so 0.5 does NOT qualify and the best cut stays.
    assert choice.threshold == pytest.approx(0.935)
    # With one unsafe row among the low scores the max-F1 cut is no longer perfect, its
    # bootstrap SE is positive, and 0.5 (F1 within it) is kept.
    y2 = y.copy()
    y2[-1] = 1
    s2 = s.copy()
    b2 = choose_threshold(s2, y2)
    c2 = choose_threshold(s2, y2, rule="max_f1_1se")
    f1_half = _f1(y2, (s2 >= 0.5).astype(int))
    assert f1_half < b2.validation_f1
    assert c2.threshold == 0.5 and c2.validation_f1 == pytest.approx(f1_half)
    assert "one-SE rule" in c2.note and c2.rule == "max_f1_1se"


def test_one_se_rule_moves_off_the_default_when_the_gain_is_clear():
    # 200 rows: every safe row scores 0.6-0.7, so 0.5 flags them all; the cut at 0.75 is
    # far better than one SE, and among the qualifying cuts the one nearest 0.5 is chosen.
    y = np.array([1] * 100 + [0] * 100)
    s = np.r_[np.linspace(0.8, 0.99, 100), np.linspace(0.6, 0.7, 100)]
    choice = choose_threshold(s, y, rule="max_f1_1se")
    assert choice.threshold == pytest.approx(0.75)
    assert choice.validation_f1 == pytest.approx(1.0)
