"""Synthetic rows whose label a model trained on real rows strongly disputes (pure numpy).

GuardFormer's self-reflection relabels synthetic rows with the generator itself; a 135M
generator cannot do that (it flips correct labels as often as wrong ones). Here the check is
done by a model that can: an L2-regularised logistic regression on sentence embeddings of the
real rows of a policy (its own examples and imported collections), fitted by Newton's method:

    w* = argmin_w  sum_i log(1 + exp(-s_i x_i^T w)) + (lambda / 2) ||w||^2,   s_i = 2 y_i - 1

A synthetic row is *disputed* when that model gives its label a probability below
``1 - confidence`` (it is at least ``confidence`` sure of the other label). What to do with
disputed rows (report only, or drop) is the caller's choice.
"""

from __future__ import annotations

import numpy as np


def fit_logistic(x: np.ndarray, y: np.ndarray, *, l2: float = 1.0, iters: int = 25,
                 tol: float = 1e-8) -> np.ndarray:
    """Weights ``(d + 1,)`` (bias last) of the regularised logistic regression above.

    Args:
        x: ``(n, d)`` features (embeddings).
        y: ``(n,)`` labels in {0, 1}.
        l2: ``lambda``; the bias is not regularised.
        iters / tol: Newton steps and the stopping size of a step.
    """
    xb = np.hstack([np.asarray(x, dtype=np.float64), np.ones((len(x), 1))])
    y = np.asarray(y, dtype=np.float64)
    reg = np.full(xb.shape[1], float(l2))
    reg[-1] = 0.0
    w = np.zeros(xb.shape[1])
    for _ in range(iters):
        p = 1.0 / (1.0 + np.exp(-(xb @ w)))
        grad = xb.T @ (p - y) + reg * w
        hess = (xb * (p * (1 - p))[:, None]).T @ xb + np.diag(reg + 1e-9)
        step = np.linalg.solve(hess, grad)
        w -= step
        if np.max(np.abs(step)) < tol:
            break
    return w


def predict_unsafe(w: np.ndarray, x: np.ndarray) -> np.ndarray:
    """``(n,)`` P(unsafe) under weights from `fit_logistic`."""
    z = np.asarray(x, dtype=np.float64) @ w[:-1] + w[-1]
    return 1.0 / (1.0 + np.exp(-z))


def disputed(emb: np.ndarray, labels: np.ndarray, policies: np.ndarray, real: np.ndarray,
             candidate: np.ndarray, *, confidence: float = 0.9, l2: float = 1.0,
             min_real: int = 8) -> tuple[np.ndarray, np.ndarray]:
    """Which candidate rows a per-policy model of the real rows disputes.

    Args:
        emb: ``(n, d)`` embeddings of every row.
        labels: ``(n,)`` 0/1 labels.
        policies: ``(n,)`` policy ids.
        real: ``(n,)`` bool, rows to learn from (real, training split).
        candidate: ``(n,)`` bool, rows to check (synthetic).
        confidence: how sure of the other label the model must be.
        l2: regularisation.
        min_real: a policy needs at least this many real rows of each label to be judged;
            its candidates are otherwise left alone (never flagged).

    Returns:
        ``(flags, p_unsafe)``: ``(n,)`` bool (only candidates can be True) and the model's
        P(unsafe) for each candidate (NaN elsewhere and for policies that were not judged).
    """
    labels = np.asarray(labels)
    policies = np.asarray(policies)
    flags = np.zeros(len(labels), dtype=bool)
    p_unsafe = np.full(len(labels), np.nan)
    for policy in np.unique(policies[candidate]):
        train = real & (policies == policy)
        if min(int((labels[train] == 0).sum()), int((labels[train] == 1).sum())) < min_real:
            continue
        w = fit_logistic(emb[train], labels[train], l2=l2)
        idx = np.flatnonzero(candidate & (policies == policy))
        p = predict_unsafe(w, emb[idx])
        p_unsafe[idx] = p
        p_label = np.where(labels[idx] == 1, p, 1.0 - p)
        flags[idx] = p_label < 1.0 - confidence
    return flags, p_unsafe
