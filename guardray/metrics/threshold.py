"""Choosing the decision threshold of a classifier on validation data, never on test labels.

A row is predicted unsafe when its score (P(unsafe)) is ``>= threshold``.

Rules:
    ``max_f1``: the threshold maximising the unsafe-class F1 on the validation rows. Candidate
        cuts lie between consecutive distinct validation scores; the chosen cut is placed at
        the midpoint between the lowest score predicted unsafe and the next lower score, so a
        test score equal to neither side is not decided by an arbitrary tie. Among equally good
        cuts the one closest to ``default`` (0.5, the argmax decision) wins. A validation set
        holding a single class cannot rank cuts: ``default`` is used, and the reason recorded.
    ``fixed``: ``default`` as given (0.5 is the classifier's own argmax decision).

`choose_threshold` takes the validation scores and labels only: test labels cannot reach it.
"""

from __future__ import annotations

import dataclasses
import logging
from typing import Any, Literal

import numpy as np

from guardray.metrics import binary as metrics

log = logging.getLogger(__name__)

Rule = Literal["max_f1", "fixed"]
RULES: tuple[str, ...] = ("max_f1", "fixed")


@dataclasses.dataclass(frozen=True)
class ThresholdChoice:
    """A chosen threshold and how it was chosen.

    Attributes:
        threshold: the decision threshold (predict unsafe iff score >= threshold).
        rule: ``max_f1`` or ``fixed``.
        source: where it came from: ``validation`` (chosen on validation rows), ``default``
            (fixed rule, or fallback), or ``checkpoint`` (stored with a fine-tuned model).
        n_validation: validation rows used (0 when none).
        validation_f1: unsafe F1 on the validation rows at ``threshold`` (None without rows).
        note: why a fallback was taken, if one was.
    """

    threshold: float
    rule: str
    source: str
    n_validation: int = 0
    validation_f1: float | None = None
    note: str = ""

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def choose_threshold(
    val_scores: Any, val_labels: Any, *, rule: Rule = "max_f1", default: float = 0.5
) -> ThresholdChoice:
    """Pick the decision threshold from validation scores and labels.

    Args:
        val_scores: (n,) validation P(unsafe) scores.
        val_labels: (n,) validation labels in {0, 1}.
        rule: ``max_f1`` or ``fixed`` (see the module docstring).
        default: the threshold of the ``fixed`` rule and of fallbacks.

    Returns:
        The `ThresholdChoice`.

    Raises:
        ValueError: unknown rule, or mismatched/invalid arrays.
    """
    if rule not in RULES:
        raise ValueError(f"unknown threshold rule {rule!r}; valid: {', '.join(RULES)}")
    y = np.asarray(val_labels)
    s = np.asarray(val_scores, dtype=np.float64)
    if y.shape != s.shape:
        raise ValueError(f"{s.size} validation scores but {y.size} validation labels")

    def val_f1(t: float) -> float | None:
        return metrics.f1(y, (s >= t).astype(np.int64)) if y.size else None

    if rule == "fixed":
        return ThresholdChoice(default, rule, "default", int(y.size), val_f1(default))
    if y.size == 0:
        return ThresholdChoice(default, rule, "default", 0, None, "no validation rows")
    metrics.roc_auc(y, s)  # validates labels and scores (0/1, finite) with clear errors
    if y.min() == y.max():
        note = f"validation rows are all {'unsafe' if y[0] else 'safe'}: F1 cannot rank cuts"
        log.warning("threshold: %s; using %s", note, default)
        return ThresholdChoice(default, rule, "default", int(y.size), val_f1(default), note)
    threshold = _max_f1_cut(y.astype(np.int64), s, default)
    return ThresholdChoice(threshold, rule, "validation", int(y.size), val_f1(threshold))


def _max_f1_cut(y: np.ndarray, s: np.ndarray, default: float) -> float:
    """The F1-maximising cut (midpoint placement, ties broken towards ``default``)."""
    tps, fps, thr = metrics._cumulative(y, s)  # thresholds: distinct scores, decreasing
    n_pos = float(y.sum())
    f1 = 2 * tps / (tps + fps + n_pos)  # 2tp / (2tp + fp + fn) with fn = n_pos - tp
    # Cut k predicts unsafe for scores >= thr[k]; place it midway to the next lower score.
    lower = np.r_[thr[1:], thr[-1]]
    cuts = np.where(np.arange(thr.size) < thr.size - 1, (thr + lower) / 2, thr)
    best = np.flatnonzero(np.isclose(f1, f1.max(), rtol=0, atol=1e-12))
    return float(cuts[best[np.argmin(np.abs(cuts[best] - default))]])
