"""The ``evaluate`` stage: guard classifiers and LLM judges on labelled data -> metrics, reports.

Modules:
    columns: names of the columns evaluation adds (score, prediction, ...).
    predict: batch inference of a Hugging Face classifier on Ray Data.
    judges: the LLM-judge templates of UniGuard A.3, answer parsing, and the judge runner.
    results: the per-dataset records, written and read back.
    runner: `run_evaluation`, one evaluation (a model or a judge over datasets).
    report: Markdown / HTML reports with plots.
    config: ``EvaluateConfig`` (job ``evaluate``) and ``JudgeConfig``.

Shared pieces live below the stages: the metrics and the decision threshold in
`guardray.metrics`, labelled files and public benchmarks in `guardray.data`. Importing this
package imports nothing heavy (no torch, Ray or matplotlib).
"""

from guardray._lazy import lazy_exports

__getattr__, __all__ = lazy_exports(__name__, {
    "EvaluateConfig": "config",
    "run_evaluation": "runner",
    "EvaluationError": "results",
    "METRICS_JSON": "results",
    "DatasetResult": "results",
    "load_results": "results",
    "compare_evaluations": "report",
    "PredictError": "predict",
    "ClassifierPredictor": "predict",
    "PredictorSpec": "predict",
    "unsafe_index": "predict",
    "JudgeUnavailableError": "judges",
    "build_response_messages": "judges",
    "parse_answer": "judges",
})
