"""Choosing the decision threshold of a classifier on validation data, never on test labels.

A row is predicted unsafe when its score (P(unsafe)) is ``>= threshold``.

Rules:
    ``max_f1``: the threshold maximising the unsafe-class F1 on the validation rows. Candidate
        cuts lie between consecutive distinct validation scores; the chosen cut is placed at
        the midpoint between the lowest score predicted unsafe and the next lower score, so a
        test score equal to neither side is not decided by an arbitrary tie. Among equally good
        cuts the one closest to ``default`` (0.5, the argmax decision) wins. A validation set
        holding a single class cannot rank cuts: ``default`` is used, and the reason recorded.
    ``max_f1_1se``: the one-standard-error rule (Breiman et al. 1984, *Classification and
        Regression Trees*, sec. 3.4.3) applied to the cut: among the cuts whose validation F1
        is within one standard error of the best,

            T = { t : F1(t) >= F1(t*) - SE },   t* = the ``max_f1`` cut,

        the one closest to ``default`` wins (``default`` itself when it is in T). SE is the
        bootstrap standard error of F1(t*) over the validation rows (``N_BOOTSTRAP``
        resamples, a fixed seed, so the choice is deterministic). On a small validation set
        a confident model scores most rows near 0 or 1, every cut in between has about the
        same F1, and ``max_f1`` lands anywhere in that gap; this rule moves off the
        classifier's own decision (0.5 for a class-balanced loss) only as far as the
        validation rows show it is better.
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

Rule = Literal["max_f1", "max_f1_1se", "fixed"]
RULES: tuple[str, ...] = ("max_f1", "max_f1_1se", "fixed")
N_BOOTSTRAP = 200


@dataclasses.dataclass(frozen=True)
class ThresholdChoice:
    """A chosen threshold and how it was chosen.

    Attributes:
        threshold: the decision threshold (predict unsafe iff score >= threshold).
        rule: ``max_f1``, ``max_f1_1se`` or ``fixed``.
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
        rule: ``max_f1``, ``max_f1_1se`` or ``fixed`` (see the module docstring).
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
    note = ""
    if rule == "max_f1_1se":
        best_f1 = val_f1(threshold)
        se = bootstrap_f1_se(y.astype(np.int64), s, threshold)
        chosen = _one_se_cut(y.astype(np.int64), s, default, best_f1 - se)
        note = (f"one-SE rule: max-F1 cut {threshold:.4f} (F1 {best_f1:.4f}, bootstrap SE "
                f"{se:.4f}); chose {chosen:.4f}")
        threshold = chosen
    return ThresholdChoice(threshold, rule, "validation", int(y.size), val_f1(threshold), note)


def bootstrap_f1_se(y: np.ndarray, s: np.ndarray, threshold: float,
                    n: int = N_BOOTSTRAP, seed: int = 0) -> float:
    """Bootstrap standard error of the unsafe F1 at a fixed cut.

    Args:
        y: (m,) labels in {0, 1}; s: (m,) scores; threshold: the cut.
        n: resamples (rows drawn with replacement, m per resample); seed: their generator.

    Returns:
        The sample standard deviation (ddof=1) of the n resampled F1 values (a resample with
        no unsafe row and no unsafe prediction has F1 0, as `guardray.metrics.binary.f1`).
    """
    pred = (s >= threshold).astype(np.int64)
    idx = np.random.default_rng(seed).integers(0, y.size, size=(n, y.size))
    yb, pb = y[idx], pred[idx]
    tp = (yb & pb).sum(axis=1)
    denom = yb.sum(axis=1) + pb.sum(axis=1)  # 2tp + fp + fn
    f1 = np.where(denom > 0, 2 * tp / np.maximum(denom, 1), 0.0)
    return float(f1.std(ddof=1))


def _one_se_cut(y: np.ndarray, s: np.ndarray, default: float, floor: float) -> float:
    """The cut closest to ``default`` whose F1 is >= ``floor`` (``default`` if it qualifies)."""
    if metrics.f1(y, (s >= default).astype(np.int64)) >= floor - 1e-12:
        return float(default)
    cuts, f1 = _cuts_and_f1(y, s)
    return _nearest(cuts, np.flatnonzero(f1 >= floor - 1e-12), default)


def _max_f1_cut(y: np.ndarray, s: np.ndarray, default: float) -> float:
    """The F1-maximising cut (midpoint placement, ties broken towards ``default``)."""
    cuts, f1 = _cuts_and_f1(y, s)
    return _nearest(cuts, np.flatnonzero(np.isclose(f1, f1.max(), rtol=0, atol=1e-12)), default)


def _cuts_and_f1(y: np.ndarray, s: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Every distinct cut and its F1: cut k predicts unsafe for scores >= the k-th highest
    distinct score and is placed midway to the next lower score."""
    tps, fps, thr = metrics._cumulative(y, s)  # thresholds: distinct scores, decreasing
    f1 = 2 * tps / (tps + fps + float(y.sum()))  # 2tp / (2tp + fp + fn), fn = n_pos - tp
    lower = np.r_[thr[1:], thr[-1]]
    cuts = np.where(np.arange(thr.size) < thr.size - 1, (thr + lower) / 2, thr)
    return cuts, f1


def _nearest(cuts: np.ndarray, eligible: np.ndarray, default: float) -> float:
    """The eligible cut (indices into ``cuts``) closest to ``default``."""
    return float(cuts[eligible[np.argmin(np.abs(cuts[eligible] - default))]])
