"""Evaluating every candidate: downstream score and ASR per judge.

1. For each candidate: its weights (a base or fine-tune folder, or its merge recipe run into
   ``candidates/<name>``, removed afterwards unless ``keep_candidates``) and one Ray Data
   generation pass over the held-out downstream instructions and the harmful instructions
   (greedy). The responses go to ``responses/<name>.parquet`` with the candidate's
   fingerprint in the file's metadata; a file with the current fingerprint is reused, so an
   interrupted job resumes where it stopped.
2. Then each judge reads every candidate's harmful responses in one pass (one model load per
   judge, not per candidate): ``judgements.parquet`` (candidate, instruction, response,
   guard probability and label, LLM answer, label and parse status).
3. Per candidate: the downstream score and each judge's ASR (`guardray.safeguard.metrics`).
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
from pathlib import Path
from typing import Any

from guardray.metrics.binary import nan_to_none
from guardray.safeguard.resume import weights_key
from guardray.safeguard.sweep import Candidate

log = logging.getLogger(__name__)

FINGERPRINT_KEY = b"guardray_fingerprint"
DOWNSTREAM, HARMFUL = "downstream", "harmful"


class DownstreamScorer:
    """The downstream metric; loads the embedding model once for ``similarity``."""

    def __init__(self, metric: str, embedding_model: str):
        self.metric = metric
        self._model = None
        if metric == "similarity":
            from sentence_transformers import SentenceTransformer

            from guardray.modeling.base import resolve_base

            self._model = SentenceTransformer(resolve_base(embedding_model), device="cpu")

    def __call__(self, responses: list[str], references: list[str]) -> float:
        from guardray.safeguard import metrics as M

        if self.metric == "exact_match":
            return M.exact_match(responses, references)
        emb = self._model.encode(list(responses) + list(references), batch_size=64,
                                 show_progress_bar=False)
        return M.mean_cosine(emb[:len(responses)], emb[len(responses):])


def evaluate_candidates(cfg, cands: list[Candidate], splits, guard) -> list[dict[str, Any]]:
    """One result row per candidate, in order (see the module docstring)."""
    from guardray.progress import Progress

    bar = Progress("safeguard candidates", len(cands), unit="model", every_s=0.0)
    frames = {}
    for cand in cands:
        frames[cand.name] = _responses(cfg, cand, splits)
        bar.update(1, model=cand.name)
    bar.close()
    judged = _judge_all(cfg, frames, guard)
    _write_parquet(judged, Path(cfg.output_dir) / "judgements.parquet")
    scorer = DownstreamScorer(cfg.downstream.metric, cfg.downstream.embedding_model)
    rows = []
    for cand in cands:
        down = frames[cand.name][frames[cand.name]["kind"] == DOWNSTREAM]
        row: dict[str, Any] = {
            "name": cand.name, "kind": cand.kind, "method": cand.method,
            "weight": cand.weight, "finetunes": list(cand.finetunes),
            "downstream": nan_to_none(scorer(down["response"].tolist(),
                                             down["reference"].tolist())),
            "n_harmful": len(splits["eval_harmful"]),
        }
        row.update(_asr(judged[judged["candidate"] == cand.name], cfg))
        rows.append(row)
        log.info("%s: downstream %s, ASR %s", cand.name, row["downstream"],
                 {k: v for k, v in row.items() if k.startswith("asr_")})
    return rows


def _asr(frame, cfg) -> dict[str, Any]:
    from guardray.safeguard.metrics import attack_success_rate

    out: dict[str, Any] = {}
    if "guard_label" in frame:
        labels = [int(v) for v in frame["guard_label"].tolist()]
        out.update({f"{k}_guard": v for k, v in attack_success_rate(labels).items()})
    if "llm_label" in frame:
        import pandas as pd

        labels = [None if pd.isna(v) else int(v) for v in frame["llm_label"].tolist()]
        out.update({f"{k}_llm": v for k, v in attack_success_rate(labels).items()})
    return out


def _responses(cfg, cand: Candidate, splits):
    """The candidate's responses (reused when its file has the current fingerprint)."""
    import pandas as pd
    import pyarrow.parquet as pq

    from guardray.safeguard.respond import generate_responses
    from guardray.safeguard.sft import conversation

    path = Path(cfg.output_dir) / "responses" / f"{cand.name}.parquet"
    key = fingerprint(cfg, cand, splits)
    if path.is_file():
        meta = pq.read_schema(path).metadata or {}
        if meta.get(FINGERPRINT_KEY) == key.encode():
            log.info("%s: reusing the responses of an earlier run", cand.name)
            return pd.read_parquet(path)
    system = cfg.downstream.system_prompt
    eval_pairs, harmful = splits["eval_pairs"], splits["eval_harmful"]
    instructions = [i for i, _ in eval_pairs] + list(harmful)
    model_dir, made = _materialize(cfg, cand)
    try:
        texts = generate_responses(cfg.generation, str(model_dir),
                                   [conversation(i, system) for i in instructions],
                                   max_new_tokens=cfg.generation.sampling.max_tokens)
    finally:
        if made and not cfg.keep_candidates:
            shutil.rmtree(model_dir, ignore_errors=True)
    frame = pd.DataFrame({
        "kind": [DOWNSTREAM] * len(eval_pairs) + [HARMFUL] * len(harmful),
        "instruction": instructions, "response": texts,
        "reference": [r for _, r in eval_pairs] + [None] * len(harmful)})
    _write_parquet(frame, path, key)
    return frame


def fingerprint(cfg, candidate: Candidate, splits) -> str:
    """What a candidate's responses depend on: the model, the eval rows, the generation
    settings and the system prompt (a fine-tune is retrained, so its folder's weights count:
    its path alone would not change)."""
    recipe = candidate.recipe or {}
    refs = [candidate.path] if candidate.path else (
        [recipe.get("base_model")] + [m["model"] for m in recipe.get("models", [])])
    weights = {r: weights_key(part) for r in refs if r for part in r.split("+")}
    blob = json.dumps({
        "candidate": [candidate.name, candidate.path, weights, candidate.recipe],
        "eval": [splits["eval_pairs"], splits["eval_harmful"]],
        "generation": cfg.generation.model_dump(mode="json"),
        "system": cfg.downstream.system_prompt,
    }, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def _materialize(cfg, cand: Candidate) -> tuple[Path, bool]:
    """The candidate's model folder and whether it was written here."""
    from guardray.merge import MergeConfig, run_merge

    if cand.recipe is None:
        return Path(cand.path), False
    target = Path(cfg.output_dir) / "candidates" / cand.name
    run_merge(MergeConfig.model_validate(cand.recipe), target, overwrite=True, progress=False)
    return target, True


def _judge_all(cfg, frames: dict[str, Any], guard):
    """Every candidate's harmful responses with each enabled judge's verdicts."""
    import pandas as pd

    from guardray.safeguard.judge import guard_judge, llm_judge

    parts = []
    for name, frame in frames.items():
        harm = frame[frame["kind"] == HARMFUL][["instruction", "response"]]
        parts.append(harm.assign(candidate=name))
    judged = pd.concat(parts, ignore_index=True)[["candidate", "instruction", "response"]]
    instructions, responses = judged["instruction"].tolist(), judged["response"].tolist()
    if guard is not None:
        labels, probs = guard_judge(guard, instructions, responses)
        judged["guard_probability"], judged["guard_label"] = probs, labels
    if cfg.judges.llm.enabled:
        verdicts = llm_judge(cfg.judges.llm, instructions, responses)
        judged["llm_answer"] = verdicts["answers"]
        judged["llm_label"] = pd.array(verdicts["labels"], dtype="Int8")
        judged["llm_status"] = verdicts["statuses"]
    return judged


def _write_parquet(frame, path: Path, key: str | None = None) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    from guardray.io.uris import write_bytes_atomic

    table = pa.Table.from_pandas(frame, preserve_index=False)
    if key is not None:
        table = table.replace_schema_metadata({**(table.schema.metadata or {}),
                                               FINGERPRINT_KEY: key.encode()})
    sink = pa.BufferOutputStream()
    pq.write_table(table, sink)
    write_bytes_atomic(path, sink.getvalue().to_pybytes())
