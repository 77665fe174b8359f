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
- Context (`guardray.llm.fit`, `guardray.llm.context`): with ``cut_text_column``, a row
  whose prompt is over the backend's budget (``llm.max_context_tokens`` or the model's
  context, minus ``max_tokens``; ``llm.max_prompt_chars``) has that column's text, found
  verbatim in its messages, cut to the longest prefix that fits, followed by
  `guardray.llm.fit.MARKER`; the rest of the prompt (template, policy) stays whole.
  ``cut_column`` (bool) says which rows were cut. A prompt that cannot fit (no such text,
  or the template alone is over) is never sent: it is a row error as above.
- Memory (``transformers``): a batch is sorted by prompt length and split into model calls
  of at most ``llm.max_batch_tokens`` padded tokens; when a call fails, the rows of the
  calls already done keep their completions (the failed rows get the error, with
  ``error_column``).
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
    cut_text_column: str | None = None,
    cut_column: str | None = None,
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
        cut_text_column: optional column with the user text inside each row's messages that
            may be cut to fit the context (see the module docstring).
        cut_column: optional new bool column: the row's text was cut to fit.

    Returns:
        The lazy output ``ray.data.Dataset``.

    Raises:
        LLMBackendConfigError: the backend cannot run as configured (``vllm`` on a cluster
            without GPUs, a missing API key variable); a `guardray.config.ConfigError`.
        LLMBackendError: (when the dataset runs) a row failed and no ``error_column``.
    """
    new = [n for n in (output_column, tokens_column, error_column, cut_column) if n is not None]
    inputs = {messages_column, seed_column, cut_text_column} - {None}
    if len(set(new)) != len(new) or inputs & set(new):
        raise ValueError(f"column names must differ: messages={messages_column!r}, "
                         f"output={output_column!r}, tokens={tokens_column!r}, "
                         f"error={error_column!r}, cut={cut_column!r}, "
                         f"cut_text={cut_text_column!r}")
    columns = dict(messages_column=messages_column, output_column=output_column,
                   seed_column=seed_column, tokens_column=tokens_column,
                   error_column=error_column, cut_text_column=cut_text_column,
                   cut_column=cut_column)
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

    Constructed by Ray in each actor from a JSON-able config (so it pickles small). Each
    batch: rows are fitted to the context (`guardray.llm.context.PromptFitter`), sorted by
    prompt length and generated in calls of at most ``max_batch_tokens`` padded tokens
    (`guardray.llm.fit.plan_batches`).
    """

    def __init__(self, cfg: dict[str, Any], messages_column: str, output_column: str,
                 seed_column: str | None, tokens_column: str | None, error_column: str | None,
                 cut_text_column: str | None = None, cut_column: str | None = None):
        from guardray.llm.context import PromptFitter
        from guardray.llm.hf import HFChatGenerator

        self.cfg = LLMConfig.model_validate(cfg)
        t = self.cfg.transformers
        threads = t.num_threads or (max(1, int(t.num_cpus)) if t.device == "cpu" else None)
        self.generator = HFChatGenerator(
            self.cfg.model, device=t.device, dtype=t.dtype, num_threads=threads,
            trust_remote_code=t.trust_remote_code,
        )
        self.fitter = PromptFitter(self.cfg, self.generator.tokenizer,
                                   self.generator.context_length)
        self.messages_column, self.output_column = messages_column, output_column
        self.seed_column, self.tokens_column = seed_column, tokens_column
        self.error_column = error_column
        self.cut_text_column, self.cut_column = cut_text_column, cut_column

    def __call__(self, batch):
        import pyarrow as pa

        from guardray.llm.hf import RowSampling

        wanted = (self.messages_column, self.seed_column, self.cut_text_column)
        rows = batch.select([c for c in dict.fromkeys(wanted) if c is not None]).to_pylist()
        n = len(rows)
        texts, tokens, errors, cut = [""] * n, [0] * n, [""] * n, [False] * n
        todo, convs, settings, sizes = [], [], [], []
        s = self.cfg.sampling
        for i, row in enumerate(rows):
            try:
                messages, seed = row_request(row, self.cfg, self.messages_column,
                                             self.seed_column)
            except (MessagesError, TypeError, ValueError) as exc:
                self._fail(errors, [i], f"bad messages: {exc}")
                continue
            if not messages:
                continue  # a skip: no model call
            span = row.get(self.cut_text_column) if self.cut_text_column else None
            fitted = self.fitter.fit(messages, span if isinstance(span, str) else None)
            if fitted.error:
                self._fail(errors, [i], f"does not fit the model's context: {fitted.error}")
                continue
            cut[i] = fitted.cut
            todo.append(i)
            convs.append(fitted.messages)
            sizes.append(fitted.size)
            settings.append(RowSampling(max_tokens=s.max_tokens, temperature=s.temperature,
                                        top_p=s.top_p, seed=seed, stop=tuple(s.stop)))
        self._generate(todo, convs, settings, sizes, texts, tokens, errors)
        out = _drop(batch, [self.output_column, self.tokens_column, self.error_column,
                            self.cut_column])
        out = out.append_column(self.output_column, pa.array(texts, pa.string()))
        if self.tokens_column:
            out = out.append_column(self.tokens_column, pa.array(tokens, pa.int64()))
        if self.error_column:
            out = out.append_column(self.error_column, pa.array(errors, pa.string()))
        if self.cut_column:
            out = out.append_column(self.cut_column, pa.array(cut, pa.bool_()))
        return out

    def _fail(self, errors: list[str], rows: list[int], text: str) -> None:
        """Record ``text`` as the error of ``rows`` (batch positions), or raise it."""
        if self.error_column is None:
            raise LLMBackendError(f"row {rows[0]} of a batch: {text}")
        for i in rows:
            errors[i] = text

    def _generate(self, todo, convs, settings, sizes, texts, tokens, errors) -> None:
        """Generate the fitted rows in calls under ``max_batch_tokens``, shortest first."""
        from guardray.llm.fit import plan_batches

        for call in plan_batches(sizes, self.cfg.sampling.max_tokens,
                                 self.cfg.max_batch_tokens):
            try:
                gens = self.generator.generate([convs[j] for j in call],
                                               [settings[j] for j in call])
            except (RuntimeError, MemoryError) as exc:  # e.g. "can't allocate memory"
                # The calls already done keep their rows; these rows get the error.
                log.warning("a model call of %d row(s) failed: %s", len(call), exc)
                self._fail(errors, [todo[j] for j in call], f"model call failed: {exc}")
                continue
            for j, gen in zip(call, gens):
                texts[todo[j]], tokens[todo[j]] = gen.text, gen.completion_tokens


def _drop(table, names: list[str | None]):
    """``table`` without the columns in ``names`` that it has (re-running a stage overwrites)."""
    present = [n for n in names if n is not None and n in table.column_names]
    return table.drop_columns(present) if present else table
