"""Chat messages and per-row seeds: pure helpers shared by every backend (no Ray, no torch).

Chat messages are the OpenAI shape: a list of ``{"role": str, "content": str}`` with roles
``system``, ``user`` or ``assistant``. Inside Ray Data they arrive as lists, numpy arrays or
Arrow structs of such dicts; `normalize_messages` turns any of them into plain Python.

Prefill: a conversation whose last message is an ``assistant`` message asks the model to
*continue* that message (`continues_final_message`): the prompt ends with the message's text
and no end-of-turn, and the generated text is the continuation only, without the prefix.
`chat_template_flags` gives the matching ``apply_chat_template`` / vLLM request flags.
How each backend honours it: ``transformers`` (`guardray.llm.hf`) renders the template with
these flags; ``vllm`` gets them from ray.data.llm's chat-template stage, which continues the
final message of every conversation that does not end with a user message; ``openai_http``
sends them as the request fields vLLM's OpenAI server reads (`guardray.llm.ray_llm`).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import Any

from guardray.errors import DataError

ROLES: tuple[str, ...] = ("system", "user", "assistant")
SEED_MODULUS = 2**31 - 1  # fits every backend's seed field (vLLM, OpenAI, torch)


class MessagesError(DataError):
    """Chat messages have the wrong shape; the message names the index and the problem."""


def normalize_messages(value: Any) -> list[dict[str, str]]:
    """Validate chat messages and return them as a plain list of ``{"role", "content"}``.

    Args:
        value: a list/tuple/numpy array of mappings with ``role`` and ``content``. An empty
            sequence (or None) is allowed and means "no request" (see `generate_dataset`).

    Raises:
        MessagesError: not a sequence, an item without role/content, an unknown role, or
            non-string content.
    """
    if value is None:
        return []
    if isinstance(value, (str, bytes, Mapping)):
        raise MessagesError(f"messages must be a list of {{'role', 'content'}} dicts, "
                            f"got a {type(value).__name__}")
    if hasattr(value, "tolist") and not isinstance(value, list):
        value = value.tolist()
    out = []
    for i, message in enumerate(value):
        if not isinstance(message, Mapping) or "role" not in message or "content" not in message:
            raise MessagesError(f"message {i} must be a dict with 'role' and 'content', got "
                                f"{message!r:.80}")
        role, content = message["role"], message["content"]
        if role not in ROLES:
            raise MessagesError(f"message {i}: role {role!r} is not one of {list(ROLES)}")
        if not isinstance(content, str):
            raise MessagesError(f"message {i}: content must be a string, got "
                                f"{type(content).__name__}")
        out.append({"role": role, "content": content})
    return out


def continues_final_message(messages: list[dict[str, str]]) -> bool:
    """True when ``messages`` end with an assistant message: a prefill the model continues."""
    return bool(messages) and messages[-1]["role"] == "assistant"


def chat_template_flags(messages: list[dict[str, str]]) -> dict[str, bool]:
    """``add_generation_prompt`` / ``continue_final_message`` for ``messages`` (exactly one is
    True): the keyword arguments of ``apply_chat_template`` and the fields of vLLM's chat
    request. A final assistant message is continued; otherwise a new assistant turn starts."""
    prefill = continues_final_message(messages)
    return {"add_generation_prompt": not prefill, "continue_final_message": prefill}


def row_seed(base: int, *parts: Any) -> int:
    """A deterministic per-row seed in ``[0, 2**31 - 1)`` from a base seed and row content.

    Args:
        base: the configured base seed.
        parts: anything JSON-able identifying the row (its messages, an id, a round...).
    """
    digest = hashlib.blake2b(digest_size=8)
    digest.update(str(int(base)).encode())
    for part in parts:
        digest.update(b"\x1f")
        digest.update(json.dumps(part, sort_keys=True, ensure_ascii=False, default=str).encode())
    return int.from_bytes(digest.digest(), "big") % SEED_MODULUS


def row_request(row: dict[str, Any], cfg, messages_column: str,
                seed_column: str | None) -> tuple[list[dict[str, str]], int | None]:
    """The normalised messages and the seed of one row (shared by every backend).

    ``cfg`` is the `guardray.llm.config.LLMConfig`; without a seed column, a row's seed
    derives from ``cfg.sampling.seed`` and its messages (None: unseeded sampling).
    """
    messages = normalize_messages(row.get(messages_column))
    if seed_column is not None:
        seed = int(row[seed_column])
    elif cfg.sampling.seed is not None:
        seed = row_seed(cfg.sampling.seed, messages)
    else:
        seed = None
    return messages, seed
