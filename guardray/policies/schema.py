"""The policy schema (GuardFormer 3.1: name, description, allowed, disallowed, examples).

A policy P has a name P_name, description P_desc, allowed behaviours P_allowed, disallowed
behaviours P_disallowed and optional examples of safe and unsafe prompts. guardray adds a
stable ``id`` (used in sample rows and model names) and optional ``instructions`` (the
instruction texts a merged, instruction-tuned model may be searched over: UniGuard A.5.1).
"""

from __future__ import annotations

import re

from pydantic import Field, field_validator

from guardray.config.base import StrictModel

ID_PATTERN = r"^[a-z][a-z0-9_-]{0,62}$"


def _clean_items(items: list[str], field: str) -> list[str]:
    """Strip each item; reject empty and duplicate entries (they skew generation)."""
    cleaned = [item.strip() for item in items]
    for i, item in enumerate(cleaned):
        if not item:
            raise ValueError(f"item {i} of {field} is empty")
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
        return _clean_items(v, f"examples.{info.field_name}")


class Policy(StrictModel):
    """A guardrail policy: what a user prompt may and may not do.

    Attributes:
        id: lowercase slug (letters, digits, '-', '_'), unique among loaded policies.
        name: short human title, e.g. "Avoid Financial Advice".
        description: one paragraph; it prefixes every GIP instruction input.
        allowed: behaviours the prompt CAN show (rendered under "Can").
        disallowed: behaviours it SHOULD NOT show (rendered under "Should not").
        examples: optional safe / unsafe example prompts (few-shot seeds for generation).
        instructions: optional instruction variants for instruction-tuned encoders.
    """

    id: str
    name: str = Field(min_length=1, max_length=200)
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
    def _strip(cls, v: str) -> str:
        v = re.sub(r"\s+", " ", v).strip()
        if not v:
            raise ValueError("must not be blank")
        return v

    @field_validator("allowed", "disallowed", "instructions")
    @classmethod
    def _items(cls, v: list[str], info) -> list[str]:
        return _clean_items(v, info.field_name)
