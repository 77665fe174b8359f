"""One evaluation: a classifier or an LLM judge over datasets -> metrics, predictions, report.

How a classifier is evaluated (test labels cannot influence the threshold):

1. the validation rows and every evaluated dataset are scored in one Ray Data run, without
   their labels (`guardray.evaluate.predict.predict_frames`);
2. the threshold is chosen from the validation scores and labels alone
   (`guardray.metrics.threshold.choose_threshold`), or taken from the checkpoint's card (chosen on
   its validation split when it was fine-tuned), or the configured fixed value;
3. only then are each dataset's labels compared with ``score >= threshold``.

Output layout under ``output_dir``::

    metrics.json              {"model", "kind", "threshold", "datasets": [record...], "average"}
    <dataset>/metrics.json    the dataset's record (n, precision, recall, f1, macro_f1, auroc,
                              auprc, threshold, ms_per_prompt, prompts_per_s, ...)
    <dataset>/predictions.parquet
    report.md, report.html, plots/*.png
    manifest.json
    .judgements/              judges only, while running: answers written as they arrive, so
                              a rerun after a failure judges only the rest (removed at the end;
                              `guardray.evaluate.judgements`)

A judge's prompts are fitted to its context (``judge.llm.max_context_tokens`` /
``max_prompt_chars``): the prompt text is cut with a marker, the policy and template stay
whole; the record counts the cut rows (``n_cut``) and ``predictions.parquet`` marks them
(``prompt_cut``).
"""

from __future__ import annotations

import dataclasses
import logging
import math
import os
from collections.abc import Callable
from typing import Any

import numpy as np

from guardray import schema as S
from guardray.evaluate import columns as C
from guardray.evaluate.results import (
    METRICS_JSON,
    DatasetResult,
    EvaluationError,
    slugify,
    write_result,
)
from guardray.metrics import binary as M
from guardray.metrics.threshold import ThresholdChoice, choose_threshold
from guardray.modeling.base import portable_ref

log = logging.getLogger(__name__)

def run_evaluation(cfg, connect: Callable[[], None] | None = None) -> dict[str, Any]:
    """Run the evaluation of an `EvaluateConfig` and write its outputs.

    Args:
        cfg: the config.
        connect: called once the data has loaded and before the first inference, to start or
            join Ray (jobs pass ``init_ray``), so bad data fails before Ray starts. None: Ray
            is already running.

    Returns:
        The content of the top-level ``metrics.json``.

    Raises:
        ConfigError: nothing to evaluate or no data; the validation data is an evaluated file.
        FileExistsError: ``output_dir`` holds an earlier evaluation and not ``cfg.overwrite``.
        ModelError: the model is not one guardray can load (all before Ray: `preflight`).
        EvaluationError / DatasetError / PredictError / JudgeUnavailableError: with the cause.
    """
    from guardray.evaluate import preflight
    from guardray.io import uris

    cfg.check_runnable()
    out = uris.parse_uri(cfg.output_dir).uri
    so = cfg.storage_options or None
    preflight.check_setup(cfg)  # output folder, model, validation != data: before any load
    ctx = _Context.build(cfg)
    loaded = [ctx.load(d, so) for d in cfg.data]
    val = None
    if not cfg.judge and cfg.validation_data is not None and cfg.threshold.rule != "fixed":
        val = ctx.load(cfg.validation_data, so)
        preflight.check_validation_rows(val, loaded)
    if cfg.overwrite:
        preflight.clear_earlier_result(out, so)
    if connect is not None:
        connect()
    taken: set[str] = set()
    if cfg.judge:
        threshold = None
        results = [_judge_one(cfg, d, ctx.policies, slugify(d.name, taken), out, so)
                   for d in loaded]
    else:
        spec = _predictor_spec(cfg, ctx.input_format, ctx.descriptions)
        # One inference run for the validation rows and every dataset (one model load per
        # replica). No label enters inference; the threshold sees validation labels only,
        # and evaluated labels are read afterwards, in _classify_one.
        frames = ([val.frame] if val is not None else []) + [d.frame for d in loaded]
        scored = _predict_many(cfg, frames, spec)
        val_scores = scored.pop(0)[0] if val is not None else None
        threshold = _threshold(cfg, ctx.card, val, val_scores)
        log.info("threshold %.4f (%s, %s)", threshold.threshold, threshold.rule, threshold.source)
        results = [_classify_one(cfg, d, s, threshold, slugify(d.name, taken))
                   for d, s in zip(loaded, scored)]
    summary = _summary(cfg, results, threshold, ctx.input_format)
    for r in results:
        write_result(out, r, so)
    uris.write_json_atomic(uris.join_uri(out, METRICS_JSON), M.nan_to_none(summary), so)
    if cfg.report.enabled:
        from guardray.evaluate.report import write_report

        write_report(out, results, title=f"guardray evaluation: {cfg.display_name}",
                     plots=cfg.report.plots, storage_options=so, notes=_notes(summary))
    _manifest(cfg, out, loaded, results, so)
    if cfg.judge:
        from guardray.evaluate.judgements import remove_all

        remove_all(out, so)  # the answers are in predictions.parquet now
    return summary


@dataclasses.dataclass
class _Context:
    """What the model (card) and the policies tell about how to read and feed the data.

    Attributes:
        card: the guardray model card ({} for other models and judges).
        policies: loaded policy YAMLs by id (judges need full policies).
        descriptions: policy descriptions by id (card's, then the YAMLs'), for instruction
            inputs.
        default_policy: ``--policy``, else the card's single policy, else None.
        input_format: ``text`` or ``instruction``.
        needs_policy: every row must name a known policy (judges, instruction inputs).
        known: the policy ids rows may name (judges: loaded YAMLs; classifiers: descriptions).
    """

    card: dict[str, Any]
    policies: dict[str, Any]
    descriptions: dict[str, str]
    default_policy: str | None
    input_format: str
    needs_policy: bool
    known: dict[str, Any]

    @classmethod
    def build(cls, cfg) -> "_Context":
        card = _model_card(cfg)
        policies = _load_policies(cfg)
        descriptions = {pid: info["description"]
                        for pid, info in (card.get("policies") or {}).items()}
        descriptions.update({pid: p.description for pid, p in policies.items()})
        ids = card.get("policy_ids") or []
        input_format = cfg.input_format or card.get("input_format") or "text"
        ctx = cls(card, policies, descriptions,
                  default_policy=cfg.policy or (ids[0] if len(ids) == 1 else None),
                  input_format=input_format,
                  needs_policy=bool(cfg.judge) or input_format == "instruction",
                  known=policies if cfg.judge else descriptions)
        if ctx.default_policy and ctx.needs_policy and ctx.default_policy not in ctx.known:
            raise EvaluationError(f"policy {ctx.default_policy!r} is not among the loaded "
                                  f"policies ({sorted(ctx.known)}); add its YAML with --policies")
        return ctx

    def load(self, dcfg, so):
        """Load a dataset, fill in the default policy, and check the policies it needs."""
        data = _load(dcfg, self.default_policy, so)
        if self.needs_policy:
            _require_policies(data, self.known)
        return data


# --------------------------------------------------------------------------- setup


def _model_card(cfg) -> dict[str, Any]:
    from guardray.modeling.remote import local_model

    folder = local_model(cfg.model, field="model") if cfg.model else None
    if not folder or not os.path.isdir(folder):
        return {}
    from guardray.modeling.checkpoint import read_model_card

    return read_model_card(folder)


def _load_policies(cfg) -> dict[str, Any]:
    """Policies from ``cfg.policies`` (paths that exist; the default folder may not)."""
    from guardray.policies import load_policies

    paths = [p for p in cfg.policies if os.path.exists(p)]
    return {p.id: p for p in load_policies(paths)} if paths else {}


def _load(dcfg, default_policy, so):
    from guardray.data import load_labeled

    data = load_labeled(dcfg.to_spec(), policy_id=default_policy, storage_options=so)
    if default_policy:
        frame = data.frame
        frame.loc[frame[S.POLICY_ID] == "", S.POLICY_ID] = default_policy
    return data


def _require_policies(data, policies) -> None:
    ids = set(data.frame[S.POLICY_ID])
    if "" in ids:
        raise EvaluationError(f"{data.name}: rows have no policy; instruction inputs and judge "
                              "templates need one: pass --policy ID (or a policy_id column)")
    unknown = sorted(ids - set(policies))
    if unknown:
        raise EvaluationError(f"{data.name}: unknown policy id(s) {unknown}; loaded: "
                              f"{sorted(policies)} (add their YAML with --policies)")


def _predictor_spec(cfg, input_format: str, descriptions):
    import math as _m

    from guardray.evaluate.predict import PredictorSpec

    inf = cfg.inference
    return PredictorSpec(
        model=portable_ref(cfg.model),  # each predictor resolves it on its node
        input_format=input_format,
        descriptions=dict(descriptions),
        max_length=inf.max_length, device=inf.device,
        torch_threads=inf.torch_threads or max(1, _m.ceil(inf.num_cpus)),
        unsafe_label=inf.unsafe_label, trust_remote_code=inf.trust_remote_code)


def _predict_many(cfg, frames, spec):
    from guardray.evaluate.predict import predict_frames

    inf = cfg.inference
    return predict_frames(frames, spec, batch_size=inf.batch_size, concurrency=inf.concurrency,
                          num_cpus=inf.num_cpus, num_gpus=inf.num_gpus)


def _threshold(cfg, card, val, val_scores) -> ThresholdChoice:
    """The decision threshold, from validation rows (or the checkpoint, or the config) only.

    Args:
        cfg: the config.
        card: the model card ({} for non-guardray checkpoints).
        val: loaded validation data, or None.
        val_scores: the validation rows' P(unsafe), or None.
    """
    rule, value = cfg.threshold.rule, cfg.threshold.value
    if rule == "fixed":
        return ThresholdChoice(value, "fixed", "default")
    if val is not None:
        scores = val_scores
        choice = choose_threshold(scores, val.frame[S.LABEL].to_numpy(), rule=rule, default=value)
        return dataclasses.replace(choice, note=(choice.note + f" validation data: {val.name}")
                                   .strip())
    from guardray.modeling.checkpoint import card_policy_thresholds

    t = card.get("threshold") or {}
    own = card_policy_thresholds(card).get(cfg.policy or "")
    if own:  # a UniGuard thresholded per policy
        return ThresholdChoice(float(own["threshold"]), t.get("rule", rule), "checkpoint",
                               int(own.get("n_validation") or 0), own.get("validation_f1"),
                               f"policy {cfg.policy}'s threshold, chosen on its validation "
                               "rows by the merge search")
    if t.get("threshold") is not None:
        return ThresholdChoice(float(t["threshold"]), t.get("rule", rule), "checkpoint",
                               int(t.get("n_validation") or 0), t.get("validation_f1"),
                               "chosen on the model's validation split when it was fine-tuned")
    return ThresholdChoice(value, rule, "default", 0, None,
                           "no validation data and no stored threshold: pass --validation-data")


# --------------------------------------------------------------------------- per dataset


def _base_record(cfg, data, kind: str, slug: str) -> dict[str, Any]:
    return {"model": cfg.display_name, "kind": kind, "dataset": data.name, "folder": slug,
            "source": data.source, "dropped": data.dropped,
            "policy_ids": sorted(set(data.frame[S.POLICY_ID]) - {""})}


def _by_policy(frame, labels, preds) -> dict[str, dict[str, Any]]:
    ids = frame[S.POLICY_ID].to_numpy()
    if len(set(ids)) < 2:
        return {}
    out = {}
    for pid in sorted(set(ids)):
        m = ids == pid
        out[pid or "-"] = {"n": int(m.sum()), "precision": M.precision(labels[m], preds[m]),
                           "recall": M.recall(labels[m], preds[m]), "f1": M.f1(labels[m], preds[m]),
                           "macro_f1": M.macro_f1(labels[m], preds[m])}
    return out


def _classify_one(cfg, data, scored, threshold: ThresholdChoice, slug: str) -> DatasetResult:
    frame = data.frame
    scores, model_ms, timing = scored
    labels = frame[S.LABEL].to_numpy().astype(np.int64)  # read only after scoring
    record = {**_base_record(cfg, data, "classifier", slug),
              **M.compute_metrics(labels, scores, threshold.threshold),
              "threshold_rule": threshold.rule, "threshold_source": threshold.source,
              **{k: v for k, v in timing.to_dict().items() if k != "n"}}
    preds = (scores >= threshold.threshold).astype(np.int64)
    record["by_policy"] = _by_policy(frame, labels, preds)
    frame = frame.assign(**{C.SCORE: scores, C.PREDICTION: preds.astype(np.int8),
                            C.MODEL_MS: model_ms})
    result = DatasetResult(cfg.display_name, "classifier", data.name, slug, record, labels,
                           scores, preds, frame)
    log.info("%s on %s: F1 %.4f (n=%d)", cfg.display_name, data.name, record["f1"], record["n"])
    return result


def _judge_one(cfg, data, policies, slug: str, out: str, so) -> DatasetResult:
    from guardray.evaluate.judgements import JudgementStore, folder_for
    from guardray.evaluate.judges import run_judge

    frame = data.frame
    # Answers are written as they arrive: a rerun after a failure judges only the rest.
    store = JudgementStore(folder_for(out, slug, cfg.judge), so)
    run = run_judge(frame, cfg.judge, policies, store=store)
    labels = frame[S.LABEL].to_numpy().astype(np.int64)
    preds = np.asarray([C.NO_PREDICTION if p.label is None else p.label for p in run.parsed],
                       dtype=np.int64)
    ok = preds != C.NO_PREDICTION
    n = len(frame)
    record = _base_record(cfg, data, "judge", slug)
    if ok.any():
        record.update(M.compute_metrics(labels[ok], preds[ok].astype(np.float64), 0.5))
    else:
        record.update({k: math.nan for k in ("precision", "recall", "f1", "macro_f1",
                                             "accuracy", "auroc", "auprc")})
    # Pessimistic view: an unparseable answer counted as the wrong label (stated, not hidden).
    worst = np.where(ok, preds, 1 - labels)
    record.update({
        "n": n, "n_unsafe": int(labels.sum()), "n_safe": int(n - labels.sum()),
        "n_parsed": int(ok.sum()), "n_unparseable": int((~ok).sum()),
        "unparseable_rate": float((~ok).mean()) if n else math.nan,
        "parse_status": run.status_counts(),
        "f1_unparseable_as_wrong": M.f1(labels, worst),
        "threshold": None, "threshold_rule": None, "threshold_source": "judge",
        "score_kind": "hard_label",
        "template": cfg.judge.template, "llm_backend": cfg.judge.llm.backend,
        "llm_model": cfg.judge.llm.model,
        "run_wall_seconds": run.wall_seconds,
        "ms_per_prompt": run.wall_seconds * 1000.0 / n if n else math.nan,
        "prompts_per_s": n / run.wall_seconds if run.wall_seconds > 0 else math.nan,
        "batch_size": cfg.judge.llm.batch_size, "concurrency": cfg.judge.llm.concurrency,
        # Prompts whose text was cut to fit the judge's context (guardray.llm.fit).
        "n_cut": run.n_cut, "n_resumed": run.n_resumed,
        "max_context_tokens": cfg.judge.llm.max_context_tokens,
        "max_prompt_chars": cfg.judge.llm.max_prompt_chars,
    })
    if run.n_cut:
        log.warning("%s on %s: %d of %d prompt(s) were cut to fit the judge's context",
                    cfg.display_name, data.name, run.n_cut, n)
    record["by_policy"] = _by_policy(frame[ok], labels[ok], preds[ok]) if ok.any() else {}
    frame = frame.assign(**{
        C.SCORE: np.where(ok, preds, np.nan).astype(np.float64),
        C.PREDICTION: preds.astype(np.int8),
        C.MODEL_MS: np.full(n, record["ms_per_prompt"]),
        C.ANSWER: run.answers, C.PARSE_STATUS: [p.status for p in run.parsed],
        C.BACKEND_ERROR: run.errors or [""] * n,
        C.PROMPT_CUT: run.cut or [False] * n})
    return DatasetResult(cfg.display_name, "judge", data.name, slug, record, labels, None, preds,
                         frame)


# --------------------------------------------------------------------------- outputs


def _summary(cfg, results, threshold, input_format) -> dict[str, Any]:
    def finite(key):
        values = [r.record.get(key) for r in results]
        return [v for v in values if v is not None and math.isfinite(v)]

    return {
        "model": cfg.display_name,
        "kind": "judge" if cfg.judge else "classifier",
        "model_path": cfg.model,
        "judge": cfg.judge.model_dump(mode="json") if cfg.judge else None,
        "input_format": None if cfg.judge else input_format,
        "threshold": threshold.to_dict() if threshold else None,
        "datasets": [r.record for r in results],
        "average": {"f1": float(np.mean(finite("f1"))) if finite("f1") else math.nan,
                    "macro_f1": (float(np.mean(finite("macro_f1"))) if finite("macro_f1")
                                 else math.nan),
                    "n_datasets": len(results)},
    }


def _notes(summary) -> list[str]:
    t = summary.get("threshold")
    if not t:
        return ["LLM judge: hard Safe/Unsafe answers; unparseable answers are counted, not "
                "mapped to a label (F1 over parsed answers; f1_unparseable_as_wrong counts "
                "them as errors)."]
    note = f" ({t['note']})" if t.get("note") else ""
    return [f"Decision threshold {t['threshold']:.4f}: rule {t['rule']}, source "
            f"{t['source']}{note}. Test labels are never used to choose it."]


def _manifest(cfg, out, loaded, results, so) -> None:
    from guardray.io import write_manifest

    inputs = [d.source for d in loaded]
    if cfg.validation_data is not None:
        inputs.append(cfg.validation_data.path or f"bench:{cfg.validation_data.benchmark}")
    dropped: dict[str, int] = {}
    for d in loaded:
        for reason, n in d.dropped.items():
            dropped[reason] = dropped.get(reason, 0) + n
    write_manifest(out, "evaluate", inputs=inputs, config=cfg,
                   counts={"in": sum(len(d) for d in loaded) + sum(dropped.values()),
                           "out": sum(len(d) for d in loaded), "dropped": dropped},
                   extra={"datasets": {r.dataset: r.slug for r in results}},
                   storage_options=so)


