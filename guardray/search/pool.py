"""The candidate pool of the merge search: fine-tuned guard classifiers that share one base.

Candidates are the checkpoints ``guardray finetune`` writes (``{dir}/{group}/seed{n}`` with
``guardray_model.json``): TaskGuards, one group per policy, and MultiTaskGuards (one group
for several policies). The best ``per_group`` seeds of each group by validation F1 (from the
model card) are ranked by that F1, best first, and the ``top_k`` best form the pool.

Every candidate must come from the same base model (the card's ``base_model``: a GIP
checkpoint for GuardFormer, the base encoder for PolicyGuard), with the same architecture,
tensor names and input format; anything else is refused with the differing values named.
That base is the merge's ``base_model``: task vectors are taken from it (A.5; for a
MultiTaskGuard this is the point before fine-tuning, not before GIP, which is the same GIP
checkpoint). Tensors the base lacks (a classification head initialised at fine-tuning time)
take a zero base, so their task vector is the fine-tuned tensor itself.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import os
from pathlib import Path
from typing import Any

from guardray.errors import ConfigError, ModelError
from guardray.modeling.checkpoint import MODEL_CARD

log = logging.getLogger(__name__)

ARCH_KEYS = ("model_type", "architectures", "hidden_size", "num_hidden_layers",
             "num_attention_heads", "intermediate_size", "vocab_size", "num_labels")


class PoolError(ModelError):
    """The candidates cannot be merged together: the message names which and why."""


@dataclasses.dataclass
class Candidate:
    """One fine-tuned classifier.

    Attributes:
        name: ``{group}/seed{n}`` (or the folder name).
        path: its local folder.
        card: its `MODEL_CARD`.
        group: the finetune group (policy id or the multi-policy name).
        policy_ids: policies it was trained for.
        f1: validation F1 from the card (the ranking key).
    """

    name: str
    path: str
    card: dict[str, Any]
    group: str
    policy_ids: list[str]
    f1: float

    @property
    def is_multi(self) -> bool:
        return len(self.policy_ids) > 1

    @property
    def kind(self) -> str:
        return "MultiTaskGuard" if self.is_multi else "TaskGuard"


@dataclasses.dataclass
class Pool:
    """The ranked candidates and what they share.

    Attributes:
        candidates: best first (index = the candidate's number in the search space).
        base_ref: the shared ``base_model`` of the cards.
        base_path: its local folder.
        input_format: ``text`` or ``instruction``.
        config: the reference ``config.json``.
        policy_ids: every policy some candidate covers (sorted).
    """

    candidates: list[Candidate]
    base_ref: str
    base_path: str
    input_format: str
    config: dict[str, Any]

    @property
    def policy_ids(self) -> list[str]:
        return sorted({p for c in self.candidates for p in c.policy_ids})

    def names(self) -> list[str]:
        return [c.name for c in self.candidates]


def _card_f1(card: dict[str, Any]) -> float:
    val = card.get("validation") or {}
    for value in (val.get("f1"), card.get("best_val_f1")):
        if isinstance(value, (int, float)) and math.isfinite(value):
            return float(value)
    return 0.0


def find_checkpoints(root: str) -> list[str]:
    """Guardray classifier folders under a finetune output folder (or the folder itself).

    A folder on shared storage (``s3://``) is copied once into this node's cache
    (`guardray.modeling.remote.localize`, layout kept): the driver reads the weights and puts
    them into Ray's object store, so trials on any node get them from there.
    """
    if "://" in root:
        from guardray.modeling.remote import localize

        root = str(localize(root, field="pool.finetune_dirs"))
    path = Path(root)
    if (path / MODEL_CARD).is_file():
        return [str(path.resolve())]
    if not path.is_dir():
        raise ConfigError(f"pool.finetune_dirs: {root!r} does not exist (run guardray finetune "
                          "first, or point at its output_dir)")
    found = sorted(str(p.parent.resolve()) for p in path.glob(f"*/seed*/{MODEL_CARD}"))
    found += sorted(str(p.parent.resolve()) for p in path.glob(f"*/{MODEL_CARD}")
                    if not p.parent.name.startswith("seed"))
    return list(dict.fromkeys(found))


def _candidate(folder: str) -> Candidate:
    card = json.loads((Path(folder) / MODEL_CARD).read_text(encoding="utf-8"))
    p = Path(folder)
    group = card.get("group") or (p.parent.name if p.name.startswith("seed") else p.name)
    name = f"{group}/{p.name}" if p.name.startswith("seed") else p.name
    ids = list(card.get("policy_ids") or [])
    if not ids:
        raise PoolError(f"{folder}: the model card names no policy_ids; the merge search "
                        "needs to know which policies a candidate serves")
    return Candidate(name, folder, card, group, ids, _card_f1(card))


def select(candidates: list[Candidate], per_group: int, top_k: int | None) -> list[Candidate]:
    """Best ``per_group`` per group by F1, then the ``top_k`` best overall, best first.

    Ties are broken by name, so the order is deterministic.
    """
    groups: dict[str, list[Candidate]] = {}
    for c in candidates:
        groups.setdefault(c.group, []).append(c)
    kept = [c for g in groups.values()
            for c in sorted(g, key=lambda c: (-c.f1, c.name))[:per_group]]
    kept.sort(key=lambda c: (-c.f1, c.name))
    return kept[:top_k] if top_k else kept


def _config(folder: str) -> dict[str, Any]:
    file = Path(folder) / "config.json"
    if not file.is_file():
        raise PoolError(f"{folder}: no config.json (not a Hugging Face checkpoint)")
    return json.loads(file.read_text(encoding="utf-8"))


def check_compatible(candidates: list[Candidate]) -> tuple[str, str, dict[str, Any]]:
    """Refuse a pool that mixes bases, architectures or input formats.

    Returns:
        ``(base_model, input_format, reference config.json)``.

    Raises:
        PoolError: naming the two candidates and the value that differs.
    """
    ref = candidates[0]
    ref_cfg = _config(ref.path)
    for c in candidates[1:]:
        for key, mine, theirs in (("base_model", ref.card.get("base_model"),
                                   c.card.get("base_model")),
                                  ("input_format", ref.card.get("input_format", "text"),
                                   c.card.get("input_format", "text"))):
            if mine != theirs:
                raise PoolError(f"the pool mixes {key}s: {ref.name} has {mine!r} but {c.name} "
                                f"has {theirs!r}; merge only models fine-tuned from one base "
                                "with one input format (select them with pool.finetune_dirs "
                                "/ pool.models)")
        cfg = _config(c.path)
        for key in ARCH_KEYS:
            if key in ref_cfg and key in cfg and ref_cfg[key] != cfg[key]:
                raise PoolError(f"the pool mixes architectures: {ref.name} has {key}="
                                f"{ref_cfg[key]!r} but {c.name} has {key}={cfg[key]!r}")
    base = ref.card.get("base_model")
    if not base:
        raise PoolError(f"{ref.name}: the model card names no base_model; task vectors need "
                        "the model the candidates were fine-tuned from")
    return base, ref.card.get("input_format", "text"), ref_cfg


def build_pool(finetune_dirs: list[str], models: list[str] = (), per_group: int = 1,
               top_k: int | None = None) -> Pool:
    """Find, rank and check the candidates.

    Raises:
        ConfigError: a folder that does not exist, or no candidates at all.
        PoolError: candidates that do not share base, architecture or input format.
    """
    from guardray.modeling.base import resolve_base

    folders = [f for root in finetune_dirs for f in find_checkpoints(root)]
    for m in models:
        if not (Path(m) / MODEL_CARD).is_file():
            raise ConfigError(f"pool.models: {m!r} is not a guardray classifier folder "
                              f"(no {MODEL_CARD})")
        folders.append(str(Path(m).resolve()))
    folders = list(dict.fromkeys(folders))
    if not folders:
        raise ConfigError(f"no fine-tuned classifiers found under {list(finetune_dirs)} "
                          f"(expected {{dir}}/{{policy}}/seed{{n}}/{MODEL_CARD})")
    everything = [_candidate(f) for f in folders]
    check_compatible(everything)  # the whole pool, before selection hides a mismatch
    chosen = select(everything, per_group, top_k)
    base_ref, input_format, config = check_compatible(chosen)
    base_path = resolve_base(base_ref)
    if not os.path.isdir(base_path):
        raise PoolError(f"base model {base_ref!r} resolves to {base_path!r}, which is not a "
                        "local folder; the merge search needs the base weights locally")
    log.info("merge pool: %d of %d candidate(s) from base %s (%s input): %s", len(chosen),
             len(everything), base_ref, input_format,
             ", ".join(f"{c.name} (F1 {c.f1:.3f})" for c in chosen))
    return Pool(chosen, base_ref, base_path, input_format, config)
