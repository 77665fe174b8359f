"""Fit a prompt to a model's context: cut the user text, keep the template whole (pure).

A prompt is chat messages built from a template (instructions, a policy...) and one piece of
user text, the *cut span*, that appears verbatim in one message. When the templated prompt
is larger than the budget (tokens for a backend whose tokenizer guardray loads: the model's
context minus ``max_tokens``; characters for an endpoint whose tokenizer is unknown), the
span is replaced by its longest prefix that fits, followed by `MARKER`, so the model sees
that the text was cut. Nothing else of the prompt changes: the policy and the template
stay whole. A prompt whose template alone is over the budget, or that has no span to cut,
cannot be fitted: `Fitted.error` says why and the backend reports the row as an error
(it is never sent to the model, where it would fail a whole batch or exhaust memory).

How the cut is found: the candidate cut points are the ends of the span's tokens (or every
character for a character budget), and a binary search keeps the invariant "the prefix up to
``points[lo]`` fits, the one up to ``points[hi]`` does not", so the result fits the budget
and one more token (character) of the span would not. No tokenizer is imported here: the
backends pass ``count`` (the size of a conversation) and ``cut_points``.

Also here: `plan_batches`, which splits a batch into model calls under a token budget.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence

MARKER = " [... cut to fit the model's context]"

Messages = list[dict[str, str]]


@dataclasses.dataclass(frozen=True)
class Fitted:
    """A prompt after fitting.

    Attributes:
        messages: the messages to send (the input when nothing was cut or on error).
        size: their size (tokens or characters) after fitting.
        original: the size before.
        cut: the span was shortened (and `MARKER` appended).
        error: "" when the prompt fits; else why it cannot (the row is not sent).
    """

    messages: Messages
    size: int
    original: int
    cut: bool = False
    error: str = ""


def char_count(messages: Messages) -> int:
    """Characters of a conversation: the sum of its message contents (the unit of
    ``llm.max_prompt_chars``)."""
    return sum(len(m["content"]) for m in messages)


def char_cut_points(span: str) -> list[int]:
    """Every prefix length of ``span`` shorter than the span: ``[0, 1, ..., len - 1]``."""
    return list(range(len(span)))


def locate_span(messages: Messages, span: str) -> tuple[int, int] | None:
    """(message index, character offset) of the last occurrence of ``span``, or None.

    The last one: templates put the user text after the policy, so a policy that happens to
    quote the user text is not the part that gets cut.
    """
    if not span:
        return None
    for i in range(len(messages) - 1, -1, -1):
        at = messages[i]["content"].rfind(span)
        if at >= 0:
            return i, at
    return None


def with_prefix(messages: Messages, where: tuple[int, int], span: str, keep: int) -> Messages:
    """``messages`` with the span at ``where`` replaced by ``span[:keep] + MARKER``."""
    i, at = where
    content = messages[i]["content"]
    new = content[:at] + span[:keep] + MARKER + content[at + len(span):]
    return [*messages[:i], {**messages[i], "content": new}, *messages[i + 1:]]


def fit_messages(messages: Messages, span: str | None, budget: int,
                 count: Callable[[Messages], int],
                 cut_points: Callable[[str], Sequence[int]], unit: str = "tokens") -> Fitted:
    """Fit ``messages`` to ``budget`` by cutting ``span`` (see the module docstring).

    Args:
        messages: the prompt.
        span: the user text inside one message that may be cut (None or "": nothing may be).
        budget: the largest size allowed (>= 1).
        count: size of a conversation (tokens of the templated prompt, or `char_count`).
        cut_points: ascending prefix lengths of the span to try, starting at 0 and shorter
            than the span (token ends, or `char_cut_points`).
        unit: what ``count`` counts, for the error text.

    Returns:
        The `Fitted` prompt.
    """
    size = count(messages)
    if size <= budget:
        return Fitted(messages, size, size)
    where = locate_span(messages, span or "")
    if where is None:
        return Fitted(messages, size, size, error=(
            f"the prompt has {size} {unit}, more than the {budget} it may have, and no user "
            "text in it may be cut"))
    return cut_to_fit(messages, where, span, cut_points(span), budget, count, size, unit)


def cut_to_fit(messages: Messages, where: tuple[int, int], span: str, points: Sequence[int],
               budget: int, count: Callable[[Messages], int], original: int,
               unit: str = "tokens") -> Fitted:
    """The longest cut of ``span`` at one of ``points`` whose prompt fits ``budget``.

    Args:
        messages, span: the prompt and its user text, found at ``where`` (`locate_span`).
        points: ascending candidate prefix lengths (0 is added when missing); the full span
            is taken not to fit.
        budget, count, unit: as in `fit_messages`.
        original: the prompt's size before fitting (reported).

    Returns:
        The cut prompt (``cut=True``), or an error when even the empty prefix is over.
    """
    points = sorted(set(points) | {0})
    empty = count(with_prefix(messages, where, span, 0))
    if empty > budget:
        return Fitted(messages, original, original, error=(
            f"the prompt has {original} {unit}; without its user text it still has {empty}, "
            f"more than the {budget} it may have: shorten the policy or the template, or give "
            "the model more context"))
    lo, hi, lo_size = 0, len(points), empty  # points[lo] fits; points[hi] (or the whole) not
    while hi - lo > 1:
        mid = (lo + hi) // 2
        n = count(with_prefix(messages, where, span, points[mid]))
        if n <= budget:
            lo, lo_size = mid, n
        else:
            hi = mid
    return Fitted(with_prefix(messages, where, span, points[lo]), lo_size, original, cut=True)


def plan_batches(sizes: Sequence[int], max_tokens: int, budget: int | None) -> list[list[int]]:
    """Split rows into model calls whose padded size stays under a token budget.

    Rows are sorted by prompt size (so rows of a call pad to similar widths) and taken in
    that order while ``rows * (longest prompt + max_tokens) <= budget``; a row over the
    budget by itself gets a call of its own.

    Args:
        sizes: prompt tokens per row.
        max_tokens: new tokens per row (each call pads every row to its longest prompt and
            then grows by up to this).
        budget: most padded tokens per call; None puts every row in one call.

    Returns:
        Row indices per call, shortest prompts first.
    """
    order = sorted(range(len(sizes)), key=lambda i: (sizes[i], i))
    if budget is None:
        return [order] if order else []
    calls: list[list[int]] = []
    current: list[int] = []
    for i in order:
        width = sizes[i] + max_tokens  # the longest so far: rows come shortest first
        if current and (len(current) + 1) * width > budget:
            calls.append(current)
            current = []
        current.append(i)
    if current:
        calls.append(current)
    return calls
