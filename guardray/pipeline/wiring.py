"""How the pipeline chains its stages: each stage's job config, with the folders that connect it.

Every stage is configured by its own YAML file (``stages.<name>.config``) plus overrides; the
pipeline then sets what ties the stages together, so one ``output_dir`` holds a whole run::

    {output_dir}/seed                 policy examples as sample shards
    {output_dir}/ingest               imported labelled rows (the embedded data pack)
    {output_dir}/generate             raw synthetic shards (+ rejects, state, manifest)
    {output_dir}/generate/dedup       synthetic samples without near-duplicates
    {output_dir}/data                 every source in one training set (guardray.pipeline.data)
    {output_dir}/data/cross_source    the rows of held-out sources (cross-source test)
    {output_dir}/pretrain/model       the GIP checkpoint (Hugging Face folder)
    {output_dir}/pretrain/ray         Ray Train run storage (checkpoints, TensorBoard)
    {output_dir}/finetune/{policy}/seed{n}   per-policy classifiers
    {output_dir}/search               the merge search: uniguard/ (HF folder), recipe.yaml,
                                      report.md
    {output_dir}/evaluate/{policy}    metrics and report of each classifier on its test sets
    {output_dir}/evaluate/judge/{policy}   the LLM judge on the judged cross-source rows

Pure config building: no Ray, no I/O beyond reading the stage YAML files.
"""

from __future__ import annotations

import json
from typing import Any

from guardray.config.base import ConfigError
from guardray.config.loader import load_config
from guardray.io import uris
from guardray.pipeline.config import PipelineConfig, StageSection


def _set(key: str, value: Any) -> str:
    """A ``key=value`` override whose value survives YAML parsing unchanged (JSON is YAML)."""
    return f"{key}={json.dumps(value)}"


def _common(cfg: PipelineConfig) -> list[str]:
    return [_set("ray", cfg.ray.model_dump(mode="json")),
            _set("storage_options", cfg.storage_options)]


def _load(cls: type, stage: StageSection, name: str, wiring: list[str],
          defaults: list[str] = ()):
    """The stage's config file, then ``defaults`` (the pipeline's choice, which the stage's
    own overrides may change), the stage's overrides, then ``wiring`` (fixed by the run)."""
    try:
        return load_config(cls, stage.config, [*defaults, *stage.overrides, *wiring])
    except ConfigError as exc:
        raise ConfigError(f"pipeline stage {name!r} ({stage.config}): {exc}") from None


def out(cfg: PipelineConfig, *parts: str) -> str:
    """A folder under the pipeline's ``output_dir``."""
    return uris.join_uri(uris.parse_uri(cfg.output_dir).uri, *parts)


def generate_config(cfg: PipelineConfig):
    """The generate stage's config: this run's policies, seed, splits and models."""
    from guardray.generate import GenerateConfig

    return _load(GenerateConfig, cfg.stages.generate, "generate", [
        _set("output_dir", out(cfg, "generate")), _set("policies", cfg.policies),
        _set("seed", cfg.seed), _set("splits", cfg.splits.model_dump(mode="json")),
        _set("llm.model", cfg.models.generator),
        _set("dedup.embedder.model", cfg.models.embedder), *_common(cfg)])


def ingest_config(cfg: PipelineConfig):
    """The ingest stage's config: this run's policies and seed, into ``{output_dir}/ingest``.

    Its own dedup and group splits are cut to the exact ones: the data step
    (`guardray.pipeline.data`) embeds the whole mix once for both.
    """
    from guardray.ingest import IngestConfig

    return _load(IngestConfig, cfg.stages.ingest, "ingest", [
        _set("output_dir", out(cfg, "ingest")), _set("policies", cfg.policies),
        _set("seed", cfg.seed), _set("split", cfg.splits.model_dump(mode="json")),
        _set("overwrite", True), _set("other_policies", "skip"),
        _set("dedup.method", "exact_only"),
        _set("groups.method", "exact"), _set("dedup.embedder.model", cfg.models.embedder),
        *_common(cfg)])


def synthetic_dir(generate) -> str:
    """Where a generate config's samples end up (after its dedup step when it has one)."""
    from guardray.generate import dedup_output_dir

    return dedup_output_dir(generate) if generate.dedup.enabled else generate.output_dir


def source_dirs(cfg: PipelineConfig, ingest=None, generate=None) -> list[str]:
    """The folders the data step unites, in priority order: imported, seed, synthetic."""
    dirs = [ingest.output_dir] if ingest is not None else []
    dirs.append(out(cfg, "seed"))
    if generate is not None:
        dirs.append(synthetic_dir(generate))
    return dirs


def training_data_dir(cfg: PipelineConfig) -> str:
    """The shards the training stages read: the data step's folder, or the seed rows when
    neither ingest nor generate runs."""
    if cfg.stages.ingest.enabled or cfg.stages.generate.enabled:
        return out(cfg, "data")
    return out(cfg, "seed")


def cross_source_dir(cfg: PipelineConfig) -> str:
    """The held-out sources' rows the data step writes (the cross-source test set)."""
    return out(cfg, "data", "cross_source")


def diverse_policies_file(cfg: PipelineConfig) -> str:
    """Where the generate stage records its synthetic policies (GuardFormer 3.3)."""
    return out(cfg, "generate", "_state", "diverse_policies.json")


def pretrain_config(cfg: PipelineConfig, data_dir: str, *, diverse: list[str] = ()):
    """The GIP stage's config: reads ``data_dir``, exports to ``{output_dir}/pretrain``."""
    from guardray.pretrain import PretrainConfig

    return _load(PretrainConfig, cfg.stages.pretrain, "pretrain", [
        _set("data.path", data_dir), _set("data.policies", cfg.policies),
        _set("data.diverse_policies", list(diverse)), _set("train.seed", cfg.seed),
        _set("output_dir", out(cfg, "pretrain")),
        _set("storage_path", out(cfg, "pretrain", "ray")), *_common(cfg)])


def gip_model_dir(pretrain) -> str:
    """The Hugging Face folder a pretrain config's run exports (what GuardFormer fine-tunes)."""
    from guardray.pretrain import MODEL_DIR

    return uris.join_uri(uris.parse_uri(pretrain.output_dir).uri, MODEL_DIR)


def finetune_config(cfg: PipelineConfig, data_dir: str, gip_model: str | None):
    """The fine-tune stage's config; GuardFormer starts from ``gip_model`` when there is one.

    Raises:
        ConfigError: the GuardFormer method without a GIP checkpoint (pretrain disabled and
            no ``model.base`` given in the stage's overrides).
    """
    from guardray.finetune import FinetuneConfig

    stage = cfg.stages.finetune
    wiring = [_set("data.path", data_dir), _set("policies", cfg.policies),
              _set("output_dir", out(cfg, "finetune")), _set("overwrite", True),
              *_common(cfg)]
    probe = _load(FinetuneConfig, stage, "finetune", wiring)
    base_overridden = any(o.split("=", 1)[0].strip() == "model.base" for o in stage.overrides)
    if probe.method == "guardformer" and not base_overridden:
        if gip_model is None:
            raise ConfigError(
                "pipeline stage 'finetune': method guardformer fine-tunes a GIP checkpoint, "
                "but stages.pretrain is disabled; enable it, set a model.base override, or "
                "use method policyguard")
        return _load(FinetuneConfig, stage, "finetune", [*wiring, _set("model.base", gip_model)])
    return probe


def search_config(cfg: PipelineConfig, data_dir: str):
    """The merge search over the fine-tuned classifiers of this run (UniGuard).

    Fine-tuning is redone on a rerun, so the search starts over too (``resume: never``).
    The objective thresholds each policy's rows on their own (``objective.threshold_scope:
    policy``, which the stage's overrides may change): the evaluate stage evaluates UniGuard
    once per policy, at a threshold chosen on that policy's validation rows, so the search
    picks the merge by the measure the report gives it.
    """
    from guardray.search import SearchConfig

    return _load(SearchConfig, cfg.stages.merge, "merge", [
        _set("pool.finetune_dirs", [out(cfg, "finetune")]), _set("data.path", data_dir),
        _set("policies", cfg.policies), _set("output_dir", out(cfg, "search")),
        _set("resume", "never"), _set("overwrite", True), *_common(cfg)],
        defaults=[_set("objective.threshold_scope", "policy")])


def evaluate_config(cfg: PipelineConfig, data_dir: str, policy_id: str | None, model_dir: str,
                    name: str | None = None, extra: list[dict[str, Any]] = (),
                    threshold_rule: str | None = None):
    """The evaluation of one classifier on its policy's test rows (all test rows: None), then
    on ``extra`` datasets (`guardray.evaluate.config` data entries).

    The decision threshold is chosen on the validation rows, never on a test set, by
    ``threshold_rule`` (the rule the model's own stage used: finetune's
    ``train.threshold_rule``, the search's ``objective.threshold_rule``), so the report
    measures the model at the threshold its stage would pick; a ``threshold.rule`` in
    ``stages.evaluate.overrides`` takes precedence, and None keeps the evaluate config's.
    """
    from guardray.evaluate import EvaluateConfig

    name = name or policy_id or "all"
    data = {"path": data_dir, "split": "test", "name": "test"}
    validation = {"path": data_dir, "split": "validation", "name": f"{name}-validation"}
    return _load(EvaluateConfig, cfg.stages.evaluate, "evaluate", [
        _set("model", model_dir), _set("judge", None), _set("policy", policy_id),
        _set("policies", cfg.policies), _set("data", [data, *extra]),
        _set("validation_data", validation), _set("overwrite", True),
        _set("output_dir", out(cfg, "evaluate", name)), *_common(cfg)],
        defaults=[_set("threshold.rule", threshold_rule)] if threshold_rule else [])


def judge_config(cfg: PipelineConfig, policy_id: str, data: dict[str, Any]):
    """The LLM judge of ``cfg.evaluation.judge`` on ``data`` under ``policy_id``."""
    from guardray.evaluate import EvaluateConfig
    from guardray.pipeline.config import StageSection

    section = StageSection(config=cfg.evaluation.judge)
    return _load(EvaluateConfig, section, "evaluate (judge)", [
        _set("policy", policy_id), _set("policies", cfg.policies), _set("data", [data]),
        _set("overwrite", True), _set("output_dir", out(cfg, "evaluate", "judge", policy_id)),
        *_common(cfg)])
