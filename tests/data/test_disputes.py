"""Disputed synthetic rows (`guardray.data.disputes`): the fit, and who gets flagged."""

from __future__ import annotations

import numpy as np
import pytest

from guardray.data.disputes import disputed, fit_logistic, predict_unsafe


def test_fit_matches_the_stationarity_condition():
    """At the optimum the gradient of eq. (loss + l2/2 |w|^2, bias free) is zero."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(200, 3))
    y = (x @ np.array([2.0, -1.0, 0.5]) + rng.normal(scale=0.5, size=200) > 0).astype(int)
    w = fit_logistic(x, y, l2=0.5)
    p = predict_unsafe(w, x)
    grad = np.hstack([x, np.ones((200, 1))]).T @ (p - y) + np.r_[0.5 * w[:-1], 0.0]
    assert np.abs(grad).max() < 1e-6
    assert ((p > 0.5) == y).mean() > 0.85


def test_only_confidently_contradicted_candidates_are_flagged():
    rng = np.random.default_rng(1)
    real_x = np.vstack([rng.normal(-3, 1, size=(30, 2)), rng.normal(3, 1, size=(30, 2))])
    real_y = np.r_[np.zeros(30), np.ones(30)].astype(int)
    cand_x = np.array([[3.0, 3.0], [-3.0, -3.0], [0.0, 0.0], [3.0, 3.0]])
    cand_y = np.array([0, 0, 1, 1])  # wrong, right, ambiguous, right
    emb = np.vstack([real_x, cand_x])
    labels = np.r_[real_y, cand_y]
    policies = np.array(["safety"] * len(labels))
    real = np.r_[np.ones(60, bool), np.zeros(4, bool)]
    flags, p = disputed(emb, labels, policies, real, ~real, confidence=0.9)
    assert list(flags[60:]) == [True, False, False, False]
    assert not flags[:60].any() and np.isnan(p[:60]).all()
    assert p[60] > 0.9 and p[61] < 0.1


def test_a_policy_without_enough_real_rows_is_not_judged():
    emb = np.vstack([np.zeros((3, 2)), np.ones((3, 2))])
    labels = np.array([0, 1, 0, 1, 1, 0])
    policies = np.array(["tax"] * 6)
    real = np.array([True, True, True, False, False, False])
    flags, p = disputed(emb, labels, policies, real, ~real, min_real=8)
    assert not flags.any() and np.isnan(p).all()


@pytest.mark.parametrize("confidence", [0.6, 0.99])
def test_confidence_is_a_threshold_on_the_other_label(confidence):
    emb = np.array([[-2.0], [-1.5], [-1.0], [1.0], [1.5], [2.0], [0.2]])
    labels = np.array([0, 0, 0, 1, 1, 1, 0])
    real = np.array([True] * 6 + [False])
    flags, p = disputed(emb, labels, np.array(["x"] * 7), real, ~real, confidence=confidence,
                        min_real=3)
    assert flags[6] == (p[6] > confidence)
