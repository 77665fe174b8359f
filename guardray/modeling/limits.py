"""How many tokens an encoder accepts, from its config (no weights needed)."""

from __future__ import annotations

from guardray.errors import ConfigError

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


def usable_positions(config) -> int | None:
    """Tokens ``config``'s position embeddings allow (None: no absolute positions)."""
    positions = getattr(config, "max_position_embeddings", None)
    if not positions:
        return None
    return max_input_tokens(config, positions)


def check_max_length(model: str, requested: int, *, field: str = "model.max_length",
                     trust_remote_code: bool = False) -> None:
    """Fail before any work when the model at ``model`` cannot be loaded, or ``requested``
    tokens exceed what it accepts.

    The model is checked by `guardray.modeling.check.check_model` (a folder with config,
    safetensors weights and a tokenizer, or a hub id whose config and tokenizer load; no
    remote code unless ``trust_remote_code``), named by the ``base`` field of ``field``'s
    section (``model.base`` for ``model.max_length``).

    Raises:
        ModelError: the model cannot be used (`guardray.modeling.check.check_model`).
        ConfigError: naming ``field``, both numbers and the fix.
    """
    from guardray.modeling.check import check_model

    section = field.rsplit(".", 1)[0] + "." if "." in field else ""
    config = check_model(model, trust_remote_code=trust_remote_code, field=f"{section}base",
                         trust_field=f"{section}trust_remote_code")
    usable = usable_positions(config)
    if usable is not None and requested > usable:
        raise ConfigError(f"{field}: {requested} tokens, but the model at {model} accepts at "
                          f"most {usable}; set {field}={usable} or lower")
