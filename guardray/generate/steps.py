"""Row-level steps of the SDG pipeline and the per-task finish: pure functions on dicts.

`guardray.generate.stage` runs them inside Ray Data (``Dataset.map``) between the LLM passes:

    request -generate-> parse -> [retry: generate -> parse] x retries -> make_reflection
            -generate-> apply_reflection -> (driver) finish_task -> shard, rejects, stats

Every request yields exactly one row through every step (rejected rows ride along with a
``reject_reason``), so the driver knows when a task is complete.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from guardray import schema as S
from guardray.generate import parse as P
from guardray.generate.expand import MESSAGES, REQUEST_ID, REQUESTED_LABEL, TASK
from guardray.generate.seed import assign_split
from guardray.llm.messages import normalize_messages, row_seed

# Columns added while a request moves through the pipeline.
RAW = "raw_output"
GEN_ERROR = "gen_error"
GEN_TOKENS = "gen_tokens"
REASON = "reject_reason"          # "" while the row is a good sample
DETAIL = "reject_detail"
ATTEMPTS = "attempts"
NOTES = "notes"                   # comma-separated ParsedSample notes
RETRY_MESSAGES = "retry_messages"
RETRY_SEED = "retry_seed"
RETRY_RAW = "retry_output"
RETRY_ERROR = "retry_error"
RETRY_TOKENS = "retry_tokens"
REFLECT_MESSAGES = "reflect_messages"
REFLECT_RAW = "reflect_output"
REFLECT_ERROR = "reflect_error"
REFLECT_TOKENS = "reflect_tokens"
REFLECTION = "reflection"         # confirmed / changed / unparsed / skipped / disabled

REFLECTION_STATES = ("confirmed", "changed", "unparsed", "skipped", "disabled")


def apply_parse(row: dict[str, Any], raw: str, error: str, parse_cfg,
                forbidden: frozenset[str]) -> dict[str, Any]:
    """Parse one generation answer into the row (sample columns or a reject reason)."""
    out = dict(row)
    out[RAW] = raw
    out[ATTEMPTS] = int(row.get(ATTEMPTS) or 0) + 1
    if error:
        result: P.ParsedSample | P.Reject = P.Reject(P.BACKEND_ERROR, error[:500])
    else:
        result = P.parse_generation(
            raw, int(row[REQUESTED_LABEL]), missing_label=parse_cfg.missing_label,
            min_chars=parse_cfg.min_prompt_chars, max_chars=parse_cfg.max_prompt_chars,
            forbidden=forbidden if parse_cfg.reject_copied_examples else frozenset(),
        )
    if isinstance(result, P.Reject):
        out.update({REASON: result.reason, DETAIL: result.detail, S.TEXT: "",
                    S.RATIONALE: "", S.LABEL_INITIAL: -1, NOTES: ""})
    else:
        out.update({REASON: "", DETAIL: "", S.TEXT: result.text, S.RATIONALE: result.rationale,
                    S.LABEL_INITIAL: result.label, NOTES: ",".join(result.notes)})
    return out


def make_retry(row: dict[str, Any], retries_left: int, seed: int) -> dict[str, Any]:
    """Ask for another attempt (same messages, new seed) if the row's answer was rejected."""
    out = dict(row)
    retry = retries_left > 0 and row[REASON] in P.RETRYABLE
    out[RETRY_MESSAGES] = normalize_messages(row[MESSAGES]) if retry else []
    out[RETRY_SEED] = row_seed(seed, "retry", row[REQUEST_ID], int(row[ATTEMPTS]))
    return out


def merge_retry(row: dict[str, Any], parse_cfg, forbidden: frozenset[str]) -> dict[str, Any]:
    """Parse the retry answer of a retried row; rows that were not retried pass unchanged."""
    retried = len(row[RETRY_MESSAGES]) > 0
    base = {k: v for k, v in row.items()
            if k not in (RETRY_MESSAGES, RETRY_SEED, RETRY_RAW, RETRY_ERROR, RETRY_TOKENS)}
    tokens = int(row.get(RETRY_TOKENS) or 0)
    base[GEN_TOKENS] = int(row.get(GEN_TOKENS) or 0) + tokens
    if not retried:
        return base
    return apply_parse(base, row[RETRY_RAW], row[RETRY_ERROR], parse_cfg, forbidden)


def make_reflection(row: dict[str, Any], policies: dict[str, Any], templates,
                    enabled: bool, examples: int = 1) -> dict[str, Any]:
    """Self-reflection messages for a good sample; ``[]`` (no request) for rejected rows."""
    from guardray.generate.expand import reflection_messages

    out = dict(row)
    if enabled and not row[REASON]:
        out[REFLECT_MESSAGES] = reflection_messages(
            policies[row[S.POLICY_ID]], row[S.TEXT], int(row[S.LABEL_INITIAL]),
            row[S.RATIONALE], templates, examples=examples)
    else:
        out[REFLECT_MESSAGES] = []
    return out


def apply_reflection(row: dict[str, Any], reflect_cfg) -> dict[str, Any]:
    """Final ``label`` (and rationale) from the self-reflection answer (GuardFormer 3.1)."""
    out = {k: v for k, v in row.items() if k not in (REFLECT_MESSAGES, REFLECT_RAW, REFLECT_ERROR)}
    out[REFLECT_TOKENS] = int(row.get(REFLECT_TOKENS) or 0)
    if row[REASON]:
        out.update({S.LABEL: -1, REFLECTION: "skipped"})
        return out
    initial = int(row[S.LABEL_INITIAL])
    if not reflect_cfg.enabled:
        out.update({S.LABEL: initial, REFLECTION: "disabled"})
        return out
    verdict = P.Verdict(None) if row.get(REFLECT_ERROR) else P.parse_reflection(row[REFLECT_RAW])
    if verdict.label is None:
        if reflect_cfg.on_unparsed == "reject":
            out.update({S.LABEL: -1, REFLECTION: "unparsed", REASON: P.REFLECTION_UNPARSED,
                        DETAIL: f"verdict: {str(row.get(REFLECT_RAW))[:200]!r}"})
        else:
            out.update({S.LABEL: initial, REFLECTION: "unparsed"})
        return out
    changed = verdict.label != initial
    out.update({S.LABEL: verdict.label, REFLECTION: "changed" if changed else "confirmed"})
    if changed and reflect_cfg.update_rationale and verdict.reason:
        out[S.RATIONALE] = verdict.reason
    return out


def finish_task(rows: list[dict[str, Any]], *, generator: str, splits, seed: int
                ) -> tuple[list[dict[str, Any]], list[dict[str, Any]], dict[str, Any]]:
    """Split a complete task's rows into sample rows, reject rows and statistics.

    Samples are ordered by request id; a later request whose prompt repeats an earlier one
    of the same policy (same sample id) is rejected as ``duplicate``.

    Returns:
        ``(samples, rejects, stats)``: samples have exactly the `guardray.schema` columns;
        rejects have the `guardray.generate.rejects` columns.
    """
    rows = sorted(rows, key=lambda r: r[REQUEST_ID])
    samples, rejects, seen = [], [], set()
    stats: dict[str, Any] = {
        "requests": len(rows), "samples": 0, "rejected": Counter(), "notes": Counter(),
        "reflection": Counter(), "labels": Counter(), "attempts": Counter(),
        "recovered_by_retry": 0,
        "tokens": {"generate": 0, "reflect": 0},
    }
    for row in rows:
        stats["tokens"]["generate"] += int(row.get(GEN_TOKENS) or 0)
        stats["tokens"]["reflect"] += int(row.get(REFLECT_TOKENS) or 0)
        stats["attempts"][str(int(row[ATTEMPTS]))] += 1
        reason = row[REASON]
        if not reason:
            row_id = S.sample_id(row[S.POLICY_ID], row[S.TEXT])
            if row_id in seen:
                reason = P.DUPLICATE
                row = {**row, DETAIL: f"same text as an earlier row ({row_id})"}
            else:
                seen.add(row_id)
        if reason:
            stats["rejected"][reason] += 1
            rejects.append(reject_row(row, reason, generator))
            continue
        stats["samples"] += 1
        stats["labels"][S.LABEL_NAMES[int(row[S.LABEL])]] += 1
        stats["reflection"][row[REFLECTION]] += 1
        stats["recovered_by_retry"] += int(row[ATTEMPTS]) > 1
        for note in filter(None, str(row[NOTES]).split(",")):
            stats["notes"][note] += 1
        samples.append({
            S.ID: row_id, S.POLICY_ID: row[S.POLICY_ID], S.TEXT: row[S.TEXT],
            S.RATIONALE: row[S.RATIONALE], S.LABEL: int(row[S.LABEL]),
            S.LABEL_INITIAL: int(row[S.LABEL_INITIAL]), S.SOURCE: row[S.SOURCE],
            S.GENERATOR: generator,
            S.SPLIT: assign_split(row_id, splits.validation, splits.test, seed),
        })
    for key in ("rejected", "notes", "reflection", "labels", "attempts"):
        stats[key] = dict(sorted(stats[key].items()))
    return samples, rejects, stats


def reject_row(row: dict[str, Any], reason: str, generator: str) -> dict[str, Any]:
    """A rejects-shard row (`guardray.generate.rejects.REJECT_COLUMNS`) for a request row."""
    from guardray.generate import rejects as R

    return {
        R.REQUEST_ID: row[REQUEST_ID], R.TASK: int(row[TASK]), R.KIND: "sample",
        R.POLICY_ID: row[S.POLICY_ID], R.SOURCE: row[S.SOURCE],
        R.REQUESTED_LABEL: int(row[REQUESTED_LABEL]), R.REASON: reason,
        R.DETAIL: str(row.get(DETAIL) or ""), R.ATTEMPTS: int(row[ATTEMPTS]),
        R.RAW_OUTPUT: str(row.get(RAW) or ""), R.GENERATOR: generator,
    }
