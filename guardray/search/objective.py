"""The objective of the merge search: the merged model's macro-F1 on the validation rows of every
policy, each row with its own policy in the input (UniGuard appendix A.5).

- `load_rows`: the rows of one split (validation for the search; test once, at the end).
- `instruction_options`: the instructions an instruction-input model may see (A.5.1): the
  policy descriptions the candidates were trained with, then each policy's ``instructions``.
- `encode`: token ids per instruction option, computed once in the driver so trials never load
  a tokenizer.
- `score_rows` (torch): P(unsafe) of every row, batches sorted by length.
- `evaluate_scores` (numpy): the decision threshold chosen on these (validation) scores, one
  for all rows or one per policy (``scope``), then the macro-F1 of each policy's rows; the mean
  and the worst policy.
"""

from __future__ import annotations

import dataclasses
import logging
import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from guardray import schema as S
from guardray.errors import DataError
from guardray.metrics import binary
from guardray.metrics.threshold import choose_threshold

log = logging.getLogger(__name__)


@dataclasses.dataclass
class Rows:
    """Labelled rows of one split: parallel lists.

    Attributes:
        texts: prompts.
        labels: (n,) 0 safe / 1 unsafe.
        policy_ids: the policy each row is judged under.
    """

    texts: list[str]
    labels: np.ndarray
    policy_ids: list[str]

    def __len__(self) -> int:
        return len(self.texts)

    def counts(self) -> dict[str, dict[str, int]]:
        out: dict[str, dict[str, int]] = {}
        for p, y in zip(self.policy_ids, self.labels):
            c = out.setdefault(p, {"rows": 0, "unsafe": 0})
            c["rows"] += 1
            c["unsafe"] += int(y)
        return out


def load_rows(cfg, split: str, policy_ids: Sequence[str], *, cap: int | None = None,
              seed: int = 0) -> Rows:
    """Rows of ``split`` for ``policy_ids`` from ``cfg.data`` (a `SearchConfig`).

    Args:
        cfg: the search config.
        split: the split to keep.
        policy_ids: policies to keep (every one must have rows).
        cap: at most this many rows per policy (a seeded sample).
        seed: seed of that sample.

    Raises:
        DataError: unreadable data, or a policy without rows in ``split``.
    """
    from guardray.data import DataSpec, load_labeled

    d = cfg.data
    spec = DataSpec(path=d.path, text_column=d.text_column, label_column=d.label_column,
                    policy_column=d.policy_column, split_column=d.split_column, split=split)
    frame = load_labeled(spec, storage_options=cfg.storage_options or None).frame
    frame = frame[frame[S.POLICY_ID].isin(list(policy_ids))]
    missing = [p for p in policy_ids if p not in set(frame[S.POLICY_ID])]
    if missing:
        raise DataError(f"{d.path}: no {split!r} rows for policy id(s) {missing} of the pool; "
                        f"the objective needs rows of every policy")
    if cap:
        rng = np.random.default_rng(seed)
        parts = []
        for pid in policy_ids:
            idx = np.flatnonzero((frame[S.POLICY_ID] == pid).to_numpy())
            if idx.size > cap:
                idx = np.sort(rng.choice(idx, cap, replace=False))
            parts.append(idx)
        frame = frame.iloc[np.sort(np.concatenate(parts))]
    return Rows(frame[S.TEXT].tolist(), frame[S.LABEL].to_numpy(dtype=np.int64),
                frame[S.POLICY_ID].tolist())


def instruction_options(cards: Sequence[Mapping[str, Any]], policies: Mapping[str, Any],
                        policy_ids: Sequence[str], search: bool = True) -> list[dict[str, Any]]:
    """Instruction options of an instruction-input pool (A.5.1), each ``{"name", "texts":
    {policy id: instruction}}``.

    Option 0 holds the descriptions of the best candidate's card (what the models were trained
    with), then the other candidates' descriptions where they differ, then ``instructions[j]``
    of the loaded policies (a policy with fewer instructions keeps its description). Without
    ``search`` only option 0 exists.
    """

    def from_card(card) -> dict[str, str]:
        infos = card.get("policies") or {}
        texts = {}
        for pid in policy_ids:
            if pid in infos and infos[pid].get("description"):
                texts[pid] = infos[pid]["description"]
            elif pid in policies:
                texts[pid] = policies[pid].description
            else:
                raise DataError(f"no description of policy {pid!r}: add its YAML to policies")
        return texts

    options = [{"name": "description", "texts": from_card(cards[0])}]
    if search:
        for i, card in enumerate(cards[1:], 1):
            options.append({"name": f"description of candidate {i}", "texts": from_card(card)})
        n = max((len(policies[p].instructions) for p in policy_ids if p in policies), default=0)
        for j in range(n):
            texts = dict(options[0]["texts"])
            for pid in policy_ids:
                if pid in policies and j < len(policies[pid].instructions):
                    texts[pid] = policies[pid].instructions[j]
            options.append({"name": f"instructions[{j}]", "texts": texts})
    unique, seen = [], set()
    for opt in options:
        key = tuple(sorted(opt["texts"].items()))
        if key not in seen:
            seen.add(key)
            unique.append(opt)
    return unique


def model_inputs(rows: Rows, input_format: str, texts: Mapping[str, str] | None) -> list[str]:
    """The strings the classifier sees: the prompt, or ``{instruction}\\nQuery: {prompt}``."""
    if input_format == "text":
        return list(rows.texts)
    from guardray.policies import format_gip_input

    return [format_gip_input(texts[p], t) for t, p in zip(rows.texts, rows.policy_ids)]


def encode(tokenizer, inputs: Sequence[str], max_length: int) -> list[list[int]]:
    """Token ids without padding (batches are padded to their longest member)."""
    return tokenizer(list(inputs), truncation=True, max_length=max_length,
                     padding=False)["input_ids"]


def score_rows(model, ids: Sequence[Sequence[int]], pad_id: int, batch_size: int = 64,
               device: str = "cpu") -> np.ndarray:
    """(n,) P(unsafe) of every row; batches sorted by length (least padding).

    Args:
        model: a sequence classifier (moved to ``device``).
        ids: token ids per row, unpadded.
        pad_id: padding id.
        batch_size: rows per forward pass.
        device: ``cpu`` or ``cuda``.
    """
    import torch

    model.to(device)
    order = np.argsort([len(x) for x in ids], kind="stable")
    scores = np.empty(len(ids), dtype=np.float64)
    model.eval()
    with torch.inference_mode():
        for start in range(0, len(ids), batch_size):
            idx = order[start:start + batch_size]
            width = max(len(ids[i]) for i in idx)
            input_ids = torch.full((len(idx), width), pad_id, dtype=torch.long)
            mask = torch.zeros((len(idx), width), dtype=torch.long)
            for r, i in enumerate(idx):
                input_ids[r, :len(ids[i])] = torch.as_tensor(ids[i])
                mask[r, :len(ids[i])] = 1
            logits = model(input_ids=input_ids.to(device),
                           attention_mask=mask.to(device)).logits.float()
            scores[idx] = torch.softmax(logits, dim=-1)[:, 1].cpu().numpy()
    return scores


def evaluate_scores(scores: np.ndarray, labels: np.ndarray, policy_ids: Sequence[str], *,
                    threshold: float | None = None, rule: str = "max_f1",
                    scope: str = "all",
                    policy_thresholds: Mapping[str, float] | None = None) -> dict[str, Any]:
    """Per-policy metrics at a decision threshold chosen on these scores, or given.

    Args:
        scores: (n,) P(unsafe).
        labels: (n,) 0/1.
        policy_ids: (n,) the policy of each row.
        threshold: a given threshold for every row (e.g. a candidate's own); None chooses
            one on these scores with ``rule`` (validation rows only).
        rule: ``max_f1``, ``max_f1_1se`` or ``fixed``.
        scope: ``all``: one threshold for every row; ``policy``: each policy's rows at their
            own threshold, chosen with ``rule`` on that policy's rows (how the pipeline
            deploys a merged prompt-only model, which gives a prompt one score under every
            policy). The threshold over all rows is chosen in both scopes (``threshold``).
        policy_thresholds: given per-policy thresholds (scope ``policy`` on test rows: the
            ones chosen on validation); a policy missing from it uses ``threshold``.

    Returns:
        ``{"threshold", "threshold_choice", "scope", "mean", "worst", "worst_policy",
        "policies": {pid: {"n", "threshold", "macro_f1", "f1", "precision", "recall"}}}``
        (scope ``policy`` adds ``"threshold_choice"`` per policy when chosen); a non-finite
        score makes ``mean`` and ``worst`` NaN.
    """
    if scope not in ("all", "policy"):
        raise ValueError(f"threshold scope must be 'all' or 'policy', got {scope!r}")
    scores = np.asarray(scores, dtype=np.float64)
    labels = np.asarray(labels)
    if not np.all(np.isfinite(scores)):
        return {"threshold": math.nan, "threshold_choice": None, "scope": scope,
                "mean": math.nan, "worst": math.nan, "worst_policy": None, "policies": {}}
    choice = None
    if threshold is None:
        choice = choose_threshold(scores, labels, rule=rule)
        threshold = choice.threshold
    pids = np.asarray(policy_ids)
    per = {}
    for pid in sorted(set(policy_ids)):
        m = pids == pid
        t, own = float(threshold), None
        if scope == "policy":
            if policy_thresholds is not None:
                t = float(policy_thresholds.get(pid, threshold))
            else:
                own = choose_threshold(scores[m], labels[m], rule=rule)
                t = own.threshold
        pred = (scores[m] >= t).astype(np.int64)
        per[pid] = {"n": int(m.sum()), "threshold": t,
                    "macro_f1": binary.macro_f1(labels[m], pred),
                    "f1": binary.f1(labels[m], pred),
                    "precision": binary.precision(labels[m], pred),
                    "recall": binary.recall(labels[m], pred)}
        if own is not None:
            per[pid]["threshold_choice"] = own.to_dict()
    values = [v["macro_f1"] for v in per.values()]
    worst = min(per, key=lambda p: per[p]["macro_f1"]) if per else None
    return {"threshold": float(threshold),
            "threshold_choice": choice.to_dict() if choice else None, "scope": scope,
            "mean": float(np.mean(values)) if values else math.nan,
            "worst": float(min(values)) if values else math.nan,
            "worst_policy": worst, "policies": per}
