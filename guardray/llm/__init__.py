"""LLM generation backends usable by any stage (SDG, LLM judges, safety evaluation).

- `LLMConfig` / `SamplingConfig` (`guardray.llm.config`): backend ``transformers`` |
  ``openai_http`` | ``vllm``, model, batch size, concurrency, sampling, backend sections.
- `generate_dataset(ds, cfg, messages_column="messages", output_column="generated_text")`
  (`guardray.llm.stage`): adds a completion of each row's chat messages to a Ray Dataset,
  keeping all other columns; the same behaviour on every backend.
- `HFChatGenerator` (`guardray.llm.hf`): a local chat model with per-row seeded sampling,
  used by the ``transformers`` backend and the OpenAI-compatible server.
- `guardray.llm.fit` / `guardray.llm.context`: prompts fitted to the model's context (the
  marked user text is cut, with a marker; template and policy stay whole) and batches split
  into model calls under a token budget.

Importing this package imports pydantic only: Ray, torch and vLLM load when used.
"""

from __future__ import annotations

from typing import Any

from guardray.llm.config import BACKENDS, LLMConfig, SamplingConfig
from guardray.llm.errors import LLMBackendConfigError, LLMBackendError

__all__ = ["BACKENDS", "LLMBackendConfigError", "LLMBackendError", "LLMConfig", "SamplingConfig", "generate_dataset"]


def generate_dataset(ds, cfg: LLMConfig, **kwargs: Any):
    """See `guardray.llm.stage.generate_dataset` (imported lazily)."""
    from guardray.llm.stage import generate_dataset as _generate

    return _generate(ds, cfg, **kwargs)
