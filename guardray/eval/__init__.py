"""Evaluation of guardrail classifiers and LLM judges: metrics, thresholds, datasets, reports.

Modules:
    metrics: binary metrics (precision/recall/F1 with unsafe positive, macro-F1, AUROC, AUPRC)
        on numpy arrays; equal to scikit-learn's.
    threshold: the decision threshold, chosen on validation scores only.
    datasets: reading labelled JSONL/CSV/Parquet files with column mapping and label
        normalisation.
    benchmarks: the papers' public benchmarks (hub loaders, binary label mappings).
    predict: batch inference of a Hugging Face classifier on Ray Data.
    judges: the LLM-judge templates of UniGuard A.3, answer parsing, and the judge runner.
    runner: one evaluation run (a model or a judge over datasets) -> metrics + predictions.
    report: Markdown / HTML reports with plots.
    config: ``EvaluateConfig`` (job ``evaluate``) and ``JudgeConfig``.

Importing this package imports nothing heavy (no torch, Ray or matplotlib).
"""
