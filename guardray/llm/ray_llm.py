"""The ``openai_http`` and ``vllm`` backends on ``ray.data.llm`` (`build_processor`).

- `http_processor_config` / `vllm_processor_config` translate an `LLMConfig` into the
  ``ray.data.llm`` processor configs (pure: testable without a GPU or a server).
- The preprocess functions emit what the processors need: ``payload`` (an OpenAI
  chat-completions JSON body) for HTTP; ``messages`` and ``sampling_params`` for vLLM.
  They also record the input column names in ``__gr_keys`` so the postprocess can return
  exactly the input columns plus the new ones (the processors carry every column through
  and leave the choice to the postprocess).
- `require_gpus` fails fast when the cluster has no GPU, instead of a vLLM processor waiting
  forever for resources.

Prefill (a conversation ending with an assistant message is continued, and the output is
the continuation only: `guardray.llm.messages.continues_final_message`):

- ``vllm``: nothing to send. ray.data.llm's ``ChatTemplateStage`` renders every conversation
  whose last message is not a user message with ``continue_final_message=True,
  add_generation_prompt=False`` (ray 2.60), and the engine returns the new tokens only.
- ``openai_http``: such a row's body carries ``continue_final_message: true`` and
  ``add_generation_prompt: false`` (`http_payload`), the request fields of vLLM's OpenAI
  server (and guardray's own, which continues any final assistant message). An endpoint
  that rejects unknown fields answers with an error, reported per row; one that silently
  ignores them would answer a fresh turn instead: use prefill only with endpoints that
  support these fields.
"""

from __future__ import annotations

import functools
import logging
import os
from typing import Any

from guardray.llm.config import LLMConfig
from guardray.llm.errors import LLMBackendConfigError, LLMBackendError
from guardray.llm.messages import (
    MessagesError,
    chat_template_flags,
    continues_final_message,
    row_request,
)

log = logging.getLogger(__name__)

KEYS, SKIP, BAD, CUT = "__gr_keys", "__gr_skip", "__gr_bad", "__gr_cut"
PLACEHOLDER = [{"role": "user", "content": "."}]  # a skipped row's 1-token request
INFERENCE_ERROR = "__inference_error__"  # ray.data.llm's per-row error column


# --------------------------------------------------------------------------- shared


def _prepare(row: dict[str, Any], cfg: LLMConfig, columns: dict[str, Any], fitter=None):
    """(messages, seed, skip, error, cut) of one row, its prompt fitted by ``fitter`` (a
    `guardray.llm.context.PromptFitter`); malformed messages and a prompt that cannot fit
    become a skip + error."""
    no_seed = 0 if cfg.sampling.seed is not None or columns["seed_column"] else None
    try:
        messages, seed = row_request(row, cfg, columns["messages_column"],
                                     columns["seed_column"])
    except (MessagesError, TypeError, ValueError) as exc:
        if columns["error_column"] is None:
            raise LLMBackendError(f"bad messages in column {columns['messages_column']!r}: "
                                  f"{exc}") from exc
        return PLACEHOLDER, no_seed, True, f"bad messages: {exc}", False
    if not messages:
        # Keep the seed field's type the same on every row: Arrow turns a column of ints
        # with gaps into floats, which strict endpoints reject.
        return PLACEHOLDER, no_seed, True, "", False
    if fitter is None:
        return messages, seed, False, "", False
    span = row.get(columns["cut_text_column"]) if columns.get("cut_text_column") else None
    fitted = fitter.fit(messages, span if isinstance(span, str) else None)
    if fitted.error:
        error = f"does not fit the model's context: {fitted.error}"
        if columns["error_column"] is None:
            raise LLMBackendError(error)
        return PLACEHOLDER, no_seed, True, error, False
    return fitted.messages, seed, False, "", fitted.cut


def _finish(row: dict[str, Any], columns: dict[str, Any], text: str, tokens: int,
            error: str, cut: bool = False) -> dict[str, Any]:
    """The output row: the input columns plus output / tokens / error / cut columns."""
    if error and columns["error_column"] is None:
        raise LLMBackendError(error)
    out = {k: row[k] for k in row[KEYS]}
    out[columns["output_column"]] = text
    if columns["tokens_column"]:
        out[columns["tokens_column"]] = int(tokens)
    if columns["error_column"]:
        out[columns["error_column"]] = error
    if columns.get("cut_column"):
        out[columns["cut_column"]] = bool(cut)
    return out


def _input_keys(row: dict[str, Any], columns: dict[str, Any]) -> list[str]:
    own = {columns["output_column"], columns["tokens_column"], columns["error_column"],
           columns.get("cut_column")}
    return [k for k in row if k not in own]


# --------------------------------------------------------------------------- openai_http


def api_key_headers(cfg: LLMConfig) -> dict[str, str]:
    """Request headers: ``cfg.http.headers`` plus the bearer key from ``api_key_env``.

    Raises:
        LLMBackendConfigError: ``api_key_env`` names a variable that is not set.
    """
    headers = dict(cfg.http.headers)
    env = cfg.http.api_key_env
    if env:
        key = os.environ.get(env, "")
        if not key:
            raise LLMBackendConfigError(
                f"llm.http.api_key_env={env!r} but the environment variable {env} is not set "
                "(or empty): export it, or set llm.http.api_key_env=null for an endpoint "
                "without authentication"
            )
        headers["Authorization"] = f"Bearer {key}"
    return headers


def http_processor_config(cfg: LLMConfig):
    """``ray.data.llm.HttpRequestProcessorConfig`` for ``cfg`` (reads the API key variable)."""
    import aiohttp
    from ray.data.llm import HttpRequestProcessorConfig

    h = cfg.http
    return HttpRequestProcessorConfig(
        url=h.url,
        headers=api_key_headers(cfg),
        qps=h.qps,
        max_retries=h.max_retries,
        base_retry_wait_time_in_s=h.retry_wait_s,
        batch_size=cfg.batch_size,
        concurrency=cfg.concurrency,
        session_factory=functools.partial(
            aiohttp.ClientSession, timeout=aiohttp.ClientTimeout(total=h.timeout_s)
        ),
    )


def http_payload(messages: list[dict[str, str]], seed: int | None, cfg: LLMConfig,
                 skip: bool) -> dict[str, Any]:
    """The OpenAI chat-completions request body of one row.

    A conversation ending with an assistant message (a prefill) also gets vLLM's
    ``continue_final_message: true, add_generation_prompt: false`` (after
    ``llm.http.extra_body``, which cannot undo them); other rows' bodies stay plain OpenAI.
    """
    s = cfg.sampling
    payload: dict[str, Any] = {
        "model": cfg.model,
        "messages": messages,
        "max_tokens": 1 if skip else s.max_tokens,
        "temperature": s.temperature,
        "top_p": s.top_p,
        **cfg.http.extra_body,
    }
    if continues_final_message(messages):
        payload.update(chat_template_flags(messages))
    if seed is not None:
        payload["seed"] = int(seed)
    if s.stop:
        payload["stop"] = list(s.stop)
    return payload


def parse_chat_response(resp: Any) -> tuple[str, int, str]:
    """(text, completion tokens, error) from an OpenAI chat-completions response body."""
    if not isinstance(resp, dict):
        return "", 0, f"endpoint answered {type(resp).__name__}, not a JSON object"
    if resp.get("error"):
        err = resp["error"]
        msg = err.get("message", err) if isinstance(err, dict) else err
        return "", 0, f"endpoint error: {msg}"
    try:
        choice = resp["choices"][0]
        text = choice["message"]["content"] or ""
    except (KeyError, IndexError, TypeError):
        return "", 0, f"endpoint answer has no choices[0].message.content: {str(resp):.200}"
    usage = resp.get("usage") or {}
    tokens = usage.get("completion_tokens") if isinstance(usage, dict) else None
    return str(text), int(tokens or 0), ""


def http_dataset(ds, cfg: LLMConfig, columns: dict[str, Any]):
    """The ``openai_http`` backend (see `guardray.llm.stage.generate_dataset`)."""
    log.info("openai_http backend: %s (model %s, qps %s, retries %d)", cfg.http.url, cfg.model,
             cfg.http.qps, cfg.http.max_retries)
    return build_http_processor(cfg, columns)(ds)


def build_http_processor(cfg: LLMConfig, columns: dict[str, Any]):
    """The ``ray.data.llm`` HTTP processor with guardray's pre/postprocess."""
    from ray.data.llm import build_processor

    from guardray.llm.context import PromptFitter

    config = http_processor_config(cfg)
    fitter = PromptFitter(cfg)  # the endpoint's tokenizer is unknown: llm.max_prompt_chars

    def preprocess(row: dict[str, Any]) -> dict[str, Any]:
        messages, seed, skip, error, cut = _prepare(row, cfg, columns, fitter)
        return {"payload": http_payload(messages, seed, cfg, skip), KEYS: _input_keys(row, columns),
                SKIP: skip, BAD: error, CUT: cut}

    def postprocess(row: dict[str, Any]) -> dict[str, Any]:
        if row[SKIP]:
            return _finish(row, columns, "", 0, row[BAD])
        text, tokens, error = parse_chat_response(_plain(row.get("http_response")))
        return _finish(row, columns, text, tokens, error and f"{cfg.http.url}: {error}",
                       bool(row[CUT]))

    return build_processor(config, preprocess=preprocess, postprocess=postprocess)


def _plain(value: Any) -> Any:
    """Numpy arrays (how Arrow lists come back) -> lists, recursively."""
    if hasattr(value, "tolist") and not isinstance(value, (str, bytes)):
        value = value.tolist()
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


# --------------------------------------------------------------------------- vllm


def require_gpus(cfg: LLMConfig) -> None:
    """Fail fast unless the Ray cluster has the GPUs one vLLM engine needs.

    Raises:
        LLMBackendConfigError: naming the config keys and the alternatives.
    """
    import ray

    if not cfg.vllm.require_gpus:
        return
    need = cfg.vllm.gpus_per_engine
    have = ray.cluster_resources().get("GPU", 0) if ray.is_initialized() else 0
    if have < need:
        raise LLMBackendConfigError(
            f"llm.backend='vllm' needs {need} GPU(s) per engine (llm.vllm.tensor_parallel_size="
            f"{cfg.vllm.tensor_parallel_size} x llm.vllm.pipeline_parallel_size="
            f"{cfg.vllm.pipeline_parallel_size}) but the Ray cluster has {have:g} GPU(s); a vLLM "
            "processor would wait forever. Use llm.backend=transformers (CPU or GPU) or "
            "llm.backend=openai_http (a remote endpoint), run on a cluster with GPUs, or set "
            "llm.vllm.require_gpus=false if GPU nodes start on demand (autoscaling)."
        )


def vllm_processor_config(cfg: LLMConfig, *, capture_errors: bool = False, model_path=None):
    """``ray.data.llm.vLLMEngineProcessorConfig`` for ``cfg`` (constructs without vLLM).

    Args:
        cfg: the LLM config (backend ``vllm``).
        capture_errors: keep going on per-row engine errors (``should_continue_on_error``).
        model_path: the resolved model source (default: ``cfg.model`` resolved on this node).
    """
    from ray.data.llm import vLLMEngineProcessorConfig

    v = cfg.vllm
    if model_path is None:
        from guardray.modeling.offline import resolve_model

        model_path = resolve_model(cfg.model)
    engine_kwargs: dict[str, Any] = {
        "tensor_parallel_size": v.tensor_parallel_size,
        "pipeline_parallel_size": v.pipeline_parallel_size,
        "dtype": v.dtype,
    }
    if v.max_model_len is not None:
        engine_kwargs["max_model_len"] = v.max_model_len
    if v.gpu_memory_utilization is not None:
        engine_kwargs["gpu_memory_utilization"] = v.gpu_memory_utilization
    engine_kwargs.update(v.engine_kwargs)
    extra = {}
    if v.max_concurrent_batches is not None:
        extra["max_concurrent_batches"] = v.max_concurrent_batches
    return vLLMEngineProcessorConfig(
        model_source=str(model_path),
        engine_kwargs=engine_kwargs,
        batch_size=cfg.batch_size,
        concurrency=cfg.concurrency,
        accelerator_type=v.accelerator_type,
        should_continue_on_error=capture_errors,
        **extra,
    )


def vllm_sampling_params(seed: int | None, cfg: LLMConfig, skip: bool) -> dict[str, Any]:
    """The per-row ``sampling_params`` the vLLM stage turns into ``vllm.SamplingParams``."""
    s = cfg.sampling
    params: dict[str, Any] = {"max_tokens": 1 if skip else s.max_tokens,
                              "temperature": s.temperature, "top_p": s.top_p}
    if seed is not None:
        params["seed"] = seed
    if s.stop:
        params["stop"] = list(s.stop)
    return params


def vllm_dataset(ds, cfg: LLMConfig, columns: dict[str, Any]):
    """The ``vllm`` backend (see `guardray.llm.stage.generate_dataset`)."""
    require_gpus(cfg)
    log.info("vllm backend: %s, %d engine(s) x %d GPU(s)", cfg.model, cfg.concurrency,
             cfg.vllm.gpus_per_engine)
    processor, finalize = build_vllm_processor(cfg, columns)
    out = processor(ds)
    return out.map(finalize) if finalize is not None else out


def build_vllm_processor(cfg: LLMConfig, columns: dict[str, Any], model_path=None):
    """The ``ray.data.llm`` vLLM processor with guardray's pre/postprocess, and the map that
    turns engine-error rows into output rows (None unless errors are captured). Building
    needs no GPU; running it does (`require_gpus`)."""
    from ray.data.llm import build_processor

    capture = columns["error_column"] is not None
    config = vllm_processor_config(cfg, capture_errors=capture, model_path=model_path)

    source, cfg_json = str(config.model_source), cfg.model_dump_json()

    def preprocess(row: dict[str, Any]) -> dict[str, Any]:
        fitter = _vllm_fitters(cfg_json, source, cfg.vllm.max_model_len)
        messages, seed, skip, error, cut = _prepare(row, cfg, columns, fitter)
        return {"messages": messages, "sampling_params": vllm_sampling_params(seed, cfg, skip),
                KEYS: _input_keys(row, columns), SKIP: skip, BAD: error, CUT: cut}

    def postprocess(row: dict[str, Any]) -> dict[str, Any]:
        text = "" if row[SKIP] else str(row.get("generated_text") or "")
        tokens = 0 if row[SKIP] else int(row.get("num_generated_tokens") or 0)
        return _finish(row, columns, text, tokens, row[BAD], bool(row[CUT]))

    def finalize(row: dict[str, Any]) -> dict[str, Any]:
        # Rows the engine failed on bypass postprocess and come back whole (ray.data.llm).
        error = row.pop(INFERENCE_ERROR, "") or ""
        if error and KEYS in row:
            return _finish(row, columns, "", 0, f"vLLM: {error}", bool(row.get(CUT)))
        return row

    processor = build_processor(config, preprocess=preprocess, postprocess=postprocess)
    return processor, (finalize if capture else None)


@functools.lru_cache(maxsize=4)
def _vllm_fitters(cfg_json: str, source: str, context: int | None):
    from transformers import AutoTokenizer

    from guardray.llm.context import PromptFitter, model_context

    cfg = LLMConfig.model_validate_json(cfg_json)
    try:
        tokenizer = AutoTokenizer.from_pretrained(
            source, trust_remote_code=bool(cfg.vllm.engine_kwargs.get("trust_remote_code")))
    except (OSError, ValueError) as exc:
        log.warning("vllm: no tokenizer for %s (%s); prompts are fitted by "
                    "llm.max_prompt_chars only", source, exc)
        return PromptFitter(cfg)
    return PromptFitter(cfg, tokenizer, context or model_context(source))


def vllm_fitter(cfg: LLMConfig, source: str, context: int | None):
    """The `guardray.llm.context.PromptFitter` of a vLLM model (its Hugging Face tokenizer,
    its ``max_model_len`` or config context), loaded once per worker process."""
    return _vllm_fitters(cfg.model_dump_json(), source, context)
