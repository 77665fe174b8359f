"""The guard being served: what its checkpoint says (`resolve_guard`), and scoring (`GuardScorer`).

`resolve_guard` runs in the driver (before Ray starts): it checks the model folder
(`guardray.modeling.check.check_model`), reads the model card, and fixes the input format,
the policy descriptions, the served policies, the threshold, and the model's name and
version. The result, `GuardInfo`, is plain data shipped to Ray Data actors and Serve replicas.

Inputs are built exactly as `guardray evaluate` scores a checkpoint
(`guardray.evaluate.ClassifierPredictor`): a TaskGuard with ``text`` input sees the prompt; a
policy-conditioned guard (MultiTaskGuard / UniGuard, ``instruction`` input) sees
``"{policy description}\\nQuery: {prompt}"`` (GuardFormer 3.3, no rationale at inference). The
descriptions come from the card first (UniGuard's card holds the instruction texts its
search chose), then from policy YAML files for policies the card does not describe.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import math
import os
from collections.abc import Mapping, Sequence
from typing import Any

from guardray.errors import ModelError

log = logging.getLogger(__name__)

SAFE, UNSAFE = "safe", "unsafe"


@dataclasses.dataclass(frozen=True)
class GuardInfo:
    """Everything a scorer needs about the guard (plain data).

    Attributes:
        path: absolute model folder (or hub id).
        name, version: reported in every answer.
        input_format: ``text`` or ``instruction``.
        policy_ids: the served / default policies (may be empty for a foreign text model).
        descriptions: policy id -> description (instruction inputs).
        threshold: P(unsafe) >= threshold means unsafe.
        threshold_source: ``checkpoint`` or ``config``.
        policy_thresholds: policy id -> its own threshold, for a checkpoint that stores one
            per policy (a UniGuard searched with ``objective.threshold_scope: policy``);
            empty when ``threshold`` applies to every policy (or a config threshold is set).
        max_length, device, torch_threads, unsafe_label, trust_remote_code, quantize,
            torchscript: inference settings.
    """

    path: str
    name: str
    version: str
    input_format: str
    policy_ids: tuple[str, ...]
    descriptions: Mapping[str, str]
    threshold: float
    threshold_source: str
    policy_thresholds: Mapping[str, float] = dataclasses.field(default_factory=dict)
    max_length: int = 512
    device: str = "auto"
    torch_threads: int = 1
    unsafe_label: str | None = None
    trust_remote_code: bool = False
    quantize: str = "none"
    torchscript: bool = False

    def known_policies(self) -> tuple[str, ...]:
        """The policies a request or row may name."""
        return self.policy_ids

    def to_spec(self):
        """The `guardray.evaluate.PredictorSpec` that loads this guard."""
        from guardray.evaluate import PredictorSpec

        return PredictorSpec(model=self.path, input_format=self.input_format,
                             descriptions=dict(self.descriptions), max_length=self.max_length,
                             device=self.device, torch_threads=self.torch_threads,
                             unsafe_label=self.unsafe_label,
                             trust_remote_code=self.trust_remote_code,
                             quantize=self.quantize, torchscript=self.torchscript)


def resolve_guard(model_cfg, *, num_cpus: float = 1.0) -> GuardInfo:
    """Check the model and fix how it is used (driver side; reads no weights but hashes them).

    Args:
        model_cfg: a `guardray.serve.config.GuardModelConfig`.
        num_cpus: CPUs per replica (default torch threads).

    Raises:
        ModelError: not a loadable model; no threshold; a policy it cannot serve.
        ConfigError: invalid policy YAML files.
    """
    from guardray.modeling.check import check_model
    from guardray.modeling.checkpoint import card_policy_thresholds, read_model_card

    ref = model_cfg.require_path()
    path = os.path.abspath(os.path.expanduser(ref)) if os.path.exists(
        os.path.expanduser(ref)) else ref
    check_model(path, trust_remote_code=model_cfg.trust_remote_code, field="model.path",
                trust_field="model.trust_remote_code")
    card = read_model_card(path) if os.path.isdir(path) else {}
    input_format = model_cfg.input_format or card.get("input_format") or "text"
    descriptions = {pid: str(info.get("description") or "")
                    for pid, info in (card.get("policies") or {}).items()
                    if isinstance(info, Mapping) and info.get("description")}
    if model_cfg.policies:
        for pid, text in _yaml_descriptions(model_cfg.policies).items():
            descriptions.setdefault(pid, text)
    served = _served_policies(model_cfg.policy_ids, card, descriptions, input_format)
    threshold, source = _threshold(model_cfg.threshold, card, path)
    per_policy = {p: float(c["threshold"]) for p, c in card_policy_thresholds(card).items()
                  } if source == "checkpoint" else {}
    return GuardInfo(
        path=path, name=model_cfg.name or str(card.get("group") or os.path.basename(
            path.rstrip("/")) or path),
        version=model_cfg.version or weights_version(path),
        input_format=input_format, policy_ids=tuple(served),
        descriptions={p: descriptions[p] for p in served if p in descriptions},
        threshold=threshold, threshold_source=source,
        policy_thresholds={p: per_policy[p] for p in served if p in per_policy},
        max_length=model_cfg.max_length,
        device=model_cfg.device,
        torch_threads=model_cfg.torch_threads or max(1, math.ceil(num_cpus)),
        unsafe_label=model_cfg.unsafe_label, trust_remote_code=model_cfg.trust_remote_code,
        quantize=model_cfg.quantize, torchscript=model_cfg.torchscript)


def _yaml_descriptions(paths: Sequence[str]) -> dict[str, str]:
    from guardray.policies import load_policies

    existing = [p for p in paths if os.path.exists(p)]  # the default folder may not exist
    return {p.id: p.description for p in load_policies(existing)} if existing else {}


def _served_policies(wanted: Sequence[str], card: Mapping[str, Any],
                     descriptions: Mapping[str, str], input_format: str) -> list[str]:
    """The policies the guard answers for: ``wanted`` (checked), else the card's own."""
    own = [str(p) for p in (card.get("policy_ids") or [])]
    if input_format == "instruction":
        if not wanted and not own:
            raise ModelError("model.policy_ids: an instruction-format guard needs policies to "
                             "serve; pass --policy ID (with its YAML under model.policies)")
        chosen = list(wanted) or own
        missing = [p for p in chosen if p not in descriptions]
        if missing:
            raise ModelError(f"policy {missing[0]!r}: no description for it (the checkpoint "
                             f"describes {sorted(descriptions) or 'none'}); add its YAML "
                             "with --policies")
        return list(dict.fromkeys(chosen))
    if wanted and own:
        unknown = [p for p in wanted if p not in own]
        if unknown:
            raise ModelError(f"policy {unknown[0]!r}: this text-format guard was trained for "
                             f"{own} only (its input has no policy text)")
    return list(dict.fromkeys(list(wanted) or own))


def _threshold(override: float | None, card: Mapping[str, Any], path: str) -> tuple[float, str]:
    if override is not None:
        return float(override), "config"
    stored = (card.get("threshold") or {}).get("threshold") \
        if isinstance(card.get("threshold"), Mapping) else card.get("threshold")
    if stored is None:
        raise ModelError(f"model.path: {path} stores no decision threshold (no "
                         "guardray_model.json threshold); set model.threshold=0.5 (or a value "
                         "chosen on validation data with guardray evaluate)")
    return float(stored), "checkpoint"


def weights_version(path: str) -> str:
    """A short content hash of a model folder's weights and config (12 hex chars).

    Args:
        path: model folder; a hub id hashes to its name.
    """
    digest = hashlib.blake2b(digest_size=6)
    if not os.path.isdir(path):
        digest.update(path.encode())
        return digest.hexdigest()
    names = sorted(n for n in os.listdir(path)
                   if n.endswith(".safetensors") or n in ("config.json", "guardray_model.json"))
    for name in names:
        digest.update(name.encode() + b"\0")
        with open(os.path.join(path, name), "rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                digest.update(chunk)
    return digest.hexdigest()


def label_of(probability: float, threshold: float) -> str:
    """``unsafe`` when ``probability >= threshold`` (the rule `guardray evaluate` uses)."""
    return UNSAFE if probability >= threshold else SAFE


def _predictor_base():
    from guardray.evaluate import ClassifierPredictor

    return ClassifierPredictor


class GuardScorer:
    """Loads the guard once (through `guardray.evaluate.ClassifierPredictor`) and scores pairs.

    Used by Ray Data actors (`guardray.serve.batch`) and Serve replicas alike.
    """

    def __init__(self, info: GuardInfo):
        self.info = info
        self.predictor = _predictor_base()(info.to_spec())
        self.max_length = self.predictor.max_length

    def score(self, texts: Sequence[str], policy_ids: Sequence[str]):
        """P(unsafe) of each (text, policy) pair, one forward pass.

        Args:
            texts: (n,) prompts.
            policy_ids: (n,) policy of each prompt (ignored by text-format guards).

        Returns:
            ``(probs, truncated)``: (n,) float64 P(unsafe) and (n,) bool, True where the
            model input was longer than ``max_length`` tokens and was cut.
        """
        import numpy as np
        import torch

        p = self.predictor
        if not texts:
            return np.zeros(0, dtype=np.float64), np.zeros(0, dtype=bool)
        inputs = p.inputs([str(t) for t in texts], list(policy_ids))
        full = p.tokenizer(inputs, truncation=False, verbose=False)["input_ids"]
        truncated = np.asarray([len(ids) > self.max_length for ids in full], dtype=bool)
        enc = p.tokenizer(inputs, padding=True, truncation=True, max_length=self.max_length,
                          return_tensors="pt")
        enc = {k: v.to(p.device) for k, v in enc.items()}
        with torch.inference_mode():
            logits = p.model(**enc).logits.float()
        probs = torch.softmax(logits, dim=-1)[:, p.index].cpu().numpy().astype(np.float64)
        return probs, truncated
