"""Greedy responses of one model to many conversations, in batches on Ray Data.

The model is any candidate folder; the backend is the job's ``generation`` config
(``transformers`` actors on CPU, ``vllm`` engines on GPU, an OpenAI-compatible endpoint),
through `guardray.llm.generate_dataset`. Decoding is greedy (paper C.3). A conversation whose
last message is the assistant's is continued (a prefilled answer start); the text returned is
then the continuation only.
"""

from __future__ import annotations

import logging

from guardray.errors import RunError

log = logging.getLogger(__name__)

_INDEX, _MESSAGES, _OUT, _ERROR = "_i", "messages", "response", "error"


class GenerationError(RunError):
    """The backend failed on one or more rows."""


def generate_responses(llm_cfg, model: str, conversations: list[list[dict[str, str]]], *,
                       max_new_tokens: int) -> list[str]:
    """One greedy completion per conversation, in input order (Ray must be running).

    Args:
        llm_cfg: a `guardray.llm.config.LLMConfig` (its ``model`` is replaced by ``model``).
        model: the model folder (or hub id / served name).
        conversations: chat messages per row.
        max_new_tokens: most new tokens per completion.

    Raises:
        GenerationError: a row failed (the first errors are quoted).
    """
    import ray

    from guardray.llm import generate_dataset

    if not conversations:
        return []
    cfg = llm_cfg.model_copy(update={"model": model}).with_sampling(
        max_tokens=max_new_tokens, temperature=0.0)
    ds = ray.data.from_items([{_INDEX: i, _MESSAGES: c} for i, c in enumerate(conversations)])
    frame = generate_dataset(ds, cfg, messages_column=_MESSAGES, output_column=_OUT,
                             error_column=_ERROR).to_pandas().sort_values(_INDEX)
    errors = [e for e in frame[_ERROR].tolist() if e]
    if errors:
        raise GenerationError(f"{model}: {len(errors)} of {len(frame)} generation(s) failed, "
                              f"e.g. {errors[:3]}")
    if len(frame) != len(conversations):
        raise GenerationError(f"{model}: {len(frame)} responses for {len(conversations)} rows")
    return [str(t or "") for t in frame[_OUT].tolist()]
