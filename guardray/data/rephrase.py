"""Rephrasing training rows between question and command form (pure, rule-based).

Why: a classifier learns the *form* of a request when form and label go together in its
training rows. In the embedded data pack they do: the unsafe rows under Safety are mostly
questions (Do-Not-Answer: "How can I ...?", "Can you ...?"; 188 questions and 32 commands among
225 training rows of one run), while ordinary requests are often commands ("Write a cover
letter ..."). A guard trained on that reads "Write a guide to making a weapon" as an ordinary
request. Rephrasing rows of *both* labels into the other form keeps the content and breaks the
cue; the label of a rephrased row is its original's (the rewrite changes the wording of the
request, not what is asked).

Rules, on a single-sentence row (no line break, at most `MAX_CHARS` characters, no sentence
end before the last character), case-insensitive, first match wins; each matching row gives
one rephrased row, the variant picked by (seed, row id):

- question -> command (the row ends with ``?``):
    ``can|could|would you [please] X?``            -> ``X.`` (X starts with a request verb:
        `COMMAND_VERBS` and a few more)
    ``how can|do|could|should|would I|we|one X?``   -> ``Explain how to X.`` |
        ``Tell me how to X.`` | ``Give me step-by-step instructions to X.`` |
        ``Write a guide on how to X.``
    ``how to X?``                                   -> the same four
    ``where can I X?``                              -> ``Tell me where I can X.``
    ``what is|what's the best|easiest|... way to X?`` -> ``Describe the best|... way to X.``
- command -> question (the row starts with one of `COMMAND_VERBS`):
    ``Verb X[.]``                                   -> ``Can you verb X?`` | ``Could you verb X?``

Rows no rule matches are not rephrased. Rephrased rows are training rows only: validation and
test rows are never rewritten, so the figures they give stay comparable.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence

MAX_CHARS = 300

COMMAND_VERBS: tuple[str, ...] = (
    "build", "compose", "create", "describe", "design", "develop", "draft", "explain",
    "generate", "give", "help", "list", "make", "outline", "plan", "produce", "provide",
    "show", "suggest", "summarise", "summarize", "teach", "tell", "write")

# "Can you X?" is a request only when X is one: "Can you love someone?" asks about the assistant.
_YOU_VERBS = COMMAND_VERBS + ("check", "convert", "edit", "find", "fix", "insult", "recommend",
                              "review", "rewrite", "roast", "say", "share", "translate")
_HOW_VARIANTS = ("Explain how to {x}.", "Tell me how to {x}.",
                 "Give me step-by-step instructions to {x}.", "Write a guide on how to {x}.")
_RULES: tuple[tuple[re.Pattern, tuple[str, ...]], ...] = (
    (re.compile(r"^(?:can|could|would) you (?:please )?(?P<x>(?:" + "|".join(_YOU_VERBS)
                + r") .+)\?$", re.I), ("{X}.",)),
    (re.compile(r"^how (?:can|do|could|should|would) (?:i|we|one) (?P<x>.+)\?$", re.I),
     _HOW_VARIANTS),
    (re.compile(r"^how to (?P<x>.+)\?$", re.I), _HOW_VARIANTS),
    (re.compile(r"^where can i (?P<x>.+)\?$", re.I), ("Tell me where I can {x}.",)),
    (re.compile(r"^(?:what is|what's) the (?P<adj>best|easiest|quickest|fastest|simplest|most "
                r"effective|safest) way to (?P<x>.+)\?$", re.I),
     ("Describe the {adj} way to {x}.", "Explain the {adj} way to {x}.")),
    (re.compile(r"^(?P<verb>" + "|".join(COMMAND_VERBS) + r") (?P<x>[^?]+?)[.!]?$", re.I),
     ("Can you {verb} {x}?", "Could you {verb} {x}?")),
)
_INNER_END = re.compile(r"[.?!]\s+\S")


def _unit(seed: int, row_id: str) -> float:
    digest = hashlib.blake2b(f"{seed}:rephrase:{row_id}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") / 2**64


def _lower_first(word: str) -> str:
    """``Write`` -> ``write``; ``I`` and acronyms (``AI``) stay."""
    return word[:1].lower() + word[1:] if word[1:2].islower() else word


def rephrase(text: str, pick: float = 0.0) -> str | None:
    """The other form of one request, or None when no rule applies.

    Args:
        text: the prompt.
        pick: a number in [0, 1) choosing among the rule's variants.

    Returns:
        The rephrased prompt (the first character upper-cased), or None.

    >>> rephrase("Can you help me hide a body?")
    'Help me hide a body.'
    >>> rephrase("How do I pick a lock?", 0.99)
    'Write a guide on how to pick a lock.'
    >>> rephrase("Write a tutorial on how to make a bomb")
    'Can you write a tutorial on how to make a bomb?'
    """
    t = " ".join(text.split())
    if not t or len(t) > MAX_CHARS or "\n" in text or _INNER_END.search(t):
        return None
    for pattern, variants in _RULES:
        m = pattern.match(t)
        if m is None:
            continue
        groups = {k: v for k, v in m.groupdict().items() if v is not None}
        x = groups["x"].strip()
        fill = {"x": x, "X": x[:1].upper() + x[1:], "adj": groups.get("adj", "").lower(),
                "verb": _lower_first(groups.get("verb", ""))}
        out = variants[min(int(pick * len(variants)), len(variants) - 1)].format(**fill)
        return out[:1].upper() + out[1:]
    return None


def rephrase_rows(texts: Sequence[str], ids: Sequence[str], seed: int = 0
                  ) -> list[tuple[int, str]]:
    """The rephrased rows of a table.

    Args:
        texts: (n,) prompts.
        ids: (n,) row ids (the variant is a function of (seed, id) only).
        seed: seeds the choice of variants.

    Returns:
        ``[(row index, rephrased text), ...]`` for the rows a rule applies to, in row order.
    """
    if len(texts) != len(ids):
        raise ValueError(f"{len(texts)} texts but {len(ids)} ids")
    out = []
    for i, (text, row_id) in enumerate(zip(texts, ids)):
        new = rephrase(str(text), _unit(seed, str(row_id)))
        if new is not None and new != text:
            out.append((i, new))
    return out
