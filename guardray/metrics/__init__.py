"""Metrics shared by fine-tuning, evaluation and the merge search (pure numpy).

Modules:
    binary: precision / recall / F1 with unsafe as the positive class, macro-F1, AUROC,
        AUPRC, PR curves (equal to scikit-learn's).
    threshold: the decision threshold, chosen on validation scores only.
"""
