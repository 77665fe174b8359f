"""The losses of guardrail instruction pretraining (GIP), GuardFormer section 3.3, eq. 1.

    L(theta) = l1 * L_MLM + l2 * L_Alice++ + l3 * L_CE                                   (1)

- ``L_MLM`` (`mlm_loss`): mean negative log-likelihood of the masked tokens,
  ``-1/|M| sum_{m in M} log p(x_m | x_{\\m})``.
- ``L_CE`` (`classification_loss`): cross-entropy of the safe/unsafe head.
- ``L_Alice++ = L_label + alpha * L_virtual`` (`alice_pp_loss`, Pereira et al. 2021): the
  hidden states of a uniformly drawn layer get an adversarial perturbation ``delta``;
  ``L_label`` is the cross-entropy of the perturbed prediction against the gold labels and
  ``L_virtual`` the virtual adversarial (VAT) term
  ``max_{|delta| <= eps} KL(p(y|x) || p(y|x+delta))``,
  here the symmetric KL (as in SMART / mt-dnn) at a ``delta`` found by power-iteration ascent.

Pure tensor math: no transformers, Ray or file access; randomness comes in as a
``torch.Generator``. Divergences are computed in float32 so bf16/fp16 logits are safe.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor

log = logging.getLogger(__name__)

IGNORE_INDEX = -100
NORMS = ("inf", "l2")


def mlm_loss(logits: Tensor, labels: Tensor) -> Tensor:
    """Masked-language-modelling loss: mean NLL over the masked positions (GuardFormer 3.3).

    Args:
        logits: ``[B, T, V]`` token logits (any float dtype; the loss is computed in float32),
            or ``[M, V]`` logits computed at the masked positions only (``GIPModel``'s
            ``mlm_positions``) with ``labels`` ``[M]``: the same loss.
        labels: ``[B, T]`` original token ids at masked positions, `IGNORE_INDEX` elsewhere.

    Returns:
        Scalar ``-1/|M| sum_{m in M} log softmax(logits_m)[labels_m]``. With no masked position
        the result is ``0`` and still connected to the graph (``logits.sum() * 0``), so a
        backward pass through it works and gives zero gradients.
    """
    if logits.shape[:-1] != labels.shape:
        raise ValueError(
            f"mlm_loss: logits {tuple(logits.shape)} must be labels {tuple(labels.shape)} + [V]"
        )
    masked = labels != IGNORE_INDEX
    count = int(masked.sum())
    if count == 0:
        return logits.sum() * 0.0
    # Select the masked rows before the float32 cast: [B*T, V] in float32 can be gigabytes
    # for a 250k-token vocabulary, the masked rows are ~15% of that.
    picked = logits[masked].float()
    return F.cross_entropy(picked, labels[masked], reduction="sum") / count


def classification_loss(logits: Tensor, labels: Tensor) -> Tensor:
    """Cross-entropy of the classification head, GuardFormer's ``L_CE``.

    Args:
        logits: ``[B, C]`` class logits (computed in float32).
        labels: ``[B]`` class ids in ``0..C-1``.

    Returns:
        Scalar mean cross-entropy over the batch.
    """
    if logits.dim() != 2 or labels.shape != logits.shape[:1]:
        raise ValueError(
            f"classification_loss: expected logits [B, C] and labels [B], got "
            f"{tuple(logits.shape)} and {tuple(labels.shape)}"
        )
    return F.cross_entropy(logits.float(), labels)


def symmetric_kl(p_logits: Tensor, q_logits: Tensor) -> Tensor:
    """Symmetric KL divergence between two categorical predictions, averaged over the batch.

    ``KL(p||q) + KL(q||p) = sum_c (p_c - q_c) (log p_c - log q_c)`` per example, with
    ``p = softmax(p_logits)`` and ``q = softmax(q_logits)``, computed from float32
    log-softmax (stable for bf16/fp16 inputs; no ``log(0)``).

    Args:
        p_logits: ``[..., C]`` logits; leading dimensions are flattened into the batch.
        q_logits: logits of the same shape.

    Returns:
        Scalar mean over the batch rows; ``>= 0`` and ``0`` iff both predictions agree.
    """
    if p_logits.shape != q_logits.shape:
        raise ValueError(
            f"symmetric_kl: shapes differ: {tuple(p_logits.shape)} vs {tuple(q_logits.shape)}"
        )
    log_p = F.log_softmax(p_logits.reshape(-1, p_logits.shape[-1]).float(), dim=-1)
    log_q = F.log_softmax(q_logits.reshape(-1, q_logits.shape[-1]).float(), dim=-1)
    per_row = ((log_p.exp() - log_q.exp()) * (log_p - log_q)).sum(dim=-1)
    return per_row.mean()


@dataclass(frozen=True)
class AliceParams:
    """Knobs of ALICE++ (names and defaults as mt-dnn's ``SmartPerturbation``).

    Attributes:
        alpha: weight of the virtual (VAT) term in ``L_label + alpha * L_virtual``.
        noise_var: scale of the initial random perturbation. As in mt-dnn and vat-pytorch the
            noise is ``noise_var * N(0, 1)``: ``noise_var`` is the *standard deviation*, despite
            its name.
        step_size: ``eta`` of each ascent step, ``delta <- delta + eta * g / (||g|| + epsilon)``.
            Each step moves every token's perturbation by at most ``eta`` in the chosen norm,
            so ``||delta|| <= ||noise|| + steps * eta`` per token (the ``eps`` ball of the paper).
        epsilon: stabiliser of the gradient normalisation (mt-dnn's ``epsilon``): the
            direction is ``g / (||g|| + epsilon)`` per token, with ``g`` the gradient scaled
            so that each example's largest entry is 1 (so ``epsilon`` is relative to it, see
            `_direction`); it is *not* the radius of the ball.
        steps: power-iteration (ascent) steps, ``>= 1`` (mt-dnn's ``k``).
        max_layer: the perturbed layer is drawn uniformly from ``0..min(max_layer, L)``
            (both ends included; ``L`` = number of encoder blocks); ``0`` is the embedding
            output and ``i`` the output of block ``i``. ``None`` means any layer; ``0`` gives
            plain ALICE/SMART (embeddings only).
        norm: ``"inf"`` (max-abs over the hidden dimension, mt-dnn's default) or ``"l2"``;
            both are per token.
    """

    alpha: float = 1.0
    noise_var: float = 1e-5
    step_size: float = 1e-3
    epsilon: float = 1e-6
    steps: int = 1
    max_layer: int | None = None
    norm: Literal["inf", "l2"] = "inf"

    def __post_init__(self) -> None:
        for name in ("alpha", "noise_var", "step_size"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value >= 0):
                raise ValueError(f"AliceParams.{name}={value!r}: must be a finite number >= 0")
        if not (math.isfinite(self.epsilon) and self.epsilon > 0):
            raise ValueError(f"AliceParams.epsilon={self.epsilon!r}: must be a finite number > 0")
        if isinstance(self.steps, bool) or not isinstance(self.steps, int) or self.steps < 1:
            raise ValueError(f"AliceParams.steps={self.steps!r}: must be an integer >= 1")
        if self.max_layer is not None and (
            isinstance(self.max_layer, bool) or not isinstance(self.max_layer, int)
            or self.max_layer < 0
        ):
            raise ValueError(
                f"AliceParams.max_layer={self.max_layer!r}: must be None or an integer >= 0"
            )
        if self.norm not in NORMS:
            raise ValueError(f"AliceParams.norm={self.norm!r}: valid: {', '.join(NORMS)}")


@dataclass
class AliceLoss:
    """The ALICE++ loss and its parts.

    Attributes:
        total: ``label + alpha * virtual`` (scalar, connected to the model's graph).
        label: cross-entropy of the perturbed logits against the gold labels.
        virtual: symmetric KL between the clean and the perturbed predictions.
        layer: the perturbed layer (0 = embedding output, i = output of block i).
        skipped: the ascent gradient was NaN/inf, so the perturbation was dropped and the
            virtual term zeroed (mt-dnn returns 0 in that case).
    """

    total: Tensor
    label: Tensor
    virtual: Tensor
    layer: int
    skipped: bool = False


def draw_layer(num_layers: int, max_layer: int | None, generator: torch.Generator) -> int:
    """Draw the perturbed layer uniformly from ``0..min(max_layer, num_layers)`` (inclusive)."""
    if num_layers < 0:
        raise ValueError(f"num_layers={num_layers}: must be >= 0")
    top = num_layers if max_layer is None else min(max_layer, num_layers)
    return int(torch.randint(0, top + 1, (1,), generator=generator, device=generator.device))


def _direction(grad: Tensor, norm: str, epsilon: float) -> Tensor:
    """``g / (||g|| + epsilon)`` per token (over the hidden dimension), as mt-dnn's
    ``_norm_grad``, where ``g`` is ``grad`` divided by each example's largest ``|grad|``.

    The rescaling (the scale-invariance trick of Miyato et al.'s VAT code) keeps ``epsilon``
    a guard against 0/0 instead of a threshold on the raw gradient: at ``noise_var=1e-5`` the
    raw per-token gradients of a real encoder are far below ``1e-6`` (measured ~1e-10 on
    all-MiniLM-L6-v2 in eval mode), so the plain mt-dnn formula would shrink every ascent
    step ~10^4-fold. An all-zero gradient stays zero.
    """
    scale = grad.abs().amax(dim=tuple(range(1, grad.dim())), keepdim=True)
    grad = grad / torch.where(scale > 0, scale, torch.ones_like(scale))
    if norm == "l2":
        size = grad.norm(p=2, dim=-1, keepdim=True)
    else:
        size = grad.abs().amax(dim=-1, keepdim=True)
    return grad / (size + epsilon)


def alice_pp_loss(
    logits_with_delta: Callable[[int, Tensor], Tensor],
    clean_logits: Tensor,
    labels: Tensor,
    hidden_shape: tuple[int, int, int],
    num_layers: int,
    params: AliceParams,
    generator: torch.Generator,
    attention_mask: Tensor | None = None,
    *,
    dtype: torch.dtype | None = None,
) -> AliceLoss:
    """ALICE++ loss ``L_label + alpha * L_virtual`` (GuardFormer 3.3; Pereira et al. 2021).

    1. Draw the layer ``l`` uniformly from ``0..min(max_layer, num_layers)`` (`draw_layer`).
    2. ``delta_0 = noise_var * N(0, 1)`` of shape ``hidden_shape``, zero on padding tokens.
    3. ``steps`` times: ``g = d/d delta [sum_b SymKL(clean_b.detach(), f_l(delta)_b)]``
       (``torch.autograd.grad``; the batch is summed, not averaged, so each example's
       gradient does not shrink with the batch size relative to ``epsilon``), then
       ``delta <- delta + step_size * g / (||g|| + epsilon)`` per token, masked (``g`` is the
       gradient rescaled to max-abs 1 per example, see `_direction`).
    4. Final forward with the detached ``delta``: ``L_label = CE(f_l(delta), labels)``,
       ``L_virtual = SymKL(clean, f_l(delta))`` (clean *not* detached, as mt-dnn); gradients
       flow into the model's parameters through both.

    This is SMART's algorithm 1 (ascent with a normalised gradient); the current mt-dnn and
    vat-pytorch code instead normalise ``noise + step_size * g`` to the unit ball, which makes
    every perturbation unit-sized whatever ``step_size`` is. If the gradient norm is NaN/inf
    the perturbation is dropped (``delta = 0``) and the virtual term is zero; the final
    forward still runs, so every data-parallel rank runs the same number of forwards (ZeRO-3
    gathers parameters collectively in each forward).

    Dropout: run the model in the mode you train in (mt-dnn runs these forwards in train
    mode, so dropout noise adds to the KL). Under bf16, perturbations below the hidden
    states' rounding step (~0.4% of their size) vanish in the forward pass.

    Args:
        logits_with_delta: ``(layer, delta [B, T, H]) -> [B, C]`` class logits of the model run
            with ``delta`` added to the hidden states at ``layer``.
        clean_logits: ``[B, C]`` logits of the unperturbed forward.
        labels: ``[B]`` gold class ids.
        hidden_shape: ``(B, T, H)`` of the hidden states.
        num_layers: number of encoder blocks ``L`` (layers ``0..L`` exist).
        params: the knobs.
        generator: source of the layer draw and the noise (any device; noise is drawn on the
            generator's device, then moved to ``clean_logits.device``).
        attention_mask: optional ``[B, T]``, 1 for real tokens, 0 for padding.
        dtype: dtype of ``delta`` given to ``logits_with_delta`` (the model's hidden dtype);
            default ``clean_logits.dtype``. The ascent itself runs in float32.

    Returns:
        `AliceLoss` with ``total``, ``label``, ``virtual``, ``layer`` and ``skipped``.
    """
    batch, seq, width = (int(d) for d in hidden_shape)
    if clean_logits.dim() != 2 or clean_logits.shape[0] != batch:
        raise ValueError(
            f"clean_logits {tuple(clean_logits.shape)} must be [B, C] with B={batch} from "
            f"hidden_shape {tuple(hidden_shape)}"
        )
    if attention_mask is not None and tuple(attention_mask.shape) != (batch, seq):
        raise ValueError(
            f"attention_mask {tuple(attention_mask.shape)} must be [B, T] = {(batch, seq)}"
        )
    device = clean_logits.device
    dtype = dtype or clean_logits.dtype
    layer = draw_layer(num_layers, params.max_layer, generator)

    mask = None
    if attention_mask is not None:
        mask = attention_mask.to(device=device, dtype=torch.float32).unsqueeze(-1)
    noise = torch.randn((batch, seq, width), generator=generator, device=generator.device,
                        dtype=torch.float32)
    delta = (noise * params.noise_var).to(device)
    if mask is not None:
        delta = delta * mask

    target = clean_logits.detach()
    skipped = False
    for _ in range(params.steps):
        delta = delta.detach().requires_grad_(True)
        perturbed = logits_with_delta(layer, delta.to(dtype))
        ascent = symmetric_kl(target, perturbed) * batch
        (grad,) = torch.autograd.grad(ascent, delta)
        if not bool(torch.isfinite(grad.float().norm())):
            log.warning("ALICE++: non-finite ascent gradient at layer %d; no perturbation", layer)
            skipped = True
            delta = torch.zeros_like(delta)
            break
        step = _direction(grad.float(), params.norm, params.epsilon) * params.step_size
        if mask is not None:
            step = step * mask
        delta = delta.detach() + step

    perturbed = logits_with_delta(layer, delta.detach().to(dtype))
    label = classification_loss(perturbed, labels)
    virtual = symmetric_kl(clean_logits, perturbed)
    if skipped:
        virtual = virtual * 0.0
    return AliceLoss(total=label + params.alpha * virtual, label=label, virtual=virtual,
                     layer=layer, skipped=skipped)


def gip_loss(mlm: Tensor | None, alice: Tensor | None, ce: Tensor | None,
             weights: tuple[float, float, float]) -> Tensor:
    """GuardFormer eq. 1: ``l1 * L_MLM + l2 * L_Alice++ + l3 * L_CE``.

    A term whose weight is 0 is left out of the sum (not multiplied by 0), so a NaN/inf in it
    cannot propagate; such a term may also be passed as None.

    Args:
        mlm, alice, ce: scalar losses (`mlm_loss`, ``AliceLoss.total``, `classification_loss`).
        weights: ``(l1, l2, l3)``, finite, ``>= 0``, at least one ``> 0``.

    Returns:
        The weighted sum (scalar).
    """
    if len(weights) != 3:
        raise ValueError(f"weights={weights!r}: need three (mlm, alice, ce)")
    if not all(math.isfinite(w) and w >= 0 for w in weights) or not any(w > 0 for w in weights):
        raise ValueError(f"weights={tuple(weights)!r}: must be finite, >= 0, one of them > 0")
    total = None
    for name, term, weight in zip(("mlm", "alice", "ce"), (mlm, alice, ce), weights):
        if weight == 0:
            continue
        if term is None:
            raise ValueError(f"gip_loss: the {name} term is None but its weight is {weight}")
        part = term * weight
        total = part if total is None else total + part
    return total
