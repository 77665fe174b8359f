"""Records -> sample rows: cleaning, caps, the label rules, cross-source duplicates (pure).

No files, no Ray: pandas frames in, pandas frames and counters out, so each step is tested on
a handful of records.

Order of a source's steps:

1. `clean_records`: texts that are missing or not strings, empty after stripping, shorter
   than ``min_chars`` or longer than ``max_chars`` are dropped; ``replace`` is applied; the
   same text twice in one source is kept once (categories merged).
2. `cap_records`: at most ``cap`` texts, a seeded sample (`sample_order`: the order of a
   keyed hash, so the sample does not depend on file order and grows monotonically with
   the cap).
3. `map_records`: for each policy, the first rule matching a record decides it (a label, or
   ``exclude``); rule caps sample per (rule, policy); held-out flags are set.

Then, over all sources, `resolve_duplicates` keeps one row per (policy, text): rows that agree
are kept once (a held-out row first, then the source listed first); rows that disagree on
the label are dropped (``label_conflict``), as no source can be trusted over the other.
"""

from __future__ import annotations

import hashlib
import re
from collections import Counter
from collections.abc import Sequence
from fnmatch import fnmatchcase
from typing import Any

import numpy as np

from guardray import schema as S
from guardray.data import DatasetError, is_missing, normalize_labels
from guardray.ingest import readers as R
from guardray.ingest.config import ALL_POLICIES, MappingRule, SourceConfig

GENERATOR_PREFIX = "ingest:"
HELD_OUT_SUFFIX = ":held_out"
# extra columns of mapped rows (dropped before writing shards)
HELD_OUT, SOURCE_NAME, RULE, ORDER = "_held_out", "_source_name", "_rule", "_order"

DROP_MISSING = "missing_text"
DROP_NOT_TEXT = "not_text"
DROP_EMPTY = "empty_text"
DROP_SHORT = "too_short"
DROP_LONG = "too_long"
DROP_IN_SOURCE = "duplicate_in_source"
DROP_SOURCE_CAP = "over_source_cap"
DROP_RULE_CAP = "over_rule_cap"
DROP_NO_POLICY = "missing_policy"
DROP_ACROSS = "duplicate_across_sources"
DROP_CONFLICT = "label_conflict"


def generator_name(source: str, held_out: bool) -> str:
    """The ``generator`` value of an imported row: ``ingest:<source>[:held_out]``."""
    return f"{GENERATOR_PREFIX}{source}{HELD_OUT_SUFFIX if held_out else ''}"


def is_held_out(generator: str) -> bool:
    """True for a row of a held-out source or category (its ``generator`` says so)."""
    return generator.startswith(GENERATOR_PREFIX) and generator.endswith(HELD_OUT_SUFFIX)


def ingest_source_name(generator: str) -> str | None:
    """The ingest source a row came from, from its ``generator``; None for other rows."""
    if not generator.startswith(GENERATOR_PREFIX):
        return None
    return generator[len(GENERATOR_PREFIX):].removesuffix(HELD_OUT_SUFFIX)


def sample_order(texts: Sequence[str], seed: int, salt: str) -> np.ndarray:
    """Positions of ``texts`` in the order of a seeded keyed hash (take a prefix to sample).

    Returns:
        (n,) int64 permutation.
    """
    key = f"{seed}\x1f{salt}".encode()[:64]
    hashes = [hashlib.blake2b(t.encode("utf-8"), digest_size=8, key=key).digest()
              for t in texts]
    return np.asarray(sorted(range(len(texts)), key=hashes.__getitem__), dtype=np.int64)


# --------------------------------------------------------------------------- per source


def clean_records(records, *, replace: dict[str, str], min_chars: int, max_chars: int,
                  by_policy: bool = False):
    """Drop unusable texts and in-source duplicates (see the module docstring).

    Args:
        records: a records frame (`guardray.ingest.readers`).
        replace: literal substitutions applied to every text.
        min_chars, max_chars: length bounds after stripping.
        by_policy: a text is a duplicate only with the same per-record policy.

    Returns:
        ``(records, Counter of dropped reasons)``.
    """
    dropped: Counter = Counter()
    keep, texts, seen = [], [], {}
    cats = records[R.CATEGORIES].tolist()
    policies = records[R.POLICY].tolist()
    for i, value in enumerate(records[R.TEXT].tolist()):
        if value is None or (not isinstance(value, str) and is_missing(value)):
            dropped[DROP_MISSING] += 1
            continue
        if not isinstance(value, str):
            dropped[DROP_NOT_TEXT] += 1
            continue
        for old, new in replace.items():
            value = value.replace(old, new)
        value = value.strip()
        if not value:
            dropped[DROP_EMPTY] += 1
            continue
        if len(value) < min_chars:
            dropped[DROP_SHORT] += 1
            continue
        if len(value) > max_chars:
            dropped[DROP_LONG] += 1
            continue
        key = (value, str(policies[i]) if by_policy else None)
        if key in seen:
            dropped[DROP_IN_SOURCE] += 1
            first = cats[seen[key]]
            first.extend(c for c in cats[i] if c not in first)
            continue
        seen[key] = i
        keep.append(i)
        texts.append(value)
    out = records.iloc[keep].reset_index(drop=True)
    out[R.TEXT] = texts
    out[R.CATEGORIES] = [cats[i] for i in keep]
    return out, dropped


def cap_records(records, cap: int | None, *, seed: int, salt: str):
    """At most ``cap`` records, a seeded sample keeping the file order.

    Returns:
        ``(records, number dropped)``.
    """
    if cap is None or len(records) <= cap:
        return records, 0
    chosen = np.sort(sample_order(records[R.TEXT].tolist(), seed, salt)[:cap])
    return records.iloc[chosen].reset_index(drop=True), len(records) - cap


def record_categories(records) -> list[list[str]]:
    """Each record's categories plus ``file:<file>``."""
    return [[*c, f"file:{f}"] for c, f in zip(records[R.CATEGORIES], records[R.FILE])]


def _any_glob(cats: list[list[str]], globs: Sequence[str]) -> np.ndarray:
    return np.fromiter((any(fnmatchcase(c, g) for c in cs for g in globs) for cs in cats),
                       bool, len(cats))


def _regex(texts: list[str], pattern: str) -> np.ndarray:
    rx = re.compile(pattern, re.IGNORECASE)
    return np.fromiter((rx.search(t) is not None for t in texts), bool, len(texts))


def rule_mask(rule: MappingRule, texts: list[str], cats: list[list[str]]) -> np.ndarray:
    """(n,) bool: the records ``rule``'s filters accept."""
    mask = np.ones(len(texts), bool)
    if rule.categories is not None:
        mask &= _any_glob(cats, rule.categories)
    if rule.exclude_categories:
        mask &= ~_any_glob(cats, rule.exclude_categories)
    if rule.match is not None:
        mask &= _regex(texts, rule.match)
    if rule.exclude_match is not None:
        mask &= ~_regex(texts, rule.exclude_match)
    return mask


def check_record_policies(records, src: SourceConfig, policy_ids: Sequence[str], *,
                          skip_unknown: bool = False) -> np.ndarray:
    """Per-record policy ids of a source with a ``policy_column`` (None for missing ones, and
    for ids that are not loaded policies when ``skip_unknown``).

    Raises:
        DatasetError: ids that are not loaded policies, naming the source and the known ids.
    """
    values = [None if v is None or (not isinstance(v, str) and is_missing(v)) else str(v).strip()
              for v in records[R.POLICY].tolist()]
    if skip_unknown:
        values = [v if v in policy_ids else None for v in values]
    bad = sorted({v for v in values if v is not None and v not in policy_ids})
    if bad:
        raise DatasetError(f"source {src.name!r}: column {src.policy_column!r} has unknown "
                           f"policy id(s) {bad[:10]}; known policies: {sorted(policy_ids)}")
    return np.asarray(values, dtype=object)


def map_records(records, src: SourceConfig, policy_ids: Sequence[str], *, seed: int,
                order: int = 0, skip_unknown: bool = False):
    """Apply ``src``'s rules: the sample rows of every policy the source tests.

    Args:
        records: cleaned records of the source.
        src: the source (rules, label column, held-out settings).
        policy_ids: the loaded policies (``"*"`` expands to these).
        seed: seeds rule caps.
        order: the source's position in the config (tie-break of `resolve_duplicates`).
        skip_unknown: leave out rules' and records' policies that are not loaded (else an
            unknown per-record policy id is an error; `check_config` checks the rules).

    Returns:
        ``(rows, stats)``: rows with ``policy_id``, ``text``, ``label`` (int8), ``source``,
        ``generator`` and the private columns `HELD_OUT`, `SOURCE_NAME`, `RULE`, `ORDER`;
        stats ``{"rules": [{policy: {"matched", "rows", "capped"}}], "dropped": Counter,
        "unmapped": n}``.

    Raises:
        DatasetError: label values outside the mapping, or unknown per-record policy ids.
    """
    import pandas as pd

    texts = records[R.TEXT].tolist()
    cats = record_categories(records)
    n = len(texts)
    own = (check_record_policies(records, src, policy_ids, skip_unknown=skip_unknown)
           if src.policy_column else None)
    held = np.full(n, src.held_out) | (_any_glob(cats, src.held_out_categories)
                                        if src.held_out_categories else False)
    decided = {p: np.zeros(n, bool) for p in policy_ids}
    mapped_any = np.zeros(n, bool)
    parts, rule_stats = [], []
    dropped: Counter = Counter()
    for i, rule in enumerate(src.rules):
        mask = rule_mask(rule, texts, cats)
        stats: dict[str, dict[str, int]] = {}
        for p in (policy_ids if rule.policies == [ALL_POLICIES] else rule.policies):
            if p not in decided:  # a policy this run does not load (skip_unknown)
                continue
            new = mask & ~decided[p]
            if own is not None:
                new &= own == p
            decided[p] |= new
            idx = np.flatnonzero(new)
            entry = stats[p] = {"matched": len(idx), "rows": 0, "capped": 0}
            if rule.label == "exclude" or not len(idx):
                continue
            if rule.cap is not None and len(idx) > rule.cap:
                pick = sample_order([texts[j] for j in idx], seed, f"{src.name}/{i}/{p}")
                entry["capped"] = len(idx) - rule.cap
                dropped[DROP_RULE_CAP] += len(idx) - rule.cap
                idx = np.sort(idx[pick[: rule.cap]])
            labels = _labels(records, idx, rule, src)
            entry["rows"] = len(idx)
            mapped_any[idx] = True
            parts.append(pd.DataFrame({
                S.POLICY_ID: p, S.TEXT: [texts[j] for j in idx], S.LABEL: labels,
                S.SOURCE: records[R.SOURCE].to_numpy()[idx],
                S.GENERATOR: [generator_name(src.name, bool(held[j])) for j in idx],
                HELD_OUT: held[idx], SOURCE_NAME: src.name, RULE: i, ORDER: order,
            }))
        rule_stats.append(stats)
    if own is not None:
        dropped[DROP_NO_POLICY] += int(sum(v is None for v in own))
    rows = pd.concat(parts, ignore_index=True) if parts else empty_rows()
    return rows, {"rules": rule_stats, "dropped": dropped, "unmapped": int((~mapped_any).sum())}


def _labels(records, idx: np.ndarray, rule: MappingRule, src: SourceConfig) -> np.ndarray:
    if rule.label in ("safe", "unsafe"):
        return np.full(len(idx), S.UNSAFE if rule.label == "unsafe" else S.SAFE, np.int8)
    column = src.label_column or "label"
    values = records[R.LABEL].to_numpy()[idx].tolist()
    return normalize_labels(values, where=f"source {src.name!r}: column {column!r}",
                            label_map=src.label_map or None)


def empty_rows():
    """A 0-row frame with the columns `map_records` returns."""
    import pandas as pd

    return pd.DataFrame({S.POLICY_ID: [], S.TEXT: [], S.LABEL: np.zeros(0, np.int8),
                         S.SOURCE: [], S.GENERATOR: [], HELD_OUT: np.zeros(0, bool),
                         SOURCE_NAME: [], RULE: np.zeros(0, int), ORDER: np.zeros(0, int)})


# --------------------------------------------------------------------------- all sources


def resolve_duplicates(rows, *, drop_conflicts: bool = True):
    """One row per (policy, text) over all sources (see the module docstring).

    Returns:
        ``(rows, Counter of dropped reasons, conflicts)``; ``conflicts`` lists up to 20
        ``{"policy_id", "text", "sources": {source name: label}}`` for the manifest.
    """
    dropped: Counter = Counter()
    conflicts: list[dict[str, Any]] = []
    if rows.empty:
        return rows, dropped, conflicts
    # held-out rows first, then config order: the first of each (policy, text) is kept
    ranked = rows.assign(_rank=(~rows[HELD_OUT].astype(bool)).astype(int))
    ranked = ranked.sort_values(["_rank", ORDER], kind="stable")
    repeated = ranked.duplicated([S.POLICY_ID, S.TEXT], keep=False)
    keep_idx = ranked.index[~repeated].tolist()  # the common case, without a Python loop
    for (policy, text), group in ranked[repeated].groupby([S.POLICY_ID, S.TEXT], sort=False):
        if group[S.LABEL].nunique() > 1:
            if len(conflicts) < 20:
                conflicts.append({S.POLICY_ID: policy, S.TEXT: text[:200], "sources": {
                    s: int(lab) for s, lab in zip(group[SOURCE_NAME], group[S.LABEL])}})
            if drop_conflicts:
                dropped[DROP_CONFLICT] += len(group)
                continue
        keep_idx.append(group.index[0])
        dropped[DROP_ACROSS] += len(group) - 1
    out = rows.loc[sorted(keep_idx)].reset_index(drop=True)
    return out, dropped, conflicts


def to_sample_frame(rows):
    """Mapped rows -> the sample columns (id, rationale, label_initial; split ``train`` until
    `guardray.ingest.groups` assigns it)."""
    out = rows.copy()
    out[S.ID] = [S.sample_id(p, t) for p, t in zip(out[S.POLICY_ID], out[S.TEXT])]
    out[S.RATIONALE] = ""
    out[S.LABEL] = out[S.LABEL].astype(np.int8)
    out[S.LABEL_INITIAL] = out[S.LABEL]
    out[S.SPLIT] = "train"
    return out


def missing_policies(src: SourceConfig, policy_ids: Sequence[str]) -> list[tuple[int, str]]:
    """``(rule index, id)`` of rule policies that are not loaded policies."""
    return [(i, p) for i, rule in enumerate(src.rules) for p in rule.policies
            if p != ALL_POLICIES and p not in policy_ids]
