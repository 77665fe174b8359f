"""Post-training dynamic int8 quantization of a classifier for CPU inference.

``quantize="int8"`` replaces every ``torch.nn.Linear`` of a loaded model by a dynamically
quantized one (``torch.ao.quantization.quantize_dynamic`` with the per-channel qconfig):
weights are stored as int8 with one scale per output row, ``W[j] ~ s_j * W_q[j]`` with
``s_j = max_i |W[j, i]| / 127.5`` (symmetric, zero point 0); each call quantizes its input
``x`` on the fly (uint8, affine, from its min and max) and computes ``x_q @ W_q^T`` in int32
before rescaling and adding the float bias. Embeddings, LayerNorm and attention softmax stay
float32. On the main job's MiniLM guards the forward pass of one prompt runs about 2.5x faster
on one CPU core and P(unsafe) moves by 0.001-0.02 on average; on single prompts near the
decision boundary of a confident model it can move by up to 0.9, and 0-14 labels of 390-583
test prompts flip (0-2.4 %; docs/BENCHMARKS.md, "Int8 guards";
`benchmarks/bench_quantize.py`). Per-channel scales flip about half as many labels as one
scale per tensor, at the same speed.

CPU only: the quantized kernels (fbgemm / x86 / onednn) have no CUDA implementation, so a
model on a GPU is left as it is (and logged).

``torch.ao.quantization`` is deprecated upstream in favour of torchao but still ships in the
pinned torch (2.13 CPU set, 2.14 GPU set); if a future torch drops it, asking for ``int8``
fails with `ModelError` naming the way out (``quantize=none``).
"""

from __future__ import annotations

import logging
import warnings

from guardray.errors import ModelError

log = logging.getLogger(__name__)

QUANTIZE_MODES = ("none", "int8")


def quantize_model(model, mode: str, device: str, *, field: str = "quantize"):
    """The model to run for ``mode`` on ``device``: the same object, changed in place for int8.

    Args:
        model: a loaded ``torch.nn.Module`` in eval mode.
        mode: ``none`` or ``int8``.
        device: where the model runs (``cpu`` / ``cuda``...): int8 applies on CPU only.
        field: the config field named in errors.

    Returns:
        ``model`` itself, with its ``Linear`` layers replaced in place by dynamically
        quantized ones (per-channel int8 weights) for ``int8`` on CPU.

    Raises:
        ModelError: an unknown mode, or a torch without ``quantize_dynamic``.
    """
    if mode not in QUANTIZE_MODES:
        raise ModelError(f"{field}={mode!r}: expected one of {list(QUANTIZE_MODES)}")
    if mode == "none":
        return model
    if not str(device).startswith("cpu"):
        log.warning("%s=int8 applies to CPU inference only; the model runs unquantized on %s",
                    field, device)
        return model
    import torch

    with warnings.catch_warnings():  # upstream deprecation notices on import and packing
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.simplefilter("ignore", UserWarning)
        try:
            from torch.ao.quantization import per_channel_dynamic_qconfig, quantize_dynamic
        except ImportError as exc:  # a torch that dropped the eager-mode API
            raise ModelError(f"{field}=int8 needs torch.ao.quantization.quantize_dynamic, "
                             f"which torch {torch.__version__} lacks; set {field}=none") from exc
        quantized = quantize_dynamic(model, {torch.nn.Linear: per_channel_dynamic_qconfig},
                                     dtype=torch.qint8, inplace=True)
    n = sum(1 for m in quantized.modules() if type(m).__name__ == "Linear"
            and type(m).__module__.startswith("torch.ao.nn.quantized"))
    log.info("%s=int8: %d Linear layers quantized (dynamic, per-channel int8 weights), %d left "
             "in floating point", field, n, float_linears(quantized))
    return quantized.eval()


def float_linears(model) -> int:
    """How many ``torch.nn.Linear`` layers of ``model`` still compute in floating point (a
    dynamically quantized Linear is not one)."""
    import torch

    return sum(isinstance(m, torch.nn.Linear) for m in model.modules())
