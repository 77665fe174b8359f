"""Binary classification metrics on numpy arrays, with ``unsafe`` (label 1) as the positive class.

Every function equals its scikit-learn counterpart (checked by the tests on random inputs):

| here                  | scikit-learn                                                          |
|-----------------------|-----------------------------------------------------------------------|
| `precision`           | ``precision_score(y, p, zero_division=0)``                            |
| `recall`              | ``recall_score(y, p, zero_division=0)``                               |
| `f1`                  | ``f1_score(y, p, zero_division=0)``                                   |
| `macro_f1`            | ``f1_score(y, p, average="macro", labels=[0, 1], zero_division=0)``   |
| `roc_auc`             | ``roc_auc_score(y, s)``: NaN when ``y`` holds one class               |
| `average_precision`   | ``average_precision_score(y, s)``: 0.0 when ``y`` has no positives    |
| `pr_curve`            | ``precision_recall_curve(y, s)``                                      |
| `roc_curve`           | ``roc_curve(y, s, drop_intermediate=False)``                          |

Undefined ratios follow scikit-learn's ``zero_division=0``: a class that is never predicted has
precision 0, a class that never occurs has recall 0. Macro-F1 always averages over both classes
{0, 1}, so a test set holding only safe rows has a macro-F1 of at most 0.5.

Pure numpy: no file, network or Ray access.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np


def _labels(y: Any, name: str = "y_true") -> np.ndarray:
    arr = np.asarray(y)
    if arr.ndim != 1:
        raise ValueError(f"{name} must be 1-D, got shape {arr.shape}")
    if arr.size and not np.isin(arr, (0, 1)).all():
        bad = sorted({v.item() if hasattr(v, "item") else v for v in arr[~np.isin(arr, (0, 1))]})
        raise ValueError(f"{name} must hold only 0 (safe) and 1 (unsafe); found {bad[:10]}")
    return arr.astype(np.int64)


def _scores(s: Any, n: int) -> np.ndarray:
    arr = np.asarray(s, dtype=np.float64)
    if arr.shape != (n,):
        raise ValueError(f"scores must have shape ({n},), got {arr.shape}")
    if not np.isfinite(arr).all():
        raise ValueError("scores contain NaN or infinite values")
    return arr


def _pair(y_true: Any, y_pred: Any) -> tuple[np.ndarray, np.ndarray]:
    t, p = _labels(y_true), _labels(y_pred, "y_pred")
    if t.shape != p.shape:
        raise ValueError(f"y_true has {t.size} values but y_pred has {p.size}")
    return t, p


def _div(num: float, den: float) -> float:
    return float(num) / float(den) if den else 0.0


def confusion(y_true: Any, y_pred: Any) -> dict[str, int]:
    """Confusion counts with unsafe (1) positive.

    Args:
        y_true: (n,) labels in {0, 1}.
        y_pred: (n,) predictions in {0, 1}.

    Returns:
        ``{"tn", "fp", "fn", "tp"}`` as ints.
    """
    t, p = _pair(y_true, y_pred)
    return {
        "tn": int(np.sum((t == 0) & (p == 0))),
        "fp": int(np.sum((t == 0) & (p == 1))),
        "fn": int(np.sum((t == 1) & (p == 0))),
        "tp": int(np.sum((t == 1) & (p == 1))),
    }


def _f1_from(tp: int, fp: int, fn: int) -> float:
    # sklearn >= 1.3 defines F1 = 2tp / (2tp + fp + fn), zero_division when the denominator is 0.
    return _div(2 * tp, 2 * tp + fp + fn)


def precision(y_true: Any, y_pred: Any) -> float:
    """tp / (tp + fp); 0 when nothing is predicted unsafe."""
    c = confusion(y_true, y_pred)
    return _div(c["tp"], c["tp"] + c["fp"])


def recall(y_true: Any, y_pred: Any) -> float:
    """tp / (tp + fn); 0 when no row is unsafe."""
    c = confusion(y_true, y_pred)
    return _div(c["tp"], c["tp"] + c["fn"])


def f1(y_true: Any, y_pred: Any) -> float:
    """F1 of the unsafe class: 2tp / (2tp + fp + fn); 0 when undefined."""
    c = confusion(y_true, y_pred)
    return _f1_from(c["tp"], c["fp"], c["fn"])


def macro_f1(y_true: Any, y_pred: Any) -> float:
    """Mean of the F1 of the unsafe class and the F1 of the safe class."""
    c = confusion(y_true, y_pred)
    return (_f1_from(c["tp"], c["fp"], c["fn"]) + _f1_from(c["tn"], c["fn"], c["fp"])) / 2


def accuracy(y_true: Any, y_pred: Any) -> float:
    """Fraction of correct predictions (0 for empty input)."""
    t, p = _pair(y_true, y_pred)
    return _div(np.sum(t == p), t.size)


def _average_ranks(x: np.ndarray) -> np.ndarray:
    """1-based ranks of ``x``, ties sharing their average rank (scipy's ``rankdata``)."""
    order = np.argsort(x, kind="mergesort")
    xs = x[order]
    # Start of each group of equal values, and each group's average rank.
    starts = np.flatnonzero(np.r_[True, xs[1:] != xs[:-1]])
    ends = np.r_[starts[1:], xs.size]
    group_rank = (starts + 1 + ends) / 2.0  # mean of ranks starts+1 .. ends
    ranks = np.empty(x.size, dtype=np.float64)
    ranks[order] = np.repeat(group_rank, ends - starts)
    return ranks


def roc_auc(y_true: Any, scores: Any) -> float:
    """Area under the ROC curve (Mann-Whitney U with tied scores counted half).

    Args:
        y_true: (n,) labels in {0, 1}.
        scores: (n,) scores, higher meaning more likely unsafe.

    Returns:
        AUROC in [0, 1]; NaN when ``y_true`` holds a single class (undefined).
    """
    t = _labels(y_true)
    s = _scores(scores, t.size)
    n_pos = int(t.sum())
    n_neg = t.size - n_pos
    if n_pos == 0 or n_neg == 0:
        return math.nan
    ranks = _average_ranks(s)
    u = ranks[t == 1].sum() - n_pos * (n_pos + 1) / 2.0
    return float(u / (n_pos * n_neg))


def _cumulative(t: np.ndarray, s: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """True/false positive counts when predicting unsafe for scores >= each distinct score.

    Returns:
        ``(tps, fps, thresholds)``, each (k,) for the k distinct scores in decreasing order.
    """
    order = np.argsort(-s, kind="mergesort")
    s_sorted, t_sorted = s[order], t[order]
    last_of_group = np.r_[np.flatnonzero(np.diff(s_sorted)), t.size - 1]
    tps = np.cumsum(t_sorted)[last_of_group].astype(np.float64)
    fps = (last_of_group + 1) - tps
    return tps, fps, s_sorted[last_of_group]


def pr_curve(y_true: Any, scores: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Precision-recall pairs per threshold, as ``sklearn.metrics.precision_recall_curve``.

    Returns:
        ``(precision, recall, thresholds)``: precision and recall have k + 1 entries (the last
        point is precision 1, recall 0), thresholds k entries in increasing order. With no
        positive rows recall is 1 everywhere (scikit-learn's convention).
    """
    t = _labels(y_true)
    s = _scores(scores, t.size)
    if t.size == 0:
        raise ValueError("pr_curve needs at least one row")
    tps, fps, thr = _cumulative(t, s)
    prec = np.divide(tps, tps + fps, out=np.zeros_like(tps), where=(tps + fps) != 0)
    rec = np.ones_like(tps) if tps[-1] == 0 else tps / tps[-1]
    # Reverse so that recall decreases and thresholds increase (scikit-learn's order).
    return np.r_[prec[::-1], 1.0], np.r_[rec[::-1], 0.0], thr[::-1]


def average_precision(y_true: Any, scores: Any) -> float:
    """AP = sum over thresholds of (R_k - R_{k-1}) * P_k: the area under the PR curve (AUPRC).

    Returns:
        AP in [0, 1]; 0.0 when no row is unsafe (scikit-learn's value; it warns there).
    """
    prec, rec, _ = pr_curve(y_true, scores)
    return float(max(0.0, -np.sum(np.diff(rec) * prec[:-1])))


def roc_curve(y_true: Any, scores: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """ROC points, as ``sklearn.metrics.roc_curve(..., drop_intermediate=False)``.

    Returns:
        ``(fpr, tpr, thresholds)`` with a leading (0, 0) point at threshold +inf. Rates over a
        class with no rows are NaN.
    """
    t = _labels(y_true)
    s = _scores(scores, t.size)
    tps, fps, thr = _cumulative(t, s)
    tps, fps = np.r_[0.0, tps], np.r_[0.0, fps]
    with np.errstate(invalid="ignore", divide="ignore"):
        fpr = fps / fps[-1] if fps[-1] else np.full_like(fps, np.nan)
        tpr = tps / tps[-1] if tps[-1] else np.full_like(tps, np.nan)
    return fpr, tpr, np.r_[np.inf, thr]


def compute_metrics(y_true: Any, scores: Any, threshold: float) -> dict[str, Any]:
    """All metrics of one evaluation: predictions are ``score >= threshold``.

    Args:
        y_true: (n,) labels in {0, 1}.
        scores: (n,) scores (P(unsafe), or 0/1 for a hard classifier).
        threshold: decision threshold.

    Returns:
        ``n, n_unsafe, n_safe, precision, recall, f1, macro_f1, accuracy, fpr, fnr, auroc,
        auprc, threshold, confusion``. ``fpr`` = FP / (FP + TN), the share of safe rows
        flagged unsafe (the figure that matters on an all-safe set); ``fnr`` = FN / (FN + TP).
        AUROC is NaN for single-class data.
    """
    t = _labels(y_true)
    s = _scores(scores, t.size)
    pred = (s >= threshold).astype(np.int64)
    c = confusion(t, pred)
    return {
        "n": int(t.size),
        "n_unsafe": int(t.sum()),
        "n_safe": int(t.size - t.sum()),
        "precision": _div(c["tp"], c["tp"] + c["fp"]),
        "recall": _div(c["tp"], c["tp"] + c["fn"]),
        "f1": _f1_from(c["tp"], c["fp"], c["fn"]),
        "macro_f1": (_f1_from(c["tp"], c["fp"], c["fn"])
                     + _f1_from(c["tn"], c["fn"], c["fp"])) / 2,
        "accuracy": _div(c["tp"] + c["tn"], t.size),
        "fpr": _div(c["fp"], c["fp"] + c["tn"]),
        "fnr": _div(c["fn"], c["fn"] + c["tp"]),
        "auroc": roc_auc(t, s) if t.size else math.nan,
        "auprc": average_precision(t, s) if t.size else math.nan,
        "threshold": float(threshold),
        "confusion": c,
    }


def nan_to_none(value: Any) -> Any:
    """``value`` with every NaN/inf float replaced by None (JSON has no NaN), recursively."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: nan_to_none(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [nan_to_none(v) for v in value]
    if isinstance(value, np.generic):
        return nan_to_none(value.item())
    return value
