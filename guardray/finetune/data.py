"""Data of the fine-tuning job: labelled rows -> per-model train/validation groups -> inputs.

Rows come from `guardray.data.tables.load_labeled` (shard folders or JSONL/CSV/Parquet files,
same column mapping and label normalisation as evaluation). Only the train and validation
splits are read; test rows are dropped before anything else sees them.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from guardray import schema as S
from guardray.errors import DataError
from guardray.policies import Policy, format_gip_input

log = logging.getLogger(__name__)


class FinetuneDataError(DataError):
    """The data cannot train the requested models; the message says which and why."""


@dataclasses.dataclass
class Split:
    """Rows of one split of one model: parallel lists.

    Attributes:
        texts: prompts.
        labels: 0 safe / 1 unsafe.
        policy_ids: the policy each row is judged under.
        rationales: rationales ("" when none).
    """

    texts: list[str]
    labels: list[int]
    policy_ids: list[str]
    rationales: list[str]

    def __len__(self) -> int:
        return len(self.texts)

    def counts(self) -> dict[str, int]:
        unsafe = int(sum(self.labels))
        return {"rows": len(self), "unsafe": unsafe, "safe": len(self) - unsafe}


@dataclasses.dataclass
class Group:
    """The data of one model: a single policy (per_policy) or all of them (multi_policy).

    Attributes:
        name: output folder name (the policy id, or the multi-policy name).
        policy_ids: policies covered.
        train: training rows.
        validation: validation rows.
    """

    name: str
    policy_ids: list[str]
    train: Split
    validation: Split


def _split_of(frame, mask) -> Split:
    sub = frame[mask]
    rationales = sub[S.RATIONALE].tolist() if S.RATIONALE in sub.columns else [""] * len(sub)
    return Split(sub[S.TEXT].tolist(), [int(v) for v in sub[S.LABEL].tolist()],
                 sub[S.POLICY_ID].tolist(), rationales)


def _hash_fraction(ids: Sequence[str]) -> np.ndarray:
    """A stable number in [0, 1) per row id (content hash), for splits without a split column."""
    import hashlib

    return np.asarray([int(hashlib.blake2b(i.encode(), digest_size=8).hexdigest(), 16) / 2**64
                       for i in ids])


def load_frames(cfg) -> tuple[Any, Any]:
    """Read the training and validation rows of a `FinetuneConfig`.

    Returns:
        ``(train_frame, validation_frame)`` in sample columns.

    Raises:
        FinetuneDataError / DatasetError: unreadable data, bad labels, missing splits.
    """
    from guardray.data import DataSpec, load_labeled

    d = cfg.data
    only = cfg.policy_ids[0] if cfg.policy_ids and len(cfg.policy_ids) == 1 else None

    def spec(path: str) -> DataSpec:
        return DataSpec(path=path, text_column=d.text_column, label_column=d.label_column,
                        policy_column=d.policy_column, split_column=d.split_column,
                        rationale_column=d.rationale_column, label_map=d.label_map or None)

    so = cfg.storage_options or None
    frame = load_labeled(spec(d.path), policy_id=only, storage_options=so).frame
    _check_policy_column(frame, cfg)
    has_split = S.SPLIT in frame.columns
    if d.validation_path:
        val = load_labeled(spec(d.validation_path), policy_id=only, storage_options=so).frame
        if S.SPLIT in val.columns:
            val = val[val[S.SPLIT] == d.validation_split]
        train = frame[frame[S.SPLIT] == d.train_split] if has_split else frame
    elif has_split:
        splits = set(frame[S.SPLIT])
        if d.train_split not in splits or d.validation_split not in splits:
            raise FinetuneDataError(
                f"{d.path}: the split column holds {sorted(splits)}; fine-tuning needs "
                f"{d.train_split!r} and {d.validation_split!r} rows (or set data.validation_path)")
        train = frame[frame[S.SPLIT] == d.train_split]
        val = frame[frame[S.SPLIT] == d.validation_split]
        ignored = len(frame) - len(train) - len(val)
        if ignored:
            log.info("fine-tuning ignores %d row(s) of other splits (test rows are never read)",
                     ignored)
    else:
        is_val = _hash_fraction(frame[S.ID].tolist()) < d.validation_fraction
        train, val = frame[~is_val], frame[is_val]
    if d.rephrase.enabled:
        train = add_rephrased(train.reset_index(drop=True), d.rephrase)
    if d.mix:
        from guardray.data.mix import apply_mix

        train, report = apply_mix(train.reset_index(drop=True), d.mix, seed=d.mix_seed)
        for r in report:
            log.info("training mix %s, %s: %d rows, %d after the cap, %d in training",
                     r["rule"], r["policy"], r["in"], r["kept"], r["out"])
    return train.reset_index(drop=True), val.reset_index(drop=True)


def add_rephrased(train, section) -> Any:
    """``train`` with one rephrased copy of each row a rule applies to (`RephraseSection`).

    A copy keeps its original's label, policy, source and split; its id is the original's with
    ``~rephrased`` appended and its generator ``rephrase`` (provenance: the rewrite is ours).
    """
    import pandas as pd

    from guardray.data.rephrase import rephrase_rows

    rows = train
    if section.policies is not None:
        rows = train[train[S.POLICY_ID].isin(section.policies)]
    pairs = rephrase_rows(rows[S.TEXT].tolist(), rows[S.ID].astype(str).tolist(),
                          seed=section.seed)
    if not pairs:
        log.warning("data.rephrase: no training row has a form the rules rephrase")
        return train
    idx, texts = zip(*pairs)
    copies = rows.iloc[list(idx)].copy()
    copies[S.TEXT] = list(texts)
    copies[S.ID] = copies[S.ID].astype(str) + "~rephrased"
    copies[S.GENERATOR] = "rephrase"
    for policy, part in copies.groupby(S.POLICY_ID):
        log.info("data.rephrase %s: %d rephrased training rows (%d unsafe) added to %d", policy,
                 len(part), int(part[S.LABEL].sum()), int((train[S.POLICY_ID] == policy).sum()))
    return pd.concat([train, copies], ignore_index=True)


def _check_policy_column(frame, cfg) -> None:
    if (frame[S.POLICY_ID] == "").all():
        raise FinetuneDataError(
            f"{cfg.data.path}: the data has no {cfg.data.policy_column!r} column: set "
            "policy_ids to the one policy these rows belong to (e.g. policy_ids=[tax])")


def build_groups(cfg, train, val, policies: Mapping[str, Policy]) -> list[Group]:
    """Group rows into the models to train.

    Args:
        cfg: the `FinetuneConfig`.
        train, val: frames from `load_frames`.
        policies: loaded policies by id.

    Raises:
        FinetuneDataError: unknown policy ids, a policy without training or validation rows,
            training rows of one class only, or instruction inputs for a policy not loaded.
    """
    present = sorted(set(train[S.POLICY_ID]) | set(val[S.POLICY_ID]))
    wanted = list(cfg.policy_ids) if cfg.policy_ids else [p for p in present if p in policies] \
        or present
    missing_data = [p for p in wanted if p not in present]
    if missing_data:
        raise FinetuneDataError(f"no rows for policy id(s) {missing_data}; the data has "
                                f"{present}")
    if cfg.resolved_input_format == "instruction":
        unknown = [p for p in wanted if p not in policies]
        if unknown:
            raise FinetuneDataError(
                f"instruction inputs need each policy's description, but {unknown} are not "
                f"among the loaded policies ({sorted(policies)}); add their YAML to 'policies'")
    names = [[p] for p in wanted] if cfg.scope == "per_policy" else [wanted]
    groups = []
    for ids in names:
        name = ids[0] if cfg.scope == "per_policy" else cfg.multi_name
        g = Group(name, ids, _split_of(train, train[S.POLICY_ID].isin(ids)),
                  _split_of(val, val[S.POLICY_ID].isin(ids)))
        _check_group(g)
        groups.append(g)
    return groups


def _check_group(g: Group) -> None:
    if len(g.validation) == 0:
        raise FinetuneDataError(f"model {g.name!r}: no validation rows (early stopping and the "
                                "threshold need them)")
    if len(set(g.train.labels)) < 2:
        raise FinetuneDataError(f"model {g.name!r}: training rows hold one class only "
                                f"({g.train.counts()}); need safe and unsafe examples")
    if len(set(g.validation.labels)) < 2:
        log.warning("model %r: validation rows hold one class only (%s): F1 is a weak signal",
                    g.name, g.validation.counts())


def build_inputs(split: Split, *, input_format: str, policies: Mapping[str, Policy],
                 sep_token: str, rationale_dropout: float = 1.0,
                 rng: np.random.Generator | None = None) -> list[str]:
    """The strings the encoder sees.

    Args:
        split: the rows.
        input_format: ``text`` (prompt only) or ``instruction`` (GuardFormer 3.3:
            ``{description}\\nQuery: {text} [SEP] {rationale}``).
        policies: loaded policies by id (instruction format).
        sep_token: the tokenizer's separator token.
        rationale_dropout: probability of leaving a rationale out (1.0: never include).
        rng: randomness for the dropout.

    Returns:
        One input string per row.
    """
    if input_format == "text":
        return list(split.texts)
    keep = np.zeros(len(split), dtype=bool)
    if rationale_dropout < 1.0:
        keep = (rng or np.random.default_rng(0)).random(len(split)) >= rationale_dropout
    return [
        format_gip_input(policies[p].description, t, r if k else None, sep_token=sep_token)
        for t, p, r, k in zip(split.texts, split.policy_ids, split.rationales, keep)
    ]
