"""`PromptFitter`: each backend's budget for a prompt, and the fitting of rows to it.

The budgets (`guardray.llm.fit` does the cutting):

- tokens, for backends whose tokenizer guardray loads (``transformers``: the actor's model;
  ``vllm``: the model's Hugging Face tokenizer): the context (the model's
  ``max_position_embeddings``, ``llm.vllm.max_model_len``, capped by
  ``llm.max_context_tokens``) minus ``llm.sampling.max_tokens``, counted on the prompt as
  the chat template renders it (generation prompt included);
- characters, for every backend when ``llm.max_prompt_chars`` is set (the only budget of
  ``openai_http``, whose tokenizer is unknown): the sum of the message contents.

Importing this module imports nothing heavy; the tokenizer is passed in.
"""

from __future__ import annotations

import logging
from typing import Any

from guardray.llm.config import LLMConfig
from guardray.llm.errors import LLMBackendConfigError
from guardray.llm.fit import MARKER, Fitted, char_count, cut_to_fit, locate_span, with_prefix

log = logging.getLogger(__name__)


def chat_tokens(tokenizer: Any, messages: list[dict[str, str]]) -> list[int]:
    """Token ids of ``messages`` as the model sees them: its chat template with the
    generation prompt, or continuing a final assistant message (prefill); plain concatenated
    contents for a tokenizer without a template."""
    if getattr(tokenizer, "chat_template", None):
        from guardray.llm.messages import chat_template_flags

        text = tokenizer.apply_chat_template(messages, tokenize=False,
                                             **chat_template_flags(messages))
    else:
        text = "\n".join(m["content"] for m in messages)
    return tokenizer(text, add_special_tokens=False)["input_ids"]


def token_cut_points(tokenizer: Any, span: str) -> list[int]:
    """Prefix lengths of ``span`` that end on one of its tokens: ``[0, end of token 1, ...]``
    (character offsets from the fast tokenizer's offset mapping)."""
    enc = tokenizer(span, add_special_tokens=False, return_offsets_mapping=True)
    ends = sorted({int(end) for _, end in enc["offset_mapping"] if 0 < end < len(span)})
    return [0, *ends]


def model_context(path: str) -> int | None:
    """``max_position_embeddings`` (or ``n_positions``) from a local model's ``config.json``."""
    import json
    import os

    try:
        with open(os.path.join(path, "config.json"), encoding="utf-8") as fh:
            config = json.load(fh)
    except (OSError, ValueError):
        return None
    config = config.get("text_config", config) if isinstance(config, dict) else {}
    for key in ("max_position_embeddings", "n_positions", "max_seq_len"):
        if isinstance(config.get(key), int):
            return int(config[key])
    return None


class PromptFitter:
    """Fits rows to one backend's budgets (see the module docstring).

    Args:
        cfg: the LLM config (``max_context_tokens``, ``max_prompt_chars``, ``sampling``).
        tokenizer: the model's tokenizer, or None (no token budget).
        context: the model's own context in tokens, or None (unknown).

    Raises:
        LLMBackendConfigError: ``sampling.max_tokens`` leaves no room for a prompt.
    """

    def __init__(self, cfg: LLMConfig, tokenizer: Any = None, context: int | None = None):
        self.cfg, self.tokenizer = cfg, tokenizer
        limits = [c for c in (context, cfg.max_context_tokens) if c]
        self.context = min(limits) if limits and tokenizer is not None else None
        self.token_budget = None
        if self.context is not None:
            self.token_budget = self.context - cfg.sampling.max_tokens
            if self.token_budget < 1:
                raise LLMBackendConfigError(
                    f"llm.sampling.max_tokens={cfg.sampling.max_tokens} leaves no room for a "
                    f"prompt in a context of {self.context} tokens (the model's, or "
                    "llm.max_context_tokens): lower max_tokens or raise the context")

    def count_tokens(self, messages: list[dict[str, str]]) -> int:
        """Tokens of the templated prompt (needs a tokenizer)."""
        return len(chat_tokens(self.tokenizer, messages))

    def fit(self, messages: list[dict[str, str]], span: str | None) -> Fitted:
        """``messages`` fitted to the character budget and the token budget at once.

        The kept prefix is the longest that ends on a token of the span (on any character
        without a token budget) and fits both budgets. ``Fitted.size`` counts tokens when
        there is a token budget, else characters.
        """
        chars = char_count(messages)
        char_limit = self.cfg.max_prompt_chars
        tokens = self.count_tokens(messages) if self.token_budget is not None else None
        size = tokens if tokens is not None else chars
        over_chars = char_limit is not None and chars > char_limit
        over_tokens = tokens is not None and tokens > self.token_budget
        if not over_chars and not over_tokens:
            return Fitted(messages, size, size)
        unit = "tokens" if over_tokens else "characters"
        budget = self.token_budget if over_tokens else char_limit
        where = locate_span(messages, span or "")
        if where is None:
            return Fitted(messages, size, size, error=(
                f"the prompt has {tokens if over_tokens else chars} {unit}, more than the "
                f"{budget} it may have, and no user text in it may be cut"))
        keep = len(span) - 1
        if char_limit is not None:
            room = char_limit - (chars - len(span) + len(MARKER))
            if room < 0:
                return Fitted(messages, size, size, error=(
                    f"the prompt has {chars} characters; without its user text it still has "
                    f"{chars - len(span) + len(MARKER)}, more than llm.max_prompt_chars="
                    f"{char_limit}: shorten the policy or the template"))
            keep = min(keep, room)
        if self.token_budget is None:
            cut = with_prefix(messages, where, span, keep)
            return Fitted(cut, char_count(cut), chars, cut=True)
        points = [p for p in token_cut_points(self.tokenizer, span) if p <= keep]
        if over_chars:
            points.append(keep)  # the exact character cut, when its tokens fit too
        return cut_to_fit(messages, where, span, points, self.token_budget, self.count_tokens,
                          size)
