"""The policy schema (GuardFormer 3.1: name, description, allowed, disallowed, examples).

A policy P has a name P_name, description P_desc, allowed behaviours P_allowed, disallowed
behaviours P_disallowed and optional examples of safe and unsafe prompts. guardray adds a
stable ``id`` (used in sample rows and model names) and optional ``instructions`` (the
instruction texts a merged, instruction-tuned model may be searched over: UniGuard A.5.1).
"""

from __future__ import annotations

import re
import unicodedata

from pydantic import Field, field_validator

from guardray.config.base import StrictModel

ID_PATTERN = r"^[a-z][a-z0-9_-]{0,62}$"

# Size limits. A policy is read by people and prefixes model inputs: the description starts
# every GIP input (``{description}\nQuery: {text}``, 256-512 tokens in all), and the rendered
# policy goes into every generation and judge prompt. The shipped policies use about 350
# characters of description and 130 per item; a 5 MB description used to be accepted.
MAX_NAME = 200
MAX_DESCRIPTION = 2000
MAX_ITEM = 500  # one allowed / disallowed behaviour or instruction
MAX_ITEMS = 64
MAX_EXAMPLE = 2000  # one example prompt
MAX_EXAMPLES = 100

# Unicode categories that show nothing on their own: controls, format characters (zero-width
# spaces and joiners, bidi marks and overrides, BOM), separators, lone combining marks,
# unassigned / private / surrogate code points; plus letters and symbols that render blank.
_INVISIBLE_CATEGORIES = frozenset({"Cc", "Cf", "Cn", "Co", "Cs", "Zs", "Zl", "Zp", "Mn", "Me"})
_BLANK_GLYPHS = frozenset("\u115f\u1160\u3164\uffa0\u2800")


def is_blank(text: str) -> bool:
    """True when ``text`` has no visible character: empty, whitespace, or only invisible
    characters (``\\u200b``, bidi controls such as ``\\u202e``, ``\\ufeff``...), which
    ``str.strip`` keeps and which would make a policy that looks nameless or empty."""
    return not any(unicodedata.category(ch) not in _INVISIBLE_CATEGORIES
                   and ch not in _BLANK_GLYPHS for ch in text)


def _check_text(value: str, limit: int, *, collapse: bool = True) -> str:
    """Strip (and with ``collapse``, squeeze whitespace runs to one space); refuse blank text,
    control characters other than whitespace, and text over ``limit`` characters."""
    value = re.sub(r"\s+", " ", value).strip() if collapse else value.strip()
    if is_blank(value):
        raise ValueError("must not be blank (it has no visible character)")
    controls = sorted({f"U+{ord(ch):04X}" for ch in value
                       if unicodedata.category(ch) == "Cc" and not ch.isspace()})
    if controls:  # e.g. terminal escape sequences, which `policies show` would print
        raise ValueError(f"holds control character(s) {', '.join(controls)}")
    if len(value) > limit:
        raise ValueError(f"is {len(value)} characters long; at most {limit} are allowed")
    return value


def _clean_items(items: list[str], field: str, *, limit: int = MAX_ITEM,
                 max_items: int = MAX_ITEMS) -> list[str]:
    """Strip each item; reject empty, over-long and duplicate entries (they skew generation)
    and lists over ``max_items``."""
    if len(items) > max_items:
        raise ValueError(f"{field} has {len(items)} items; at most {max_items} are allowed")
    cleaned = []
    for i, item in enumerate(items):
        if is_blank(item):
            raise ValueError(f"item {i} of {field} is empty")
        try:
            cleaned.append(_check_text(item, limit, collapse=False))
        except ValueError as exc:
            raise ValueError(f"item {i} of {field} {exc}") from None
    seen: set[str] = set()
    for item in cleaned:
        if item.lower() in seen:
            raise ValueError(f"duplicate entry in {field}: {item!r}")
        seen.add(item.lower())
    return cleaned


class PolicyExamples(StrictModel):
    """Example prompts that comply (safe) and do not comply (unsafe) with the policy."""

    safe: list[str] = Field(default_factory=list)
    unsafe: list[str] = Field(default_factory=list)

    @field_validator("safe", "unsafe")
    @classmethod
    def _no_empty(cls, v: list[str], info) -> list[str]:
        return _clean_items(v, f"examples.{info.field_name}", limit=MAX_EXAMPLE,
                            max_items=MAX_EXAMPLES)


class Policy(StrictModel):
    """A guardrail policy: what a user prompt may and may not do.

    Attributes:
        id: lowercase slug (letters, digits, '-', '_'), unique among loaded policies.
        name: short human title, e.g. "Avoid Financial Advice" (`MAX_NAME` characters).
        description: one paragraph; it prefixes every GIP instruction input
            (`MAX_DESCRIPTION` characters).
        allowed: behaviours the prompt CAN show (rendered under "Can").
        disallowed: behaviours it SHOULD NOT show (rendered under "Should not").
        examples: optional safe / unsafe example prompts (few-shot seeds for generation).
        instructions: optional instruction variants for instruction-tuned encoders.

    Text fields collapse whitespace and must show at least one visible character (`is_blank`)
    and no control character; lists hold at most `MAX_ITEMS` items of `MAX_ITEM` characters
    (examples: `MAX_EXAMPLES` of `MAX_EXAMPLE`).
    """

    id: str
    name: str = Field(min_length=1)
    description: str = Field(min_length=1)
    allowed: list[str] = Field(min_length=1)
    disallowed: list[str] = Field(min_length=1)
    examples: PolicyExamples = Field(default_factory=PolicyExamples)
    instructions: list[str] = Field(default_factory=list)

    @field_validator("id")
    @classmethod
    def _slug(cls, v: str) -> str:
        if not re.fullmatch(ID_PATTERN, v):
            raise ValueError(
                f"{v!r} is not a valid id: use 1-63 lowercase letters, digits, '-' or '_', "
                "starting with a letter (e.g. 'tax' or 'no-tax-advice')"
            )
        return v

    @field_validator("name", "description")
    @classmethod
    def _strip(cls, v: str, info) -> str:
        return _check_text(v, MAX_NAME if info.field_name == "name" else MAX_DESCRIPTION)

    @field_validator("allowed", "disallowed", "instructions")
    @classmethod
    def _items(cls, v: list[str], info) -> list[str]:
        return _clean_items(v, info.field_name)
