"""A sequence classifier's forward pass as a frozen TorchScript graph, for CPU inference.

Why: a guard is a small encoder that classifies one short prompt at a time. At batch 1 on a
CPU most of its eager forward pass is Python, not arithmetic: Hugging Face's module calls,
mask building and dispatch around ~100 small ops. Tracing the forward pass once and freezing
the graph (`torch.jit.trace`, then `torch.jit.freeze`, which inlines the weights and folds
constants) removes that. On all-MiniLM-L6-v2, one 16-token prompt on one core: float32 18.9
-> 11.7 ms, dynamic int8 (`guardray.modeling.quantize`) 5.4 -> 2.7 ms, with the same logits to
the last bit (docs/BENCHMARKS.md, "Guard serving latency"). ``torch.export`` (15.0 ms, and it
cannot export int8 Linear layers) and ``torch.compile`` (11.8 / 13.5 ms after 24-43 s of
compiling) did worse here.

How: traced on a padded batch of two tokenised probes (the tokenizer's own keys, e.g.
``input_ids``, ``token_type_ids``, ``attention_mask``). A trace records the ops of one
example, so shape-dependent Python branches in the model would be baked in; the traced graph
is therefore checked against the eager model on other probe shapes (1 short prompt, 3 padded
prompts of different lengths, one long prompt) and used only if every logit agrees within
`TOLERANCE`. If tracing raises, or the check fails, the eager model is kept and a warning says
why: the setting never changes a score, only how fast it comes.

CPU only (on a GPU the eager model runs, logged). TorchScript is deprecated upstream (torch
2.14 warns) but ships in both pinned torches; if a future torch drops it, the eager model runs.
"""

from __future__ import annotations

import logging
import types
import warnings

log = logging.getLogger(__name__)

TOLERANCE = 1e-4  # max |logit difference| between the traced graph and the eager model

_TRACE_PROBES = ["a short probe", "a longer probe sentence, with a few more words in it"]
_CHECK_PROBES = (
    ["hello"],
    ["one", "two words here", "and a third prompt that is a little longer than both"],
    [" ".join(["a long prompt of many tokens"] * 30)],
)


class TracedClassifier:
    """A frozen TorchScript forward pass with the eager model's calling convention.

    ``model(**enc).logits`` works as on a Hugging Face sequence classifier; ``config`` is the
    eager model's. Inputs must carry the tokenizer keys the graph was traced with.
    """

    def __init__(self, graph, config, keys: tuple[str, ...]):
        self.graph = graph
        self.config = config
        self.keys = keys

    def __call__(self, **enc):
        out = self.graph(**{k: enc[k] for k in self.keys})
        return types.SimpleNamespace(logits=out["logits"] if isinstance(out, dict) else out[0])


def script_classifier(model, tokenizer, device: str, enabled: bool, *, max_length: int = 512):
    """The model to run: a checked `TracedClassifier`, or ``model`` itself.

    Args:
        model: a loaded Hugging Face sequence classifier in eval mode (possibly int8).
        tokenizer: its tokenizer (gives the traced input keys and the probes' ids).
        device: where the model runs; tracing applies on CPU only.
        enabled: the ``torchscript`` setting; False returns ``model``.
        max_length: the probes' token limit (capped at the model's positions).

    Returns:
        A `TracedClassifier` whose logits agree with ``model``'s within `TOLERANCE` on
        every check probe, or ``model`` (disabled, not on CPU, tracing failed, or the check
        failed; the last two are logged as warnings).
    """
    if not enabled:
        return model
    if not str(device).startswith("cpu"):
        log.info("torchscript applies to CPU inference only; the model runs eagerly on %s",
                 device)
        return model
    import torch

    from guardray.modeling.limits import max_input_tokens

    max_length = max_input_tokens(model.config, max_length)

    def encode(texts: list[str]) -> dict:
        return dict(tokenizer(texts, padding=True, truncation=True, max_length=max_length,
                              return_tensors="pt"))

    try:
        example = encode(_TRACE_PROBES)
        keys = tuple(example)
        with warnings.catch_warnings(), torch.inference_mode():
            warnings.simplefilter("ignore")  # TracerWarning, TorchScript's deprecation
            graph = torch.jit.freeze(torch.jit.trace(
                model, example_kwarg_inputs=example, strict=False, check_trace=False).eval())
            traced = TracedClassifier(graph, model.config, keys)
            worst = 0.0
            for texts in _CHECK_PROBES:
                enc = encode(texts)
                diff = (traced(**enc).logits.float() - model(**enc).logits.float()).abs()
                worst = max(worst, float(diff.max()))
    except Exception as exc:  # noqa: BLE001 - any tracing failure keeps the eager model
        log.warning("torchscript: tracing %s failed (%s: %s); the model runs eagerly",
                    type(model).__name__, type(exc).__name__, str(exc).splitlines()[0][:200]
                    if str(exc) else "")
        return model
    if not worst <= TOLERANCE:
        log.warning("torchscript: the traced %s differs from the eager model by %.3g on probe "
                    "inputs (tolerance %g; a shape-dependent branch?); the model runs eagerly",
                    type(model).__name__, worst, TOLERANCE)
        return model
    log.info("torchscript: %s traced and frozen (max |logit diff| on probes %.2g)",
             type(model).__name__, worst)
    return traced
