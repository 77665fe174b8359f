"""What the pipeline's guards are worth: each model on its policy's test sets, and the LLM judge.

For every evaluated model and policy (`evaluate_guard`), one `run_evaluation` scores:

- ``test``: the policy's test rows of the training data (``{output_dir}/data``);
- ``cross-source``: the test rows of sources held out of training (``data/cross_source``):
  prompts of collections the guard never saw, so the figure is not memorisation;
- ``judged``: a seeded sample of those cross-source rows (half unsafe where possible) that
  the LLM judge (`start_judge`, the paper's Safe/Unsafe template) also answers, so the two are
  compared on the same prompts; the judge runs in a thread beside the guards' evaluations;
- ``alarming-safe``: prompts that sound alarming but are safe under the policy
  (``configs/data/alarming_safe/<policy>.jsonl``): their false-positive rate.

The decision threshold is the one chosen on validation rows (never on a test set), and
`check_targets` compares the figures with the configured targets.
"""

from __future__ import annotations

import logging
import os
from concurrent.futures import Future
from typing import Any

import numpy as np

from guardray import schema as S
from guardray.io import uris
from guardray.pipeline import wiring as W

log = logging.getLogger(__name__)

TEST, CROSS, JUDGED, ALARMING = "test", "cross-source", "judged", "alarming-safe"


def policy_rows(folder: str, policy: str, storage_options=None):
    """The rows of ``policy`` in a shard folder (an empty frame when it has none)."""
    from guardray.io import read_shards

    table = read_shards(folder, storage_options, allow_empty=True).to_pandas()
    return table[table[S.POLICY_ID] == policy].reset_index(drop=True)


def judged_sample(rows, n: int, seed: int):
    """Up to ``n`` rows, half of each label where there are enough (seeded)."""
    rng = np.random.default_rng(seed)
    order = {label: rng.permutation(np.flatnonzero(rows[S.LABEL].to_numpy() == label))
             for label in (0, 1)}
    take = {label: min(len(order[label]), n // 2) for label in (0, 1)}
    for label in (0, 1):  # give the other label's unused share to this one
        take[label] = min(len(order[label]), n - take[1 - label])
    picked = np.sort(np.concatenate([order[label][:take[label]] for label in (0, 1)]))
    return rows.iloc[picked].reset_index(drop=True)


def _cross_source_on(cfg) -> bool:
    """Whether the run has cross-source rows to score (held-out sources need imported or
    generated rows)."""
    return cfg.evaluation.cross_source and (cfg.stages.ingest.enabled
                                            or cfg.stages.generate.enabled)


def judged_dir(cfg, policy: str) -> str:
    """Where the judged sample of ``policy`` lives: ``{output_dir}/evaluate/judged/<policy>``."""
    return W.out(cfg, "evaluate", "judged", policy)


def write_judged_samples(cfg, policies) -> list[str]:
    """Write the judged sample of each of ``policies`` that the judge answers
    (``evaluation.judge_policies``, with cross-source rows); the policies written. Done once,
    before any evaluation reads them (the judge runs beside the guards' evaluations)."""
    from guardray.io import write_shard

    ev, so = cfg.evaluation, cfg.storage_options or None
    if not (ev.judge and _cross_source_on(cfg)):
        return []
    written = []
    for policy in policies:
        if policy not in ev.judge_policies:
            continue
        cross = policy_rows(W.cross_source_dir(cfg), policy, so)
        if len(cross):
            sample = judged_sample(cross, ev.judge_rows, cfg.seed)
            write_shard(sample[list(S.COLUMNS)], judged_dir(cfg, policy), index=0,
                        if_exists="overwrite", storage_options=so)
            written.append(policy)
    return written


def test_sets(cfg, policy: str, judged: bool = False) -> list[dict[str, Any]]:
    """The evaluate-config data entries beyond the test rows, for ``policy``: its cross-source
    rows, its judged sample (``judged``: written by `write_judged_samples`) and its
    alarming-but-safe prompts."""
    ev, so = cfg.evaluation, cfg.storage_options or None
    sets = []
    if _cross_source_on(cfg) and len(policy_rows(W.cross_source_dir(cfg), policy, so)):
        sets.append({"path": W.cross_source_dir(cfg), "name": CROSS})
    if judged:
        sets.append({"path": judged_dir(cfg, policy), "name": JUDGED})
    if ev.alarming_safe:
        path = os.path.join(ev.alarming_safe, f"{policy}.jsonl")
        if os.path.isfile(path):
            sets.append({"path": path, "name": ALARMING})
    return sets


def _metrics(ledger, key: str, ecfg) -> dict[str, Any]:
    """``run_evaluation(ecfg)``, or its saved ``metrics.json`` when ``ledger`` (a
    `guardray.pipeline.resume.Ledger`) has step ``key`` finished with this config."""
    from guardray.evaluate import METRICS_JSON, run_evaluation

    return ledger.step(key, ecfg, uris.join_uri(ecfg.output_dir, METRICS_JSON),
                       lambda: run_evaluation(ecfg))


def evaluate_guard(cfg, data_dir: str, policy: str, model_dir: str, model: str,
                   name: str, ledger, threshold_rule: str | None = None,
                   judged: bool = False) -> dict[str, Any]:
    """Score one model under ``policy`` on its test sets (``judged``: the judged sample too),
    its threshold chosen on the validation rows by ``threshold_rule``
    (`wiring.evaluate_config`); the row of the quality table (``{"policy", "model", "test",
    "cross_source", "judged_guard", "alarming_safe"}``, each a metrics record or None)."""
    ecfg = W.evaluate_config(cfg, data_dir, policy, model_dir, name=name,
                             extra=test_sets(cfg, policy, judged), threshold_rule=threshold_rule)
    records = {r["dataset"]: r for r in _metrics(ledger, f"evaluate/{name}", ecfg)["datasets"]}
    return {"policy": policy, "model": model, "test": records.get(TEST),
            "cross_source": records.get(CROSS), "judged_guard": records.get(JUDGED),
            "alarming_safe": records.get(ALARMING)}


def start_judge(cfg, policy: str, ledger, pool) -> Future:
    """The LLM judge on the judged sample of ``policy`` (`write_judged_samples`), run in
    ``pool`` (a `concurrent.futures.Executor`) beside the guards' evaluations: the judge needs
    nothing they produce, and on a CPU machine it holds one core for minutes. The future's
    result is the judge's metrics record. A judge run a previous run finished with the same
    config is reused (decided here, in the caller's thread, in the ledger's order); a run
    records itself in the ledger when it ends."""
    from guardray.evaluate import METRICS_JSON, run_evaluation

    jcfg = W.judge_config(cfg, policy, {"path": judged_dir(cfg, policy), "name": JUDGED})
    key = f"judge/{policy}"
    saved = ledger.reused(key, jcfg, uris.join_uri(jcfg.output_dir, METRICS_JSON))
    if saved is not None:
        done: Future = Future()
        done.set_result(saved["datasets"][0])
        return done

    def run() -> dict[str, Any]:
        result = run_evaluation(jcfg)
        ledger.record(key, jcfg)
        return result["datasets"][0]

    return pool.submit(run)


def check_targets(row: dict[str, Any], targets) -> str | None:
    """``met`` or ``missed: ...`` for a policy with targets (None for the others)."""
    if row["policy"] not in targets.policies:
        return None
    missed = []
    cross = (row.get("cross_source") or {}).get("macro_f1")
    if cross is None:
        missed.append("cross-source macro-F1 not measured")
    elif cross < targets.macro_f1:
        missed.append(f"cross-source macro-F1 {_f(cross)} < {targets.macro_f1}")
    guard = (row.get("judged_guard") or {}).get("macro_f1")
    judge = (row.get("judged_judge") or {}).get("macro_f1")
    if guard is None or judge is None:
        missed.append("gain over the judge not measured")
    elif guard - judge < targets.over_judge:
        missed.append(f"gain over the judge {_f(guard - judge)} < {targets.over_judge}")
    fpr = (row.get("alarming_safe") or {}).get("fpr")
    if fpr is None:
        missed.append("alarming-safe FPR not measured")
    elif fpr > targets.fpr:
        missed.append(f"alarming-safe FPR {_f(fpr)} > {targets.fpr}")
    return "met" if not missed else "missed: " + "; ".join(missed)


def _f(v: Any) -> str:
    return "n/a" if v is None or v != v else f"{v:.3f}"


def notes(cfg) -> list[str]:
    """The lines under the quality table: what each column measures."""
    ev = cfg.evaluation
    out = ["test: the policy's test rows of the training data (group splits: no near-duplicate "
           "of a training prompt); macro-F1 = mean of the safe and unsafe F1."]
    if ev.cross_source:
        out.append("cross-source: test rows of sources held out of training "
                   "(data/cross_source, see configs/ingest.yaml).")
    if ev.judge:
        out.append(f"judged rows: a seeded sample of up to {ev.judge_rows} cross-source rows "
                   f"per policy, scored by the guard and by the LLM judge of {ev.judge}; the "
                   "judge's macro-F1 is over the answers it gave in the template's format "
                   "(generous to the judge), the rows it did not are counted as unparsed.")
    if ev.alarming_safe:
        out.append(f"alarming-safe FPR: share of the prompts in {ev.alarming_safe}/<policy>.jsonl "
                   "(safe, but alarming-sounding) that the guard flags unsafe.")
    if cfg.stages.merge.enabled:
        out.append("UniGuard: the merge search's one model for every policy (search/uniguard), "
                   "thresholded per policy on validation; merged from prompt-only TaskGuards "
                   "(PolicyGuard) it gives a prompt one score under every policy.")
    t = ev.targets
    out.append(f"targets ({', '.join(t.policies)}): cross-source macro-F1 >= {t.macro_f1}, "
               f"at least +{t.over_judge:.2f} over the judge, alarming-safe FPR <= {t.fpr}.")
    return out
