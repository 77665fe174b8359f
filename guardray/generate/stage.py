"""The SDG job on Ray Data: expand -> generate -> parse (+retries) -> reflect -> shards,
then diversify (GuardFormer 3.1 and 3.3), then dedup. Called by ``jobs/generate.py``.

Output folder layout (local or ``s3://``)::

    <output_dir>/gen-00000.parquet ...   samples of the given policies (source=seed)
    <output_dir>/div-00000.parquet ...   samples of synthetic policies (source=diverse)
    <output_dir>/manifest.json           counts per stage and per reject reason
    <output_dir>/rejects/gen-00000.parquet, div-..., policies-00000.parquet
    <output_dir>/_state/plan.json        fingerprints of the work plan (resume safety)
    <output_dir>/_state/stats/gen-00000.json ...  per-task counts
    <output_dir>/_state/diverse_policies.json     the synthetic policies, fixed once made
    <output_dir>/dedup/part-00000.parquet ...     the samples without near-duplicates
    <output_dir>/dedup/removed/, manifest.json    removed rows (and the row each duplicates)

`guardray.io.read_shards(output_dir)` and `read_shards_dataset` read the raw samples only;
later stages read ``<output_dir>/dedup`` (`guardray.generate.dedup_step`).

Resumption: requests are a pure function of (policies, config, templates, seed) and are
numbered into tasks of ``task_size``; task ``i`` writes ``gen-0000i.parquet`` last, after its
rejects and stats, atomically. A rerun skips tasks whose shard exists and runs the rest in
one streaming Ray Data pass, so an interrupted job loses at most its unfinished tasks and
never duplicates a sample. Rows are seeded per request, so a resumed task produces what an
uninterrupted run would have (for deterministic backends). A rerun whose plan differs from
the one on disk (other policies, counts, templates, model, sampling...) is refused instead of
mixing two plans in one folder.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

from guardray import schema as S
from guardray.config.base import ConfigError
from guardray.errors import RunError
from guardray.generate import diversify as D
from guardray.generate import parse as P
from guardray.generate import steps as T
from guardray.generate.config import GenerateConfig
from guardray.generate.dedup_step import dedup_output_dir, run_dedup_step
from guardray.generate.expand import (
    MESSAGES,
    REQUEST_ID,
    REQUESTED_LABEL,
    SEED,
    TASK,
    assign_tasks,
    example_pool,
    expand_requests,
)
from guardray.generate.rejects import write_rejects
from guardray.generate.templates import Templates, load_templates
from guardray.io import shards, uris
from guardray.llm import generate_dataset
from guardray.policies import Policy, load_policies
from guardray.progress import Progress

log = logging.getLogger(__name__)

SEED_PREFIX, DIVERSE_PREFIX, POLICY_PREFIX = "gen", "div", "policies"
STATE, REJECTS = "_state", "rejects"
MAP_CPUS = 0.25  # the pure row steps are light: leave CPUs to the model actors
FINAL_COLUMNS = [REQUEST_ID, TASK, S.POLICY_ID, S.SOURCE, REQUESTED_LABEL, S.TEXT, S.RATIONALE,
                 S.LABEL, S.LABEL_INITIAL, T.REASON, T.DETAIL, T.ATTEMPTS, T.NOTES, T.RAW,
                 T.REFLECTION, T.GEN_TOKENS, T.REFLECT_TOKENS]

TaskCallback = Callable[[str, int, dict[str, Any]], None]


class GenerateError(RunError):
    """The job cannot go on (a plan that differs from the one on disk, lost rows...)."""


class PlanMismatchError(GenerateError, ConfigError):
    """``output_dir`` holds a run with another plan; a `ConfigError` for the CLI (exit 2)."""


def preflight(cfg: GenerateConfig) -> list[Policy]:
    """The checks that need no Ray (``jobs/generate.py`` runs them before ``init_ray``), so
    bad input fails in a second, with one line, not after the model actors started.

    Checked: the policies and the templates load; ``output_dir`` (and its ``dedup`` folder) is
    a writable folder (`guardray.io.folders.check_output_location`: no file on the path, not
    read-only, not full); every shard already in it (a run being resumed) is a readable
    sample shard: a truncated, zero-byte or foreign file there would otherwise be taken for a
    finished task and fail only when the manifest is written, after all the generation.

    Returns:
        The loaded policies.

    Raises:
        ConfigError: a policy or template file (`guardray.policies.load_policies`).
        NotADirectoryError / StorageError: the output location.
        CorruptShardError / ShardSchemaError: a shard in ``output_dir``, by name (and row).
    """
    from guardray.io.folders import check_output_location

    policies = load_policies(cfg.policies)
    load_templates(cfg.templates.file, cfg.templates.overrides)
    so = cfg.storage_options or None
    check_output_location(cfg.output_dir, "output_dir")
    for folder in (cfg.output_dir, dedup_output_dir(cfg)):
        try:
            found = shards.list_shards(folder, so)
        except FileNotFoundError:
            continue
        for path in found:
            shards.check_shard_values(path, so)
    return policies


def run_generate(cfg: GenerateConfig, *, on_task_done: TaskCallback | None = None
                 ) -> dict[str, Any]:
    """Run (or resume) the whole SDG job; Ray must be initialised.

    Args:
        cfg: the job config.
        on_task_done: called as ``(prefix, task index, stats)`` after each task's shard is
            written (progress reporting; an exception it raises stops the job).

    Returns:
        The manifest's content (counts per stage and reason).
    """
    started = time.time()
    ctx = _Context(cfg)
    policies = load_policies(cfg.policies)
    log.info("generate: %d policies (%s) -> %s", len(policies),
             ", ".join(p.id for p in policies), cfg.output_dir)
    requests = expand_requests(policies, cfg.expand, ctx.templates, seed=cfg.seed, source="seed")
    seed_tasks = assign_tasks(requests, cfg.task_size)
    ctx.check_plan("seed", requests)
    log.info("expand: %d requests in %d tasks of up to %d", len(requests), len(seed_tasks),
             cfg.task_size)
    seed_stats = ctx.run_tasks(seed_tasks, policies, SEED_PREFIX, on_task_done)

    diverse: dict[str, Any] = {"enabled": cfg.diversify.enabled}
    div_stats: dict[int, dict[str, Any]] = {}
    if cfg.diversify.enabled and cfg.diversify.num_policies > 0:
        new_policies, diverse = ctx.diverse_policies(policies)
        div_requests = expand_requests(new_policies, cfg.expand, ctx.templates, seed=cfg.seed,
                                       source="diverse", unsafe=cfg.diversify.unsafe_per_policy,
                                       safe=cfg.diversify.safe_per_policy)
        div_tasks = assign_tasks(div_requests, cfg.task_size)
        ctx.check_plan("diverse", div_requests)
        diverse["requests"] = len(div_requests)
        div_stats = ctx.run_tasks(div_tasks, [*policies, *new_policies], DIVERSE_PREFIX,
                                  on_task_done)
    dedup = run_dedup_step(cfg)
    return ctx.write_manifest(policies, seed_stats, div_stats, diverse, dedup,
                              time.time() - started)


class _Context:
    """Settings and paths shared by the steps of one run."""

    def __init__(self, cfg: GenerateConfig):
        self.cfg = cfg
        # resolved once: every read and write below shares its filesystem
        self.out = uris.locate(cfg.output_dir, cfg.storage_options)
        self.templates: Templates = load_templates(cfg.templates.file, cfg.templates.overrides)
        self.ran_tasks = 0
        self.skipped_tasks = 0
        uris.makedirs(self.out)

    def path(self, *parts: str) -> uris.Location:
        return self.out.child(*parts)

    # ------------------------------------------------------------------ plan

    def check_plan(self, part: str, requests: list[dict[str, Any]]) -> None:
        """Record this part's plan, or refuse to mix it with a different one on disk."""
        c = self.cfg
        plan = {
            "requests": _digest(requests),
            "num_requests": len(requests),
            "task_size": c.task_size,
            "model": c.llm.model,
            "sampling": c.llm.sampling.model_dump(mode="json"),
            "parse": c.parse.model_dump(mode="json"),
            "reflect": c.reflect.model_dump(mode="json"),
            "splits": c.splits.model_dump(mode="json"),
        }
        target = self.path(STATE, "plan.json")
        current = uris.read_json(target) if uris.exists(target) else {}
        old = current.get(part)
        if old is not None and old != plan:
            changed = sorted(k for k in set(old) | set(plan) if old.get(k) != plan.get(k))
            raise PlanMismatchError(
                f"{self.out} holds a {part!r} run with a different plan (changed: "
                f"{', '.join(changed)}); finished shards would mix two plans. Use a new "
                "output_dir, or restore the earlier settings to resume that run."
            )
        if old is None:
            current[part] = plan
            uris.write_json_atomic(target, current)

    # ------------------------------------------------------------------ tasks

    def run_tasks(self, tasks: dict[int, list[dict[str, Any]]], policies: list[Policy],
                  prefix: str, on_task_done: TaskCallback | None) -> dict[int, dict[str, Any]]:
        """Run the tasks whose shard is missing; return every task's stats."""
        import ray

        pending = [t for t in sorted(tasks)
                   if not shards.shard_exists(self.out, t, prefix=prefix)]
        done_before = len(tasks) - len(pending)
        self.skipped_tasks += done_before
        log.info("%s: %d task(s), %d already written, %d to run", prefix, len(tasks),
                 done_before, len(pending))
        if pending:
            rows = [row for t in pending for row in tasks[t]]
            blocks = max(1, min(len(rows), 1000, -(-len(rows) // self.cfg.llm.batch_size)))
            ds = ray.data.from_items(rows, override_num_blocks=blocks)
            ds = self.sample_pipeline(ds, policies)
            self._collect(ds, {t: len(tasks[t]) for t in pending}, prefix, on_task_done)
        return {t: uris.read_json(self.path(STATE, "stats", _stats_name(prefix, t)))
                for t in sorted(tasks)}

    def sample_pipeline(self, ds, policies: list[Policy]):
        """The lazy Ray Data pipeline from request rows to finished rows (`FINAL_COLUMNS`)."""
        c = self.cfg
        parse_cfg, reflect_cfg, templates = c.parse, c.reflect, self.templates
        forbidden = {p.id: frozenset(P.normalize_for_match(t) for label in (S.SAFE, S.UNSAFE)
                                     for t in example_pool(p, label, templates))
                     for p in policies}
        by_id = {p.id: p for p in policies}
        seed = c.seed

        def first_parse(row):
            return T.apply_parse(row, row[T.RAW], row[T.GEN_ERROR], parse_cfg,
                                 forbidden[row[S.POLICY_ID]])

        ds = generate_dataset(ds, c.llm, messages_column=MESSAGES, output_column=T.RAW,
                              seed_column=SEED, tokens_column=T.GEN_TOKENS,
                              error_column=T.GEN_ERROR)
        ds = ds.map(first_parse, num_cpus=MAP_CPUS)
        for _ in range(c.parse.retries):
            ds = ds.map(lambda row: T.make_retry(row, 1, seed), num_cpus=MAP_CPUS)
            ds = generate_dataset(ds, c.llm, messages_column=T.RETRY_MESSAGES,
                                  output_column=T.RETRY_RAW, seed_column=T.RETRY_SEED,
                                  tokens_column=T.RETRY_TOKENS, error_column=T.RETRY_ERROR)
            ds = ds.map(lambda row: T.merge_retry(row, parse_cfg, forbidden[row[S.POLICY_ID]]),
                        num_cpus=MAP_CPUS)
        if reflect_cfg.enabled:
            ds = ds.map(lambda row: T.make_reflection(row, by_id, templates, True,
                                                      reflect_cfg.few_shot),
                        num_cpus=MAP_CPUS)
            reflect_llm = c.llm.with_sampling(max_tokens=reflect_cfg.max_tokens,
                                              temperature=reflect_cfg.temperature)
            ds = generate_dataset(ds, reflect_llm, messages_column=T.REFLECT_MESSAGES,
                                  output_column=T.REFLECT_RAW, tokens_column=T.REFLECT_TOKENS,
                                  error_column=T.REFLECT_ERROR)
        ds = ds.map(lambda row: T.apply_reflection(row, reflect_cfg), num_cpus=MAP_CPUS)
        return ds.select_columns(FINAL_COLUMNS)

    def _collect(self, ds, expected: dict[int, int], prefix: str,
                 on_task_done: TaskCallback | None) -> None:
        """Stream finished rows to the driver; write each task as soon as it is complete."""
        buffers: dict[int, list[dict[str, Any]]] = {}
        rows = iter(ds.iter_rows())
        try:
            self._consume(rows, buffers, expected, prefix, on_task_done)
        finally:
            close = getattr(rows, "close", None)
            if close is not None:
                close()  # stop Ray Data's executor now (its actors), not at garbage collection
        missing = {t: n - len(buffers.get(t, [])) for t, n in expected.items()
                   if not shards.shard_exists(self.out, t, prefix=prefix)}
        if missing:
            raise GenerateError(f"{prefix}: rows missing for task(s) {sorted(missing)}: the "
                                "pipeline returned fewer rows than requested; rerun to resume")

    def _consume(self, rows, buffers: dict[int, list[dict[str, Any]]], expected: dict[int, int],
                 prefix: str, on_task_done: TaskCallback | None) -> None:
        with Progress(f"generate {prefix} ({len(expected)} tasks)", sum(expected.values()),
                      unit="request") as progress:
            progress.metrics.update(tasks_written=0, samples=0)
            for row in rows:
                self._take(row, buffers, expected, prefix, on_task_done, progress)

    def _take(self, row, buffers: dict[int, list[dict[str, Any]]], expected: dict[int, int],
              prefix: str, on_task_done: TaskCallback | None, progress: Progress) -> None:
        """One finished request; writes its task as soon as the task is complete."""
        task = int(row[TASK])
        if task not in expected:
            raise GenerateError(f"row of unknown task {task} ({row[REQUEST_ID]})")
        buffers.setdefault(task, []).append(dict(row))
        if len(buffers[task]) < expected[task]:
            progress.update(1)
            return
        stats = self._write_task(prefix, task, buffers.pop(task))
        self.ran_tasks += 1
        progress.update(1, tasks_written=progress.metrics["tasks_written"] + 1,
                        samples=progress.metrics["samples"] + stats["samples"])
        log.debug("%s task %d written: %d samples, rejected %s", prefix, task,
                  stats["samples"], stats["rejected"] or "none")
        if on_task_done is not None:
            on_task_done(prefix, task, stats)

    def _write_task(self, prefix: str, task: int, rows: list[dict[str, Any]]) -> dict[str, Any]:
        """Rejects, then stats, then the samples shard (its existence marks the task done)."""
        c = self.cfg
        samples, rejects, stats = T.finish_task(rows, generator=c.llm.model, splits=c.splits,
                                                seed=c.seed)
        stats["task"] = task
        name = shards.shard_name(task, prefix)
        write_rejects(rejects, self.path(REJECTS, name))
        uris.write_json_atomic(self.path(STATE, "stats", _stats_name(prefix, task)), stats)
        shards.write_shard(samples, self.out, index=task, prefix=prefix, if_exists="skip")
        return stats

    # ------------------------------------------------------------------ diversify

    def diverse_policies(self, policies: list[Policy]) -> tuple[list[Policy], dict[str, Any]]:
        """The synthetic policies: made once from D_unified, then read back on reruns."""
        import ray

        c, target = self.cfg, self.path(STATE, "diverse_policies.json")
        settings = c.diversify.model_dump(mode="json", exclude={"enabled", "unsafe_per_policy",
                                                                "safe_per_policy"})
        settings["model"] = c.llm.model
        if uris.exists(target):
            state = uris.read_json(target)
            recorded = state.get("settings")  # absent in a hand-written state file: trusted
            if recorded is not None and recorded != settings:
                changed = sorted(k for k in set(recorded) | set(settings)
                                 if recorded.get(k) != settings.get(k))
                raise PlanMismatchError(
                    f"{target} was made with other diversify settings (changed: "
                    f"{', '.join(changed)}); use a new output_dir or restore them")
            made = [Policy.model_validate(p) for p in state["policies"]]
            log.info("diversify: reusing %d synthetic policies from %s", len(made), target)
            return made, state["summary"]
        unified = self._unified_rows()
        requests = D.diversify_requests(unified, policies, c.diversify, self.templates,
                                        seed=c.seed)
        log.info("diversify: asking for %d synthetic policies from %d unified rows",
                 len(requests), len(unified))
        llm = c.llm.with_sampling(max_tokens=c.diversify.max_tokens)
        ds = ray.data.from_items(requests, override_num_blocks=max(1, len(requests)))
        ds = generate_dataset(ds, llm, messages_column=MESSAGES, output_column=T.RAW,
                              seed_column=SEED, error_column=T.GEN_ERROR)
        answers = sorted(ds.select_columns([REQUEST_ID, D.TOPIC, T.RAW, T.GEN_ERROR]).take_all(),
                         key=lambda r: r[REQUEST_ID])
        taken = {p.name.lower() for p in policies}
        made, rejects, reasons = [], [], Counter()
        for answer in answers:
            if answer[T.GEN_ERROR]:
                result: Policy | P.Reject = P.Reject(P.BACKEND_ERROR, answer[T.GEN_ERROR][:500])
            else:
                result = D.policy_from_answer(answer[T.RAW], taken)
            if isinstance(result, P.Reject):
                reasons[result.reason] += 1
                rejects.append(_policy_reject(answer, result, c.llm.model))
                continue
            taken.add(result.name.lower())
            made.append(result)
        write_rejects(rejects, self.path(REJECTS, f"{POLICY_PREFIX}-00000.parquet"))
        summary = {"requested": len(requests), "policies": [p.id for p in made],
                   "rejected": dict(sorted(reasons.items())), "unified_rows": len(unified)}
        uris.write_json_atomic(target, {"policies": [p.model_dump(mode="json") for p in made],
                                        "summary": summary, "settings": settings})
        if not made:
            log.warning("diversify: no valid synthetic policy among %d answers (%s)",
                        len(requests), dict(reasons))
        log.info("diversify: %d synthetic policies: %s", len(made), ", ".join(p.id for p in made))
        return made, summary

    def _unified_rows(self) -> list[dict[str, Any]]:
        """D_unified: the samples generated for the human policies."""
        rows = []
        for path in shards.list_shards(self.out):
            if uris.parse_uri(path).name.startswith(f"{SEED_PREFIX}-"):
                rows += shards.read_shard(path).to_pylist()
        return rows

    # ------------------------------------------------------------------ manifest

    def write_manifest(self, policies: list[Policy], seed_stats: dict[int, dict[str, Any]],
                       div_stats: dict[int, dict[str, Any]], diverse: dict[str, Any],
                       dedup: dict[str, Any], seconds: float) -> dict[str, Any]:
        from guardray.io import read_manifest, write_manifest

        table = shards.read_shards(self.out, allow_empty=True)
        ids = table.column(S.ID).to_pylist()
        per_policy: dict[str, dict[str, int]] = {}
        for pid, label in zip(table.column(S.POLICY_ID).to_pylist(),
                              table.column(S.LABEL).to_pylist()):
            counts = per_policy.setdefault(pid, {"unsafe": 0, "safe": 0})
            counts[S.LABEL_NAMES[label]] += 1
        parts = {"seed": _sum_stats(seed_stats), "diverse": _sum_stats(div_stats)}
        total = _sum_stats({**{("s", k): v for k, v in seed_stats.items()},
                            **{("d", k): v for k, v in div_stats.items()}})
        stages = {
            "expand": {"policies": len(policies), "requests": {k: v["requests"]
                                                               for k, v in parts.items()},
                       "tasks": {"seed": len(seed_stats), "diverse": len(div_stats)}},
            "generate": {"requests": total["requests"], "attempts": total["attempts"],
                         "completion_tokens": total["tokens"]["generate"],
                         "backend_errors": total["rejected"].get(P.BACKEND_ERROR, 0)},
            "parse": {"ok": total["samples"] + total["rejected"].get(P.DUPLICATE, 0)
                      + total["rejected"].get(P.REFLECTION_UNPARSED, 0),
                      "recovered_by_retry": total["recovered_by_retry"],
                      "rejected": total["rejected"], "notes": total["notes"]},
            "reflect": {"enabled": self.cfg.reflect.enabled, **total["reflection"],
                        "completion_tokens": total["tokens"]["reflect"]},
            "diversify": diverse,
            "write": {"samples": len(ids), "labels": total["labels"],
                      "shards": len(seed_stats) + len(div_stats),
                      "tasks_run_now": self.ran_tasks, "tasks_done_before": self.skipped_tasks,
                      "duplicate_ids_across_tasks": len(ids) - len(set(ids))},
            "dedup": dedup,
        }
        write_manifest(
            self.out, "generate", inputs=list(self.cfg.policies), config=self.cfg,
            counts={"in": total["requests"], "out": len(ids), "dropped": total["rejected"]},
            extra={"stages": stages, "by_source": parts, "per_policy": per_policy,
                   "generator": self.cfg.llm.model, "backend": self.cfg.llm.backend,
                   "templates": self.templates.fingerprint(), "seconds": round(seconds, 1)},
                    )
        return read_manifest(self.out)


def _stats_name(prefix: str, task: int) -> str:
    return f"{prefix}-{task:05d}.json"


def _digest(rows: list[dict[str, Any]]) -> str:
    h = hashlib.blake2b(digest_size=16)
    for row in rows:
        h.update(json.dumps(row, sort_keys=True, ensure_ascii=False, default=str).encode())
    return h.hexdigest()


def _sum_stats(stats: dict[Any, dict[str, Any]]) -> dict[str, Any]:
    """Add up per-task stats (counters summed key by key)."""
    total: dict[str, Any] = {"requests": 0, "samples": 0, "recovered_by_retry": 0,
                             "tokens": {"generate": 0, "reflect": 0}}
    counters = {k: Counter() for k in ("rejected", "notes", "reflection", "labels", "attempts")}
    for s in stats.values():
        for key in ("requests", "samples", "recovered_by_retry"):
            total[key] += int(s[key])
        for key in ("generate", "reflect"):
            total["tokens"][key] += int(s["tokens"][key])
        for key, counter in counters.items():
            counter.update({k: int(v) for k, v in s[key].items()})
    total.update({k: dict(sorted(c.items())) for k, c in counters.items()})
    return total


def _policy_reject(answer: dict[str, Any], reject: P.Reject, generator: str) -> dict[str, Any]:
    from guardray.generate import rejects as R

    return {R.REQUEST_ID: answer[REQUEST_ID], R.TASK: 0, R.KIND: "policy", R.POLICY_ID: "",
            R.SOURCE: "diverse", R.REQUESTED_LABEL: -1, R.REASON: reject.reason,
            R.DETAIL: f"topic {answer[D.TOPIC]!r}: {reject.detail}", R.ATTEMPTS: 1,
            R.RAW_OUTPUT: str(answer[T.RAW] or ""), R.GENERATOR: generator}
