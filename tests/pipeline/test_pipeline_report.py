"""The pipeline report's tables (`guardray.pipeline.report`, `guardray.pipeline.evaluation`)."""

from __future__ import annotations

import pandas as pd

from guardray import schema as S
from guardray.pipeline.config import TargetSection
from guardray.pipeline.evaluation import check_targets, judged_sample
from guardray.pipeline.report import Report


def _rec(n, macro_f1, fpr, n_unsafe=10, **extra):
    return {"n": n, "macro_f1": macro_f1, "fpr": fpr, "n_unsafe": n_unsafe, **extra}


def test_quality_row_and_targets():
    row = {"policy": "safety", "model": "safety/seed0", "test": _rec(300, 0.9, 0.05),
           "cross_source": _rec(200, 0.86, 0.08), "judged_guard": _rec(60, 0.88, 0.1),
           "judged_judge": _rec(60, 0.60, 0.3, n_unparseable=5),
           "alarming_safe": _rec(34, 0.0, 0.09, n_unsafe=0)}
    assert check_targets(row, TargetSection()) == "met"
    row["alarming_safe"] = _rec(34, 0.0, 0.2, n_unsafe=0)
    row["judged_judge"]["macro_f1"] = 0.7
    assert check_targets(row, TargetSection()) == (
        "missed: gain over the judge 0.180 < 0.2; alarming-safe FPR 0.200 > 0.1")
    assert check_targets({**row, "policy": "tax"}, TargetSection()) is None
    # a run without the judge (evaluation.judge=null) has not met that target: it says why
    unjudged = {k: v for k, v in row.items() if not k.startswith("judged")}
    assert check_targets(unjudged, TargetSection()) == (
        "missed: gain over the judge not measured; alarming-safe FPR 0.200 > 0.1")
    report = Report(quality=[{**row, "targets": check_targets(row, TargetSection())}])
    text = report.markdown(1.0)
    line = next(x for x in text.splitlines() if x.startswith("| safety |"))
    assert "| 0.900 (300) | 0.860 (200) | 0.880 / 0.700 (60, 5 unparsed) | 0.200 (34) |" in line


def test_a_safe_only_set_reports_its_false_positive_rate():
    row = {"policy": "tax", "model": "tax/seed0", "test": _rec(240, 0.8, 0.01),
           "cross_source": _rec(151, 0.5, 0.02, n_unsafe=0)}
    text = Report(quality=[row]).markdown(1.0)
    assert "| FPR 0.020 (151 safe) |" in text


def test_judged_sample_is_balanced_and_seeded():
    rows = pd.DataFrame({S.LABEL: [1] * 5 + [0] * 50, S.TEXT: [str(i) for i in range(55)]})
    sample = judged_sample(rows, 20, seed=0)
    assert len(sample) == 20 and int(sample[S.LABEL].sum()) == 5  # all 5 unsafe, 15 safe
    assert judged_sample(rows, 20, seed=0).equals(sample)
    assert int(judged_sample(rows, 6, seed=1)[S.LABEL].sum()) == 3


def test_thresholds_keep_their_significant_digits():
    # a merged model's cut can sit at 2e-4: three decimals would print it as 0.000
    report = Report(evaluation=[
        {"policy": "tax", "model": m, "n": 10, "precision": 0.5, "recall": 1.0, "f1": 2 / 3,
         "auroc": 0.9, "threshold": t} for m, t in (("UniGuard", 0.000213), ("tax/seed0", 0.5))])
    text = report.markdown(1.0)
    assert "| tax | UniGuard | 10 | 0.500 | 1.000 | 0.667 | 0.900 | 0.000213 |" in text
    assert "| tax | tax/seed0 | 10 | 0.500 | 1.000 | 0.667 | 0.900 | 0.5 |" in text
