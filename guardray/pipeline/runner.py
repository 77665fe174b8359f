"""The end-to-end run: policies -> seed -> ingest -> generate (+dedup) -> data -> pretrain ->
finetune -> evaluate.

`run_pipeline` builds and validates every stage's config first (`guardray.pipeline.wiring`),
so a bad override fails in a second instead of after an hour of generation, then runs the
enabled stages in order on an initialised Ray. Each stage's own job code does the work and
writes its own manifest; the pipeline adds ``report.md`` (`guardray.pipeline.report`: one
line per stage, the test metrics of each policy's classifier, and what the guards are worth
on cross-source, judged and alarming-but-safe prompts, `guardray.pipeline.evaluation`),
written even when a stage fails, and re-raises.

Rerunning with the same config resumes: generation skips finished tasks, pretraining
restores its latest checkpoint, and pretraining, fine-tuning, the merge search and each
evaluation that a previous run finished with the same config are reused, not redone
(`guardray.pipeline.resume`).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from guardray import schema as S
from guardray.config.base import ConfigError
from guardray.io import uris
from guardray.pipeline import wiring as W
from guardray.pipeline.config import PipelineConfig
from guardray.pipeline.report import Report, num
from guardray.pipeline.stages import STAGES

log = logging.getLogger(__name__)


@dataclass
class StagePlan:
    """The validated configs of one run (None: the stage is disabled)."""

    data_dir: str
    ingest: Any = None
    generate: Any = None
    pretrain: Any = None
    finetune: Any = None
    merge: Any = None
    evaluate: Any = None  # a probe config: the real ones are built per policy after finetune


def plan_stages(cfg: PipelineConfig) -> StagePlan:
    """Build and validate the config of every enabled stage (no Ray, nothing written).

    Raises:
        ConfigError: a stage file or override is invalid, naming the stage and the field.
    """
    st = cfg.stages
    ingest = W.ingest_config(cfg) if st.ingest.enabled else None
    generate = W.generate_config(cfg) if st.generate.enabled else None
    data_dir = W.training_data_dir(cfg)
    pretrain = W.pretrain_config(cfg, data_dir) if st.pretrain.enabled else None
    gip_model = W.gip_model_dir(pretrain) if pretrain is not None else None
    finetune = W.finetune_config(cfg, data_dir, gip_model) if st.finetune.enabled else None
    merge = None
    if st.merge.enabled and finetune is not None:
        if finetune.scope != "per_policy":
            raise ConfigError("pipeline stage 'merge' merges per-policy TaskGuards: set the "
                              "finetune stage's scope to per_policy, or disable stages.merge")
        merge = W.search_config(cfg, data_dir)
    evaluate = None
    if st.evaluate.enabled:
        if finetune is None:
            raise ConfigError("pipeline stage 'evaluate' evaluates the fine-tuned classifiers: "
                              "enable stages.finetune, or disable stages.evaluate")
        evaluate = W.evaluate_config(cfg, data_dir, "probe", W.out(cfg, "finetune", "probe"))
    return StagePlan(data_dir, ingest, generate, pretrain, finetune, merge, evaluate)


def run_pipeline(cfg: PipelineConfig, connect: Callable[[], None]) -> str:
    """Run every enabled stage; return (and write) the Markdown report.

    Args:
        cfg: the pipeline config.
        connect: starts or joins Ray (called once, after the configs and policies check out).
    """
    from guardray.policies import load_policies

    started = time.time()
    report = Report()
    policies = load_policies(cfg.policies)
    plan = plan_stages(cfg)
    report.done("policies", f"{len(policies)} valid: {', '.join(p.id for p in policies)}")
    if cfg.models.prepare:
        from guardray.modeling.offline import resolve_model

        for role, ref in (("generator", cfg.models.generator), ("embedder", cfg.models.embedder)):
            report.models[role] = resolve_model(ref)
    connect()
    try:
        _run_stages(cfg, plan, policies, report)
    finally:
        text = report.markdown(time.time() - started)
        uris.write_text_atomic(W.out(cfg, "report.md"), text,
                               storage_options=cfg.storage_options or None)
    return text


def _run_stages(cfg: PipelineConfig, plan: StagePlan, policies, report: Report) -> None:
    from guardray.pipeline.resume import Ledger

    ledger = Ledger(cfg.output_dir, cfg.storage_options)
    stage = "seed"
    try:
        report.done("seed", run_seed(cfg, policies))
        if plan.ingest is not None:
            stage = "ingest"
            _run_ingest(plan.ingest, report)
        if plan.generate is not None:
            stage = "generate"
            _run_generate(plan.generate, report)
        if plan.ingest is not None or plan.generate is not None:
            stage = "data"
            _run_data(cfg, plan, report)
        if plan.pretrain is not None:
            stage = "pretrain"
            _run_pretrain(cfg, plan, report, ledger)
        if plan.finetune is not None:
            stage = "finetune"
            best = _run_finetune(plan.finetune, report, ledger)
            uniguard = None
            if plan.merge is not None:
                stage = "merge"
                uniguard = _run_merge(plan.merge, report, ledger)
            if plan.evaluate is not None:
                stage = "evaluate"
                _run_evaluate(cfg, plan, best, report, uniguard, ledger)
    except BaseException as exc:
        report.results[stage] = ("failed", f"{type(exc).__name__}: {str(exc)[:300]}")
        order = [s.name for s in STAGES]
        for later in order[order.index(stage) + 1:]:
            if getattr(plan, later, None) is not None or (
                    later == "data" and (plan.ingest or plan.generate)):
                report.results[later] = ("not run", f"the {stage} stage failed")
        raise


def run_seed(cfg: PipelineConfig, policies) -> str:
    """Policy examples -> labelled seed shards in ``{output_dir}/seed`` with a manifest."""
    from guardray.generate import seed_rows
    from guardray.io import read_shards_dataset, write_manifest, write_shard
    from guardray.io.ray_stats import count_by

    so = cfg.storage_options or None
    seed_dir = W.out(cfg, "seed")
    rows = seed_rows(policies, validation=cfg.splits.validation, test=cfg.splits.test,
                     seed=cfg.seed)
    write_shard(rows, seed_dir, index=0, if_exists="overwrite", storage_options=so)
    ds = read_shards_dataset(seed_dir, storage_options=so)
    per_policy: dict[str, dict[str, int]] = {}
    for (policy_id, label), n in count_by(ds, [S.POLICY_ID, S.LABEL]).items():
        per_policy.setdefault(policy_id, {})[S.LABEL_NAMES[int(label)]] = n
    total = sum(sum(c.values()) for c in per_policy.values())
    write_manifest(seed_dir, "seed", inputs=list(cfg.policies), config=cfg,
                   counts={"in": len(rows), "out": total}, extra={"per_policy": per_policy},
                   storage_options=so)
    return f"{total} rows in {seed_dir} " + ", ".join(
        f"{pid}: {c.get('unsafe', 0)} unsafe / {c.get('safe', 0)} safe"
        for pid, c in sorted(per_policy.items()))


def _run_ingest(icfg, report: Report) -> None:
    from guardray.ingest import check_config, run_ingest

    check_config(icfg)
    manifest = run_ingest(icfg)
    counts = manifest["counts"]
    report.done("ingest", f"{counts['out']} labelled rows from {len(icfg.enabled_sources)} "
                          f"sources (dropped {counts.get('dropped') or 'none'}) in "
                          f"{icfg.output_dir}")


def _run_data(cfg: PipelineConfig, plan: StagePlan, report: Report) -> None:
    from guardray.pipeline.data import build_training_data

    s = build_training_data(cfg, W.source_dirs(cfg, plan.ingest, plan.generate))
    flagged = sum(p["flagged"] for p in s["disputed"]["per_policy"].values())
    generated = sum(p["generated"] for p in s["disputed"]["per_policy"].values())
    report.done("data", f"{s['rows']} rows in {plan.data_dir} from {s['union']} "
                        f"(near-duplicates removed {s['dedup_removed']}, near-copies of "
                        f"held-out rows {s['duplicate_of_held_out']}); {flagged} of {generated} "
                        f"generated rows disputed by a model of the real rows"
                        f"{' and dropped' if s['disputed']['dropped'] else ''}; "
                        f"{s['cross_source_rows']} cross-source test rows")


def _run_generate(gcfg, report: Report) -> None:
    from guardray.generate import run_generate

    manifest = run_generate(gcfg)
    counts, stages = manifest["counts"], manifest["extra"]["stages"]
    report.done("generate", f"{counts['out']} samples from {counts['in']} requests "
                            f"(rejected {counts['dropped'] or 'none'}) in {gcfg.output_dir}")
    dedup = stages["dedup"]
    if dedup.get("enabled"):
        report.done("dedup", f"{dedup['out']} of {dedup['in']} kept ({dedup['method']}, "
                             f"threshold {dedup['threshold']}; dropped {dedup['dropped']}) "
                             f"in {dedup['output_dir']}")


def _reused(ledger, key: str) -> str:
    return " (finished in a previous run with this config: reused)" if key in ledger.reused_keys \
        else ""


def _run_pretrain(cfg: PipelineConfig, plan: StagePlan, report: Report, ledger) -> None:
    from guardray.pretrain import run_pretrain

    pcfg = plan.pretrain
    diverse = W.diverse_policies_file(cfg)
    if plan.generate is not None and uris.exists(diverse, cfg.storage_options or None):
        pcfg = W.pretrain_config(cfg, plan.data_dir, diverse=[diverse])
    summary = ledger.step("pretrain", pcfg, uris.join_uri(pcfg.output_dir, "summary.json"),
                          lambda: run_pretrain(pcfg))
    report.done("pretrain", f"GIP checkpoint in {W.gip_model_dir(pcfg)} "
                            f"({_pretrain_detail(summary)})" + _reused(ledger, "pretrain"))


def _pretrain_detail(summary: dict[str, Any]) -> str:
    """``step N, loss ..., mlm ..., alice ..., ce ..., accuracy ...`` of the last window."""
    metrics = summary.get("metrics") or {}
    parts = [f"step {summary['global_step']}"] if summary.get("global_step") is not None else []
    parts += [f"{k} {metrics[k]:.4g}" for k in ("loss", "mlm", "alice", "ce", "accuracy")
              if isinstance(metrics.get(k), (int, float))]
    return ", ".join(parts) or "finished"


def _run_finetune(fcfg, report: Report, ledger) -> dict[str, dict[str, Any]]:
    from guardray.finetune import run_finetune

    summary = ledger.step("finetune", fcfg, uris.join_uri(fcfg.output_dir, "summary.json"),
                          lambda: run_finetune(fcfg))
    best = summary["best"]
    report.done("finetune", f"{summary['method']} ({summary['tuning']}) from "
                            f"{summary['base_model']}: " + ", ".join(
                                f"{g} val F1 {r['best_val_f1']:.3f}"
                                for g, r in sorted(best.items())) + _reused(ledger, "finetune"))
    return best


def _run_merge(scfg, report: Report, ledger) -> dict[str, Any]:
    from guardray.search import run_search

    s = ledger.step("merge", scfg, uris.join_uri(scfg.output_dir, "summary.json"),
                    lambda: run_search(scfg))
    members = ", ".join(str(m) for m in s.get("members", []))
    report.done("merge", f"UniGuard in {s['model_dir']}: {s['method']} of {members}; "
                         f"validation objective {num(s.get('objective'))} (mean "
                         f"{num(s.get('objective_mean'))}, worst policy "
                         f"{num(s.get('objective_worst'))}) after {s.get('trials')} trials; "
                         f"recipe {s['recipe']}" + _reused(ledger, "merge"))
    return s


def _run_evaluate(cfg: PipelineConfig, plan: StagePlan, best: dict[str, dict[str, Any]],
                  report: Report, uniguard: dict[str, Any] | None, ledger) -> None:
    """Evaluate each policy's model on its test sets (a multi-policy model under each policy),
    UniGuard under every policy, and the LLM judge on the judged rows
    (`guardray.pipeline.evaluation`).

    A policy without test rows (small data, unlucky split) is reported as such, not failed.
    """
    from guardray.io import read_shards_dataset
    from guardray.io.ray_stats import count_by
    from guardray.pipeline import evaluation as E

    so = cfg.storage_options or None
    counts = count_by(read_shards_dataset(plan.data_dir, so), [S.POLICY_ID, S.SPLIT])
    test_rows = {pid: n for (pid, split), n in counts.items() if split == "test"}
    per_policy = plan.finetune.scope == "per_policy"
    targets = {pid: [pid] for pid in best} if per_policy else {
        next(iter(best)): sorted(test_rows)}
    # each model's threshold is picked by the rule of the stage that made it
    finetune_rule = plan.finetune.train.threshold_rule if plan.finetune is not None else None
    models = [(group, f"{group}/seed{r['seed']}", r["checkpoint"], finetune_rule)
              for group, r in sorted(best.items())]
    if uniguard is not None:
        targets["uniguard"] = sorted(test_rows)
        models.append(("uniguard", "UniGuard", uniguard["model_dir"],
                       plan.merge.objective.threshold_rule if plan.merge is not None else None))
    evaluated = [p for g, *_ in models for p in targets.get(g, []) if test_rows.get(p, 0)]
    judged = E.write_judged_samples(cfg, sorted(set(evaluated)))
    done, rows = [], []
    # the judge holds one core for minutes and needs nothing the guards produce: it runs in a
    # thread beside them (each waits for Ray's CPUs like any other Ray Data run)
    pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="judge")
    try:
        judges = {policy: E.start_judge(cfg, policy, ledger, pool) for policy in judged}
        for group, model, checkpoint, rule in models:
            for policy in targets.get(group, []):
                if test_rows.get(policy, 0) == 0:
                    log.warning("evaluate: no test rows for %s in %s; skipped", policy,
                                plan.data_dir)
                    report.evaluation.append({"policy": policy, "model": model, "n": 0,
                                              "precision": None, "recall": None, "f1": None,
                                              "auroc": None, "threshold": None})
                    done.append(f"{policy}: no test rows")
                    continue
                name = policy if per_policy and group == policy else f"{group}-{policy}"
                row = E.evaluate_guard(cfg, plan.data_dir, policy, checkpoint, model, name,
                                       ledger, threshold_rule=rule, judged=policy in judges)
                test = row["test"] or {}
                report.evaluation.append({"policy": policy, "model": model, **{
                    k: test.get(k) for k in ("n", "precision", "recall", "f1", "auroc",
                                             "threshold")}})
                rows.append(row)
                done.append(f"{model} on {policy}: test F1 {num(test.get('f1'))} "
                            f"(n={test.get('n')})")
        if judges:
            log.info("evaluate: waiting for the LLM judge (%s)", ", ".join(judges))
        for row in rows:
            judge = judges.get(row["policy"])
            row["judged_judge"] = judge.result() if judge is not None else None
            row["targets"] = E.check_targets(row, cfg.evaluation.targets)
            report.quality.append(row)
    finally:  # on an error, a judge still running finishes (and is recorded); none starts
        pool.shutdown(wait=True, cancel_futures=True)
    report.notes = E.notes(cfg)
    report.done("evaluate", ", ".join(done) + f"; reports in {W.out(cfg, 'evaluate')}")
