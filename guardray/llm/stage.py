"""`generate_dataset`: chat completions for every row of a Ray Dataset, on any backend.

Contract (the same for the ``transformers``, ``openai_http`` and ``vllm`` backends):

- Input: a ``ray.data.Dataset`` whose column ``messages_column`` holds chat messages, a list
  of ``{"role": "system"|"user"|"assistant", "content": str}`` dicts per row.
- Output: a lazy Dataset with every input column unchanged plus ``output_column`` (str, the
  assistant's reply) and, when asked for, ``tokens_column`` (int, completion tokens) and
  ``error_column`` (str, "" on success). Exactly one output row per input row; row order is
  not guaranteed (carry an id column to join on).
- A row whose messages list is empty is a "skip": it gets ``""`` and 0 tokens. The
  ``transformers`` backend never calls the model for it; Ray Data's LLM processors send every
  row, so ``openai_http``/``vllm`` send a one-token placeholder request instead.
- Seeds: with ``seed_column`` each row's integer seed is used; otherwise, when
  ``cfg.sampling.seed`` is set, the seed is derived from it and the row's messages
  (`guardray.llm.messages.row_seed`), so identical requests give identical completions.
- Errors: without ``error_column``, a backend error on a row (an HTTP error answer, malformed
  messages, a vLLM failure) fails the dataset with `LLMBackendError`; with it, the row gets
  ``""`` and the error text in ``error_column``. HTTP requests that still fail after
  ``cfg.http.max_retries`` retries fail the dataset either way (Ray Data's HTTP stage raises).
- Reserved column names: ``payload``, ``http_response``, ``sampling_params``,
  ``generated_text``, ``num_generated_tokens`` and ``messages`` (vllm, unless they are the
  messages/output column), ``__data``, ``__inference_error__`` and names starting with ``__gr``.

Everything is lazy: nothing runs until the Dataset is consumed. Ray, torch and vLLM are
imported inside the functions, so ``import guardray.llm`` stays cheap.
"""

from __future__ import annotations

import logging
from typing import Any

from guardray.llm.config import LLMConfig
from guardray.llm.errors import LLMBackendError
from guardray.llm.messages import MessagesError, row_request

log = logging.getLogger(__name__)


def generate_dataset(
    ds,
    cfg: LLMConfig,
    *,
    messages_column: str = "messages",
    output_column: str = "generated_text",
    seed_column: str | None = None,
    tokens_column: str | None = None,
    error_column: str | None = None,
):
    """Add an LLM completion of each row's chat messages (see the module docstring).

    Args:
        ds: input ``ray.data.Dataset`` (Ray must be initialised).
        cfg: backend, model, batching and sampling settings.
        messages_column: column holding each row's chat messages.
        output_column: new column with the completion text.
        seed_column: optional int column of per-row seeds.
        tokens_column: optional new column with the number of completion tokens.
        error_column: optional new column with per-row backend errors (captures them).

    Returns:
        The lazy output ``ray.data.Dataset``.

    Raises:
        LLMBackendConfigError: the backend cannot run as configured (``vllm`` on a cluster
            without GPUs, a missing API key variable); a `guardray.config.ConfigError`.
        LLMBackendError: (when the dataset runs) a row failed and no ``error_column``.
    """
    names = [messages_column, output_column, seed_column, tokens_column, error_column]
    new = [n for n in names[1:] if n is not None and n != seed_column]
    if len(set(new)) != len(new) or messages_column in new:
        raise ValueError(f"column names must differ: messages={messages_column!r}, "
                         f"output={output_column!r}, tokens={tokens_column!r}, "
                         f"error={error_column!r}")
    columns = dict(messages_column=messages_column, output_column=output_column,
                   seed_column=seed_column, tokens_column=tokens_column,
                   error_column=error_column)
    log.info("generate_dataset: backend=%s model=%s batch_size=%d concurrency=%d",
             cfg.backend, cfg.model, cfg.batch_size, cfg.concurrency)
    if cfg.backend == "transformers":
        return _transformers_dataset(ds, cfg, columns)
    from guardray.llm import ray_llm

    if cfg.backend == "openai_http":
        return ray_llm.http_dataset(ds, cfg, columns)
    if cfg.backend == "vllm":
        return ray_llm.vllm_dataset(ds, cfg, columns)
    raise ValueError(f"unknown backend {cfg.backend!r}; valid: transformers, openai_http, vllm")


# --------------------------------------------------------------------------- transformers


def _transformers_dataset(ds, cfg: LLMConfig, columns: dict[str, Any]):
    import ray

    t = cfg.transformers
    gpu = t.device.startswith("cuda")
    return ds.map_batches(
        TransformersUDF,
        fn_constructor_kwargs={"cfg": cfg.model_dump(mode="json"), **columns},
        batch_size=cfg.batch_size,
        batch_format="pyarrow",
        compute=ray.data.ActorPoolStrategy(size=cfg.concurrency),
        num_cpus=t.num_cpus,
        num_gpus=1 if gpu else None,
        udf_modifying_row_count=False,
    )


class TransformersUDF:
    """Ray Data class UDF: one `guardray.llm.hf.HFChatGenerator` per actor, batched calls.

    Constructed by Ray in each actor from a JSON-able config (so it pickles small).
    """

    def __init__(self, cfg: dict[str, Any], messages_column: str, output_column: str,
                 seed_column: str | None, tokens_column: str | None, error_column: str | None):
        from guardray.llm.hf import HFChatGenerator

        self.cfg = LLMConfig.model_validate(cfg)
        t = self.cfg.transformers
        threads = t.num_threads or (max(1, int(t.num_cpus)) if t.device == "cpu" else None)
        self.generator = HFChatGenerator(
            self.cfg.model, device=t.device, dtype=t.dtype, num_threads=threads,
            trust_remote_code=t.trust_remote_code,
        )
        self.messages_column, self.output_column = messages_column, output_column
        self.seed_column, self.tokens_column = seed_column, tokens_column
        self.error_column = error_column

    def __call__(self, batch):
        import pyarrow as pa

        from guardray.llm.hf import RowSampling

        rows = batch.select(
            [c for c in (self.messages_column, self.seed_column) if c is not None]
        ).to_pylist()
        n = len(rows)
        texts, tokens, errors = [""] * n, [0] * n, [""] * n
        todo, convs, settings = [], [], []
        s = self.cfg.sampling
        for i, row in enumerate(rows):
            try:
                messages, seed = row_request(row, self.cfg, self.messages_column,
                                             self.seed_column)
            except (MessagesError, TypeError, ValueError) as exc:
                if self.error_column is None:
                    raise LLMBackendError(f"row {i} of a batch: {exc}") from exc
                errors[i] = f"bad messages: {exc}"
                continue
            if not messages:
                continue  # a skip: no model call
            todo.append(i)
            convs.append(messages)
            settings.append(RowSampling(max_tokens=s.max_tokens, temperature=s.temperature,
                                        top_p=s.top_p, seed=seed, stop=tuple(s.stop)))
        for i, gen in zip(todo, self.generator.generate(convs, settings)):
            texts[i], tokens[i] = gen.text, gen.completion_tokens
        out = _drop(batch, [self.output_column, self.tokens_column, self.error_column])
        out = out.append_column(self.output_column, pa.array(texts, pa.string()))
        if self.tokens_column:
            out = out.append_column(self.tokens_column, pa.array(tokens, pa.int64()))
        if self.error_column:
            out = out.append_column(self.error_column, pa.array(errors, pa.string()))
        return out


def _drop(table, names: list[str | None]):
    """``table`` without the columns in ``names`` that it has (re-running a stage overwrites)."""
    present = [n for n in names if n is not None and n in table.column_names]
    return table.drop_columns(present) if present else table
