"""How many tokens an encoder accepts, from its config (no weights needed)."""

from __future__ import annotations

# Families whose position ids start after the padding index (RoBERTa's scheme): the usable
# length is max_position_embeddings - pad_token_id - 1 (514 -> 512 for XLM-R).
_OFFSET_POSITIONS = frozenset({"roberta", "xlm-roberta", "xlm-roberta-xl", "camembert",
                               "roberta-prelayernorm", "data2vec-text"})


def max_input_tokens(config, requested: int) -> int:
    """``requested`` capped at what ``config``'s position embeddings allow.

    Args:
        config: a transformers ``PretrainedConfig``.
        requested: the token limit a job asks for (e.g. ``inference.max_length``).

    Returns:
        ``min(requested, usable positions)``; ``requested`` when the config has no
        ``max_position_embeddings`` (relative-position models).
    """
    positions = getattr(config, "max_position_embeddings", None)
    if not positions:
        return requested
    if getattr(config, "model_type", "") in _OFFSET_POSITIONS:
        positions -= (getattr(config, "pad_token_id", None) or 0) + 1
    return max(1, min(requested, positions))
