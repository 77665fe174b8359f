"""A local Hugging Face chat model that generates batches with per-row sampling settings.

Used by the ``transformers`` backend (inside Ray Data actors) and by the OpenAI-compatible
server (`guardray.llm.openai_server`). Imports torch and transformers when constructed.

Per-row sampling: every row of a batch has its own temperature, top-p, token limit and seed.
Sampling uses the Gumbel-max trick on top of greedy decoding: for row i at each step,
``argmax(logits / T_i + g)`` with ``g ~ Gumbel(0, 1)`` drawn from row i's own generator is an
exact sample from ``softmax(logits / T_i)`` (after the top-p mask). Because each row draws its
noise from its own seeded generator, a row's completion does not depend on the other rows in
its batch (up to float rounding of padded attention), which makes batched generation
reproducible and lets an interrupted job regenerate exactly the same rows.

Prefill: a conversation that ends with an assistant message is continued, not answered
(`guardray.llm.messages.continues_final_message`): the template is rendered with
``continue_final_message=True`` (no end-of-turn after the message, no new assistant header)
and `Generation.text` is the continuation only; the caller joins it to the prefix.
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass
from typing import Any

from guardray.llm.errors import LLMBackendError
from guardray.llm.messages import chat_template_flags

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Generation:
    """One completion.

    Attributes:
        text: the generated text (special tokens removed, cut at a stop string); for a
            conversation ending with an assistant message (a prefill), only the continuation.
        prompt_tokens: tokens of the templated prompt.
        completion_tokens: new tokens generated for this row (up to the stop).
        finish_reason: ``"stop"`` (end of turn or a stop string) or ``"length"``.
    """

    text: str
    prompt_tokens: int
    completion_tokens: int
    finish_reason: str


@dataclass(frozen=True)
class RowSampling:
    """Sampling settings of one row (see `guardray.llm.config.SamplingConfig`)."""

    max_tokens: int = 256
    temperature: float = 0.0
    top_p: float = 1.0
    seed: int | None = None
    stop: tuple[str, ...] = ()


def _resolve_dtype(dtype: str, device: str):
    import torch

    if dtype == "auto":
        return torch.float32 if device == "cpu" else torch.bfloat16
    return {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}[dtype]


class HFChatGenerator:
    """A causal LM with its chat template, generating batches of conversations.

    Args:
        model: hub id, local folder or ``embedded:<name>`` (`guardray.modeling.offline`).
        device: ``cpu``, ``cuda`` or ``cuda:N``.
        dtype: ``auto``, ``float32``, ``bfloat16`` or ``float16``.
        num_threads: torch intra-op threads (CPU); None leaves torch's default.
        trust_remote_code: allow the model repository's own code.
    """

    def __init__(self, model: str, *, device: str = "cpu", dtype: str = "auto",
                 num_threads: int | None = None, trust_remote_code: bool = False):
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        from guardray.modeling.offline import resolve_model

        if num_threads:
            torch.set_num_threads(num_threads)
        started = time.perf_counter()
        self.model_ref = model
        path = resolve_model(model)
        self.device = device
        self.tokenizer = AutoTokenizer.from_pretrained(path, trust_remote_code=trust_remote_code)
        self.tokenizer.padding_side = "left"  # decoder-only: new tokens follow the prompt
        if self.tokenizer.pad_token_id is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        if not getattr(self.tokenizer, "chat_template", None):
            raise ValueError(f"model {model!r} has no chat template: use an instruct/chat model")
        self.model = AutoModelForCausalLM.from_pretrained(
            path, dtype=_resolve_dtype(dtype, device), trust_remote_code=trust_remote_code
        ).to(device)
        self.model.eval()
        self.eos_ids = self._eos_ids()
        log.info("loaded %s on %s in %.1f s", model, device, time.perf_counter() - started)

    def _eos_ids(self) -> list[int]:
        ids = self.model.generation_config.eos_token_id
        ids = [ids] if isinstance(ids, int) else list(ids or [])
        if self.tokenizer.eos_token_id is not None:
            ids.append(self.tokenizer.eos_token_id)
        end_of_turn = self.tokenizer.convert_tokens_to_ids("<|im_end|>")
        if isinstance(end_of_turn, int) and end_of_turn != self.tokenizer.unk_token_id:
            ids.append(end_of_turn)
        return sorted(set(ids))

    @property
    def context_length(self) -> int | None:
        """Most tokens (prompt + completion) the model takes, if its config says."""
        return getattr(self.model.config, "max_position_embeddings", None)

    def count_tokens(self, conversation: list[dict[str, str]]) -> int:
        """Tokens of the templated prompt of one conversation."""
        return len(self._encode_one(conversation))

    def _encode_one(self, conversation: list[dict[str, str]]) -> list[int]:
        """Token ids of the templated prompt: a new assistant turn, or the continuation of a
        final assistant message (see the module docstring).

        Raises:
            LLMBackendError: the chat template cannot continue a final assistant message.
        """
        flags = chat_template_flags(conversation)
        try:
            text = self.tokenizer.apply_chat_template(conversation, tokenize=False, **flags)
        except ValueError as exc:
            if not flags["continue_final_message"]:
                raise
            # transformers checks that the final message survives the template verbatim.
            raise LLMBackendError(
                f"transformers backend: the chat template of {self.model_ref!r} cannot continue "
                f"a final assistant message (prefill): {exc}") from exc
        return self.tokenizer(text, add_special_tokens=False)["input_ids"]

    def generate(self, conversations: list[list[dict[str, str]]],
                 sampling: list[RowSampling]) -> list[Generation]:
        """Generate one completion per conversation in a single batched ``generate`` call.

        Args:
            conversations: chat messages per row (non-empty lists); a row ending with an
                assistant message is a prefill: the model continues that message.
            sampling: settings per row (same length).

        Returns:
            One `Generation` per row, in order; a prefill row's text is the continuation
            only (the prefix is not repeated).
        """
        import torch
        from transformers import GenerationConfig, LogitsProcessorList, StoppingCriteriaList

        if len(conversations) != len(sampling):
            raise ValueError(f"{len(conversations)} conversations but {len(sampling)} settings")
        if not conversations:
            return []
        encoded = [self._encode_one(c) for c in conversations]
        width = max(len(e) for e in encoded)
        pad = self.tokenizer.pad_token_id
        input_ids = torch.tensor([[pad] * (width - len(e)) + e for e in encoded])
        attention = torch.tensor([[0] * (width - len(e)) + [1] * len(e) for e in encoded])
        limits = torch.tensor([s.max_tokens for s in sampling])
        config = GenerationConfig(
            max_new_tokens=int(limits.max()), do_sample=False, pad_token_id=pad,
            eos_token_id=self.eos_ids, num_beams=1,
        )
        with torch.inference_mode():
            out = self.model.generate(
                input_ids=input_ids.to(self.device), attention_mask=attention.to(self.device),
                generation_config=config,
                logits_processor=LogitsProcessorList([RowSampler(sampling, self.device)]),
                stopping_criteria=StoppingCriteriaList([RowLimit(limits, width)]),
            )
        new_tokens = out[:, width:].tolist()
        return [self._finish(toks, enc, s) for toks, enc, s in zip(new_tokens, encoded, sampling)]

    def _finish(self, tokens: list[int], prompt: list[int], s: RowSampling) -> Generation:
        tokens = tokens[: s.max_tokens]
        reason = "length"
        for i, tok in enumerate(tokens):
            if tok in self.eos_ids:
                tokens, reason = tokens[:i], "stop"
                break
        text = self.tokenizer.decode(tokens, skip_special_tokens=True)
        for stop in s.stop:
            cut = text.find(stop)
            if cut >= 0:
                text, reason = text[:cut], "stop"
        return Generation(text=text, prompt_tokens=len(prompt), completion_tokens=len(tokens),
                          finish_reason=reason)


class RowSampler:
    """Logits processor: per-row temperature, top-p and seeded Gumbel noise (see module doc).

    Rows with temperature 0 are left untouched (greedy). Shapes: ``scores`` is
    ``(batch, vocab)``; the batch never shrinks during greedy generation.
    """

    def __init__(self, sampling: list[RowSampling], device: str):
        import torch

        self.sampling = sampling
        self.generators = []
        for s in sampling:
            g = torch.Generator(device="cpu")
            g.manual_seed(s.seed if s.seed is not None else int.from_bytes(os.urandom(7), "big"))
            self.generators.append(g)
        self.device = device

    def __call__(self, input_ids: Any, scores: Any) -> Any:
        import torch

        scores = scores.float()
        for i, s in enumerate(self.sampling):
            if s.temperature <= 0:
                continue
            row = scores[i] / s.temperature
            if s.top_p < 1.0:
                row = _top_p_mask(row, s.top_p)
            uniform = torch.rand(row.shape[-1], generator=self.generators[i]).clamp_(1e-10, 1.0)
            gumbel = -torch.log(-torch.log(uniform))
            scores[i] = row + gumbel.to(row.device)
        return scores


def _top_p_mask(logits: Any, top_p: float) -> Any:
    """Set logits outside the smallest set of tokens with mass >= top_p to -inf (keeps >= 1)."""
    import torch

    sorted_logits, order = torch.sort(logits, descending=True)
    cumulative = torch.softmax(sorted_logits, dim=-1).cumsum(dim=-1)
    drop = cumulative > top_p
    drop[1:] = drop[:-1].clone()  # keep the token that crosses the threshold
    drop[0] = False
    masked = logits.clone()
    masked[order[drop]] = float("-inf")
    return masked


class RowLimit:
    """Stopping criterion: row i is done after ``limits[i]`` new tokens (per-row max_tokens)."""

    def __init__(self, limits: Any, prompt_width: int):
        self.limits = limits
        self.prompt_width = prompt_width

    def __call__(self, input_ids: Any, scores: Any, **kwargs: Any) -> Any:
        generated = input_ids.shape[-1] - self.prompt_width
        return (generated >= self.limits).to(input_ids.device)
