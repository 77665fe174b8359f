"""guardray.metrics.binary equals scikit-learn on random inputs and edge cases."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
from sklearn import metrics as skm

from guardray.metrics import binary as M


def _random_case(rng: np.random.Generator, n: int, ties: bool):
    y = rng.integers(0, 2, n)
    s = rng.random(n)
    if ties:  # few distinct scores: ties inside and across classes
        s = np.round(s * 4) / 4
    return y, s


SIZES = ((7, False), (50, True), (200, False))
CASES = [(seed, n, ties) for seed in range(12) for n, ties in SIZES]


@pytest.mark.parametrize("seed,n,ties", CASES)
def test_equal_to_sklearn_on_random_inputs(seed, n, ties):
    rng = np.random.default_rng(seed)
    y, s = _random_case(rng, n, ties)
    if y.min() == y.max():
        y[0] = 1 - y[0]
    thr = float(rng.choice([0.25, 0.5, 0.75]))
    p = (s >= thr).astype(int)
    assert M.precision(y, p) == pytest.approx(skm.precision_score(y, p, zero_division=0))
    assert M.recall(y, p) == pytest.approx(skm.recall_score(y, p, zero_division=0))
    assert M.f1(y, p) == pytest.approx(skm.f1_score(y, p, zero_division=0))
    assert M.macro_f1(y, p) == pytest.approx(
        skm.f1_score(y, p, average="macro", labels=[0, 1], zero_division=0))
    assert M.accuracy(y, p) == pytest.approx(skm.accuracy_score(y, p))
    assert M.roc_auc(y, s) == pytest.approx(skm.roc_auc_score(y, s))
    assert M.average_precision(y, s) == pytest.approx(skm.average_precision_score(y, s))
    for mine, theirs in zip(M.pr_curve(y, s), skm.precision_recall_curve(y, s)):
        np.testing.assert_allclose(mine, theirs)
    for mine, theirs in zip(M.roc_curve(y, s), skm.roc_curve(y, s, drop_intermediate=False)):
        np.testing.assert_allclose(mine, theirs)
    tn, fp, fn, tp = skm.confusion_matrix(y, p, labels=[0, 1]).ravel()
    assert M.confusion(y, p) == {"tn": tn, "fp": fp, "fn": fn, "tp": tp}
    out = M.compute_metrics(y, s, thr)
    assert out["f1"] == pytest.approx(skm.f1_score(y, p, zero_division=0))
    assert out["n"] == n and out["n_unsafe"] == int(y.sum()) and out["threshold"] == thr


@pytest.mark.parametrize("y,p", [
    ([0, 0, 0, 0], [0, 0, 0, 0]),      # single class, all correct
    ([0, 0, 0, 0], [0, 1, 0, 1]),      # single class (safe), false alarms
    ([1, 1, 1], [1, 1, 1]),            # single class (unsafe), all correct
    ([1, 1, 1], [0, 0, 0]),            # nothing predicted unsafe
    ([0, 1, 0, 1], [0, 0, 0, 0]),
    ([0, 1, 0, 1], [1, 1, 1, 1]),
    ([1], [0]),
])
def test_label_edge_cases_equal_sklearn(y, p):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert M.precision(y, p) == skm.precision_score(y, p, zero_division=0)
        assert M.recall(y, p) == skm.recall_score(y, p, zero_division=0)
        assert M.f1(y, p) == skm.f1_score(y, p, zero_division=0)
        assert M.macro_f1(y, p) == pytest.approx(
            skm.f1_score(y, p, average="macro", labels=[0, 1], zero_division=0))


@pytest.mark.parametrize("y", [[0, 0, 0], [1, 1, 1, 1]])
def test_single_class_scores(y):
    s = np.linspace(0.1, 0.9, len(y))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        sk_auc = skm.roc_auc_score(y, s)
        sk_ap = skm.average_precision_score(y, s)
    assert math.isnan(M.roc_auc(y, s)) and math.isnan(sk_auc)
    assert M.average_precision(y, s) == sk_ap


def test_all_scores_tied_and_constant_predictions():
    y, s = [0, 1, 1, 0, 1], [0.5] * 5
    assert M.roc_auc(y, s) == skm.roc_auc_score(y, s) == 0.5
    assert M.average_precision(y, s) == pytest.approx(skm.average_precision_score(y, s))


def test_hard_labels_as_scores_equal_sklearn():
    """Judges give 0/1 answers: AUROC/AUPRC of hard scores match sklearn too."""
    rng = np.random.default_rng(3)
    y, p = rng.integers(0, 2, 40), rng.integers(0, 2, 40)
    assert M.roc_auc(y, p) == pytest.approx(skm.roc_auc_score(y, p))
    assert M.average_precision(y, p) == pytest.approx(skm.average_precision_score(y, p))


def test_bad_inputs_are_named():
    with pytest.raises(ValueError, match=r"only 0 \(safe\) and 1 \(unsafe\); found \[2\]"):
        M.f1([0, 2], [0, 1])
    with pytest.raises(ValueError, match="y_true has 2 values but y_pred has 3"):
        M.f1([0, 1], [0, 1, 1])
    with pytest.raises(ValueError, match="NaN"):
        M.roc_auc([0, 1], [0.1, float("nan")])


def test_false_positive_and_negative_rates_by_hand():
    # predictions at 0.5: [1, 0, 0, 1, 0] -> TN 2, FP 1, TP 1, FN 1
    out = M.compute_metrics([0, 0, 0, 1, 1], [0.9, 0.1, 0.2, 0.8, 0.3], 0.5)
    assert out["fpr"] == pytest.approx(1 / 3) and out["fnr"] == pytest.approx(0.5)
    # an all-safe set (alarming-but-safe prompts): the FPR is the share flagged unsafe
    safe = M.compute_metrics([0, 0, 0, 0], [0.7, 0.2, 0.1, 0.4], 0.5)
    assert safe["fpr"] == pytest.approx(0.25) and safe["n_unsafe"] == 0
