"""Merge methods as pure per-tensor functions.

Every function takes the tensors of one parameter (same name, same shape) from each input model
and returns the merged tensor. Nothing here reads files, talks to a network or knows about Ray;
randomness comes in as ``torch.Generator`` objects. Inputs are never modified unless a function
is called with ``consume=True``, which lets a caller that owns freshly loaded tensors (the
streaming executor) reuse their storage and keep its peak memory down.

Notation (uniguard appendix A.5 and safeguard-merging section 3 / appendix D):
``theta_init`` / ``theta_PRE`` is the base model, ``theta_t`` the fine-tuned models,
``tau_t = theta_t - theta_init`` their task vectors. All shapes below are "any shape ``S``";
every tensor passed together must have the same shape ``S``. The caller chooses the compute
dtype (the executor uses float32, or float64 for float64 inputs).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Literal

import torch

Rescale = bool | Literal["l1"]
SignVote = Literal["unweighted", "weighted"]

__all__ = [
    "dare_drop",
    "dare_linear",
    "dare_ties",
    "disjoint_merge",
    "elect_sign",
    "kth_largest",
    "lerp",
    "linear",
    "magnitude_trim",
    "model_stock",
    "slerp",
    "task_arithmetic",
    "ties",
]


# --------------------------------------------------------------------------- linear / soup


def linear(
    tensors: Sequence[torch.Tensor],
    weights: Sequence[float],
    *,
    normalize: bool = True,
    consume: bool = False,
) -> torch.Tensor:
    """Weighted average of parameters (Model Soup, uniguard eq. 4; safeguard eq. 3).

    ``theta = sum_i alpha_i theta_i``, with ``alpha_i = w_i / sum_j w_j`` when ``normalize``
    (eq. 4 requires ``sum alpha_i = 1``) or ``alpha_i = w_i`` otherwise.

    Args:
        tensors: N tensors of shape S.
        weights: N mixing weights.
        normalize: divide by the sum of the weights.
        consume: allow overwriting ``tensors`` in place.

    Returns:
        Tensor of shape S.

    Raises:
        ValueError: lengths differ, no tensors, or ``normalize`` with weights summing to ~0.
    """
    _check_lengths(tensors, weights=weights)
    total = float(sum(weights))
    if normalize and abs(total) < 1e-12:
        raise ValueError(f"linear: weights {list(weights)} sum to 0; cannot normalize them")
    scale = 1.0 / total if normalize else 1.0
    first = float(weights[0]) * scale
    if first == 1.0:  # weights [1, 0, ...] return the first model exactly
        out = tensors[0] if consume else tensors[0].clone()
    else:
        out = tensors[0].mul_(first) if consume else tensors[0] * first
    for tensor, weight in zip(tensors[1:], weights[1:]):
        if weight != 0:
            out.add_(tensor, alpha=float(weight) * scale)
    return out


# --------------------------------------------------------------------------- task arithmetic


def task_arithmetic(
    base: torch.Tensor,
    tensors: Sequence[torch.Tensor],
    weights: Sequence[float],
    *,
    lam: float = 1.0,
    normalize: bool = False,
    consume: bool = False,
) -> torch.Tensor:
    """Task arithmetic: ``theta = theta_init + lambda * sum_t w_t tau_t``.

    With unit weights this is uniguard eq. 6 without the DARE step. ``normalize`` divides the
    weighted sum by ``sum_t w_t`` (a weighted mean of the task vectors).

    Args:
        base: base tensor, shape S.
        tensors: N fine-tuned tensors, shape S.
        weights: N weights ``w_t``.
        lam: scaling factor lambda.
        normalize: divide by the sum of the weights (skipped when that sum is ~0).
        consume: allow overwriting ``tensors`` in place.

    Returns:
        Tensor of shape S.
    """
    _check_lengths(tensors, weights=weights)
    deltas = [_delta(t, base, consume) for t in tensors]
    mixed = _weighted_sum_into_first(deltas, weights)
    total = float(sum(weights))
    if normalize and abs(total) >= 1e-8:
        mixed.div_(total)
    return mixed.mul_(lam).add_(base)


# --------------------------------------------------------------------------- TIES


def kth_largest(values: torch.Tensor, k: int, *, absolute: bool = False) -> torch.Tensor:
    """The k-th largest entry (of ``|values|`` if ``absolute``) of a 1-D tensor, as a 0-d tensor.

    ``torch.kthvalue`` on a whole tensor is slow (~0.8 s for 28 M entries on 2 cores) and
    ``|values|`` would be a full-size copy. Instead a bracket around the answer is estimated from
    a strided sample, checked by counting (a chunk at a time, so no full-size temporary), and
    only the entries inside it are searched. The answer is always exact: if the bracket misses,
    the full ``kthvalue`` runs.

    Args:
        values: 1-D tensor of n entries.
        k: rank from the top, 1 <= k <= n.
        absolute: rank magnitudes instead of values.
    """
    n = values.numel()
    if not 1 <= k <= n:
        raise ValueError(f"k must be in [1, {n}], got {k}")
    f = torch.abs if absolute else (lambda x: x)
    if n <= 1 << 16:
        return torch.kthvalue(f(values), n - k + 1).values
    sample = f(values[:: max(2, n // (1 << 15))]).contiguous()
    m = sample.numel()
    # Ranks (from the top) in the sample that bracket rank k of the full tensor, with a margin
    # of a few standard deviations of the sampled rank.
    q = k / n
    margin = 6.0 * (q * (1 - q) * m) ** 0.5 + 16
    hi_rank = max(1, int(q * m - margin))  # few above -> a high value
    lo_rank = min(m, int(q * m + margin) + 1)  # many above -> a low value
    hi = torch.kthvalue(sample, m - hi_rank + 1).values
    lo = torch.kthvalue(sample, m - lo_rank + 1).values
    above = count = 0
    for start in range(0, n, _CHUNK):
        part = f(values[start : start + _CHUNK])
        above += int((part > hi).sum())
        count += int(((part >= lo) & (part <= hi)).sum())
    if above < k <= above + count:
        if bool(lo == hi):  # e.g. many exact zeros: every entry in the bracket is the answer
            return hi
        inside = []
        for start in range(0, n, _CHUNK):
            part = f(values[start : start + _CHUNK])
            inside.append(part[(part >= lo) & (part <= hi)])
        inside = torch.cat(inside)
        return torch.kthvalue(inside, count - (k - above) + 1).values
    return torch.kthvalue(f(values), n - k + 1).values


def magnitude_trim(
    delta: torch.Tensor, density: float, *, rescale: Rescale = False, consume: bool = False
) -> torch.Tensor:
    """Keep the ``density`` fraction of entries with the largest magnitude (TIES trim, eq. 2).

    ``topk(tau, k)`` of uniguard eq. 2 with ``k% = 100 * density``: exactly
    ``max(1, int(density * numel))`` entries survive (ties at the threshold are broken by
    position, first ones kept), the rest become 0. ``density >= 1`` keeps everything,
    ``density <= 0`` keeps nothing. Works a chunk at a time: no full-size temporaries.

    Args:
        delta: task vector, shape S.
        density: fraction of entries to keep, in [0, 1].
        rescale: ``True`` or ``"l1"``: scale the kept entries so the L1 norm is unchanged
            (MergeKit's ``rescale`` for magnitude pruning); ``False``: no rescaling (paper).
        consume: allow overwriting ``delta`` in place.

    Returns:
        Tensor of shape S.
    """
    if density >= 1 or delta.numel() == 0:
        return delta if consume else delta.clone()
    if density <= 0:
        return torch.zeros_like(delta)
    out = (delta if consume else delta.clone()).contiguous()  # so `flat` is a view of `out`
    flat = out.view(-1)
    n = flat.numel()
    k = max(1, int(density * n))
    threshold = kth_largest(flat, k, absolute=True)
    before = torch.linalg.vector_norm(flat, ord=1) if rescale else None
    # Entries equal to the threshold fill the places left after the larger ones, first ones
    # first. When the threshold is 0 those entries are zeros, and keeping them changes nothing.
    ties_left = 0
    if bool(threshold > 0):
        above = sum(
            int((flat[i : i + _CHUNK].abs() > threshold).sum()) for i in range(0, n, _CHUNK)
        )
        ties_left = k - above
    for start in range(0, n, _CHUNK):
        part = flat[start : start + _CHUNK]
        magnitude = part.abs()
        keep = magnitude > threshold
        if ties_left > 0:
            tied = torch.nonzero(magnitude == threshold).reshape(-1)[:ties_left]
            keep[tied] = True
            ties_left -= tied.numel()
        part.mul_(keep)
    if rescale:
        _l1_rescale(out, before)
    return out


def elect_sign(
    deltas: Sequence[torch.Tensor],
    weights: Sequence[float] | None = None,
    *,
    vote: SignVote = "unweighted",
) -> torch.Tensor:
    """Elect the sign of each entry by the sign of the sum (TIES, uniguard eq. 2).

    ``gamma_m = sgn(sum_t tau_hat_t)``. With ``vote="unweighted"`` (the paper) the trimmed task
    vectors are summed as they are and ``sgn(0) = 0``. With ``vote="weighted"`` (MergeKit) they
    are multiplied by their weights first and a zero sum elects ``+1``.

    Args:
        deltas: N trimmed task vectors, shape S.
        weights: N weights, used only by ``vote="weighted"``.
        vote: ``"unweighted"`` or ``"weighted"``.

    Returns:
        Tensor of shape S with entries in {-1, 0, 1}.
    """
    if vote not in ("unweighted", "weighted"):
        raise ValueError(f"sign_vote must be 'unweighted' or 'weighted', got {vote!r}")
    total = torch.zeros_like(deltas[0])
    for i, delta in enumerate(deltas):
        alpha = float(weights[i]) if (vote == "weighted" and weights is not None) else 1.0
        total.add_(delta, alpha=alpha)
    if vote == "weighted":
        return torch.where(total >= 0, 1.0, -1.0).to(total.dtype)
    return total.sign_()


def disjoint_merge(
    deltas: Sequence[torch.Tensor],
    weights: Sequence[float],
    sign: torch.Tensor,
    *,
    normalize: bool = True,
) -> torch.Tensor:
    """Combine the entries that agree with the elected sign (TIES disjoint merge, eq. 3).

    ``tau_m^p = sum_{t in A_p} w_t tau_hat_t^p / sum_{t in A_p} w_t`` with
    ``A_p = {t : sgn(tau_hat_t^p) = gamma_m^p}``: the weighted mean the uniguard appendix uses
    (equal weights give eq. 3's plain mean). Without ``normalize`` the weighted sum is returned.
    Where no model agrees the result is 0.

    Args:
        deltas: N trimmed task vectors, shape S.
        weights: N weights.
        sign: elected sign, shape S.
        normalize: divide by the summed weights of the agreeing models.

    Returns:
        Tensor of shape S.
    """
    _check_lengths(deltas, weights=weights)
    numerator = torch.zeros_like(deltas[0])
    divisor = torch.zeros_like(deltas[0]) if normalize else None
    for delta, weight in zip(deltas, weights):
        agree = delta.sign() == sign
        numerator.addcmul_(delta, agree, value=float(weight))
        if divisor is not None:
            divisor.add_(agree, alpha=float(weight))
    if divisor is None:
        return numerator
    divisor[divisor == 0] = 1
    return numerator.div_(divisor)


def ties(
    base: torch.Tensor,
    tensors: Sequence[torch.Tensor],
    weights: Sequence[float],
    densities: Sequence[float],
    *,
    lam: float = 1.0,
    normalize: bool = True,
    sign_vote: SignVote = "unweighted",
    rescale: Rescale = False,
    consume: bool = False,
) -> torch.Tensor:
    """TIES merging (uniguard eq. 1-3): trim, elect sign, disjoint merge, scale.

    ``theta = theta_init + lambda * tau_m``, ``tau_hat_t = topk(theta_t - theta_init, k)``,
    ``gamma_m = sgn(sum_t tau_hat_t)``, ``tau_m`` the (weighted) mean over agreeing entries.
    ``sign_vote="weighted"`` reproduces MergeKit, which weights the task vectors before the vote.

    Args:
        base: base tensor, shape S.
        tensors: N fine-tuned tensors, shape S.
        weights: N weights for the disjoint mean.
        densities: N trim densities (fraction kept, ``k% = 100 * density``).
        lam: lambda of eq. 1.
        normalize: weighted mean (True) or weighted sum (False) over the agreeing entries.
        sign_vote: ``"unweighted"`` (paper) or ``"weighted"`` (MergeKit).
        rescale: L1-rescale each trimmed task vector (MergeKit's option; off in the paper).
        consume: allow overwriting ``tensors`` in place.

    Returns:
        Tensor of shape S.
    """
    _check_lengths(tensors, weights=weights, densities=densities)
    trimmed = [
        magnitude_trim(_delta(t, base, consume), d, rescale=rescale, consume=True)
        for t, d in zip(tensors, densities)
    ]
    return _sign_merge(base, trimmed, weights, lam, normalize, sign_vote)


# --------------------------------------------------------------------------- DARE


def dare_drop(
    delta: torch.Tensor,
    drop_rate: float,
    generator: torch.Generator | None,
    *,
    rescale: Rescale = True,
    consume: bool = False,
) -> torch.Tensor:
    """Drop And REscale a task vector (uniguard eq. 5, without adding the base back).

    ``m ~ Bernoulli(1 - p)^d``, result ``m * delta / (1 - p)``. Each entry is kept when a
    uniform float32 draw from ``generator`` is below ``1 - p``, so the same generator state
    gives the same mask.

    Args:
        delta: task vector, shape S.
        drop_rate: p in [0, 1).
        generator: random source, on the device of ``delta`` (None: torch's global one).
        rescale: ``True``: divide by ``1 - p`` (eq. 5); ``"l1"``: match the L1 norm of the input
            (MergeKit 0.1.x); ``False``: no rescaling.
        consume: allow overwriting ``delta`` in place.

    Returns:
        Tensor of shape S; ``E[result] = delta`` with ``rescale=True``.
    """
    if not 0 <= drop_rate < 1:
        raise ValueError(f"DARE drop rate must be in [0, 1), got {drop_rate}")
    out = delta if consume else delta.clone()
    if drop_rate == 0 or delta.numel() == 0:
        return out
    keep_prob = 1.0 - drop_rate
    out = out.contiguous()
    flat = out.view(-1)
    before = torch.linalg.vector_norm(flat, ord=1) if rescale == "l1" else None
    # Draws come a chunk at a time (no full-size temporary); on CPU the stream is the same as
    # one draw of the whole tensor, entry j decided by the j-th uniform number.
    for start in range(0, flat.numel(), _CHUNK):
        part = flat[start : start + _CHUNK]
        part.mul_(torch.rand(part.shape, generator=generator, device=part.device) < keep_prob)
    if rescale == "l1":
        _l1_rescale(out, before)
    elif rescale:
        out.div_(keep_prob)
    return out


def dare_linear(
    base: torch.Tensor,
    tensors: Sequence[torch.Tensor],
    weights: Sequence[float],
    drop_rates: Sequence[float],
    generators: Sequence[torch.Generator | None],
    *,
    lam: float = 1.0,
    normalize: bool = False,
    rescale: Rescale = True,
    consume: bool = False,
) -> torch.Tensor:
    """DARE then task arithmetic (uniguard eq. 6): ``theta_PRE + lambda sum_k w_k DARE(tau_k)``.

    Args:
        base: base tensor, shape S.
        tensors: N fine-tuned tensors, shape S.
        weights: N weights (eq. 6 uses 1).
        drop_rates: N drop rates p.
        generators: N random sources, one per model.
        lam: lambda.
        normalize: divide the weighted sum by the sum of the weights.
        rescale: see `dare_drop`.
        consume: allow overwriting ``tensors`` in place.

    Returns:
        Tensor of shape S.
    """
    _check_lengths(tensors, weights=weights, drop_rates=drop_rates, generators=generators)
    dropped = [
        dare_drop(_delta(t, base, consume), p, g, rescale=rescale, consume=True)
        for t, p, g in zip(tensors, drop_rates, generators)
    ]
    mixed = _weighted_sum_into_first(dropped, weights)
    total = float(sum(weights))
    if normalize and abs(total) >= 1e-8:
        mixed.div_(total)
    return mixed.mul_(lam).add_(base)


def dare_ties(
    base: torch.Tensor,
    tensors: Sequence[torch.Tensor],
    weights: Sequence[float],
    drop_rates: Sequence[float],
    generators: Sequence[torch.Generator | None],
    *,
    lam: float = 1.0,
    normalize: bool = False,
    sign_vote: SignVote = "unweighted",
    rescale: Rescale = True,
    consume: bool = False,
) -> torch.Tensor:
    """DARE in place of the TIES trim, then sign election and disjoint merge (eq. 2-3, 5).

    Args:
        base: base tensor, shape S.
        tensors: N fine-tuned tensors, shape S.
        weights: N weights.
        drop_rates: N drop rates p.
        generators: N random sources, one per model.
        lam: lambda.
        normalize: weighted mean (True) or weighted sum (False, MergeKit's default for
            ``dare_ties``) over the agreeing entries.
        sign_vote: ``"unweighted"`` (paper) or ``"weighted"`` (MergeKit).
        rescale: see `dare_drop`.
        consume: allow overwriting ``tensors`` in place.

    Returns:
        Tensor of shape S.
    """
    _check_lengths(tensors, weights=weights, drop_rates=drop_rates, generators=generators)
    dropped = [
        dare_drop(_delta(t, base, consume), p, g, rescale=rescale, consume=True)
        for t, p, g in zip(tensors, drop_rates, generators)
    ]
    return _sign_merge(base, dropped, weights, lam, normalize, sign_vote)


# --------------------------------------------------------------------------- SLERP


def lerp(v0: torch.Tensor, v1: torch.Tensor, t: float) -> torch.Tensor:
    """Linear interpolation ``(1 - t) v0 + t v1`` (safeguard eq. 3 with two models)."""
    return torch.lerp(v0, v1, float(t))


def slerp(
    v0: torch.Tensor,
    v1: torch.Tensor,
    t: float,
    *,
    dot_threshold: float = 0.9995,
    eps: float = 1e-8,
) -> torch.Tensor:
    """Spherical linear interpolation of two whole tensors (uniguard eq. 7).

    ``SLERP(v0, v1, t) = sin((1-t) w)/sin(w) v0 + sin(t w)/sin(w) v1`` with
    ``w = arccos(v0 . v1 / (|v0| |v1|))``, the tensors flattened to vectors. When the vectors are
    nearly collinear, ``|cos w| > dot_threshold``, ``sin(w) -> 0`` makes eq. 7 unstable, so
    linear interpolation is used instead (as MergeKit does; the appendix's sentence on the
    threshold states the condition the other way round).

    Args:
        v0: tensor returned at ``t = 0`` (the base model), shape S.
        v1: tensor returned at ``t = 1``, shape S.
        t: interpolation parameter in [0, 1].
        dot_threshold: collinearity threshold on ``|cos w|``.
        eps: norms below this are treated as 1 (zero vectors).

    Returns:
        Tensor of shape S.
    """
    if v0.shape != v1.shape:
        raise ValueError(f"slerp: shapes differ: {tuple(v0.shape)} vs {tuple(v1.shape)}")
    a = v0.reshape(-1)
    b = v1.reshape(-1)
    norm_a = math.sqrt(_dot64(a, a))
    norm_b = math.sqrt(_dot64(b, b))
    norm_a = norm_a if norm_a > eps else 1.0
    norm_b = norm_b if norm_b > eps else 1.0
    cos = max(-1.0, min(1.0, _dot64(a, b) / (norm_a * norm_b)))
    if abs(cos) > dot_threshold:
        return lerp(v0, v1, t)
    omega = math.acos(cos)
    sin_omega = math.sin(omega)
    c0 = math.sin((1 - t) * omega) / sin_omega
    c1 = math.sin(t * omega) / sin_omega
    return (v0 * c0).add_(v1, alpha=c1)


# --------------------------------------------------------------------------- Model Stock


def model_stock(
    base: torch.Tensor,
    tensors: Sequence[torch.Tensor],
    *,
    filter_wise: bool = False,
    eps: float = 1e-6,
) -> torch.Tensor:
    """Model Stock (Jang et al. 2024; safeguard appendix D.1).

    ``cos`` is the mean pairwise cosine between the task vectors ``theta_i - theta_0`` (over the
    whole tensor, or per row with ``filter_wise``); ``t = N cos / (1 + (N - 1) cos)``; the result
    is ``t * mean_i(theta_i) + (1 - t) * theta_0``. ``cos`` is clamped to [0, 1], so ``t`` lies
    in [0, 1]: for opposing task vectors the formula would extrapolate (or divide by zero at
    ``cos = -1/(N-1)``), and the base is the safe answer there.

    Args:
        base: base tensor theta_0, shape S.
        tensors: N >= 2 fine-tuned tensors, shape S.
        filter_wise: one ``t`` per row (first dimension) instead of one per tensor.
        eps: lower bound for the norm products.

    Returns:
        Tensor of shape S.
    """
    if len(tensors) < 2:
        raise ValueError(f"model_stock needs at least 2 fine-tuned tensors, got {len(tensors)}")
    shape = base.shape
    rows = filter_wise and base.dim() >= 1
    view = (lambda x: x.reshape(shape[0], -1)) if rows else (lambda x: x.reshape(1, -1))
    offsets = [view(t) - view(base) for t in tensors]
    norms = [torch.linalg.vector_norm(o, dim=-1) for o in offsets]
    cosines = []
    for i in range(len(offsets)):
        for j in range(i + 1, len(offsets)):
            dot = (offsets[i] * offsets[j]).sum(dim=-1)
            cosines.append((dot / (norms[i] * norms[j]).clamp(min=eps)).clamp(-1, 1))
    del offsets
    cos = torch.stack(cosines).mean(dim=0).clamp(0, 1).unsqueeze(-1)
    n = len(tensors)
    t = (n * cos) / (1 + (n - 1) * cos)
    mean = torch.zeros_like(view(base))
    for tensor in tensors:
        mean.add_(view(tensor), alpha=1.0 / n)
    return (mean * t).add_(view(base) * (1 - t)).reshape(shape)


# --------------------------------------------------------------------------- helpers


# Entries per chunk of the elementwise passes: 4 MiB of float32 temporaries per buffer.
_CHUNK = 1 << 20


def _weighted_sum_into_first(deltas: list[torch.Tensor], weights: Sequence[float]) -> torch.Tensor:
    """``sum_i w_i deltas[i]``, accumulated in ``deltas[0]``'s storage (the deltas are owned)."""
    out = deltas[0].mul_(float(weights[0]))
    for delta, weight in zip(deltas[1:], weights[1:]):
        out.add_(delta, alpha=float(weight))
    return out


def _sign_merge(base, deltas, weights, lam, normalize, sign_vote) -> torch.Tensor:
    """Sign election + disjoint merge + ``base + lambda * tau_m``, a chunk of entries at a time.

    Every step is elementwise, so chunking changes no value; it keeps the temporaries (sign,
    numerator, divisor, masks) to a chunk, and the result is written into ``deltas[0]`` (owned by
    the caller, and no longer needed once its chunk is read).
    """
    flat = [d.reshape(-1) for d in deltas]
    flat_base = base.reshape(-1)
    out = flat[0]
    for start in range(0, flat_base.numel(), _CHUNK):
        part = [d[start : start + _CHUNK] for d in flat]
        sign = elect_sign(part, weights, vote=sign_vote)
        mixed = disjoint_merge(part, weights, sign, normalize=normalize)
        torch.add(
            flat_base[start : start + _CHUNK], mixed, alpha=lam, out=out[start : start + _CHUNK]
        )
    return out.reshape(base.shape)


def _delta(tensor: torch.Tensor, base: torch.Tensor, consume: bool) -> torch.Tensor:
    """``tensor - base``, reusing ``tensor``'s storage when the caller allows it."""
    if tensor.shape != base.shape:
        raise ValueError(f"shape {tuple(tensor.shape)} differs from base {tuple(base.shape)}")
    return tensor.sub_(base) if consume else tensor - base


def _dot64(a: torch.Tensor, b: torch.Tensor, chunk: int = 1 << 20) -> float:
    """Dot product of two 1-D tensors accumulated in float64, a chunk at a time (no full copy)."""
    total = 0.0
    for start in range(0, a.numel(), chunk):
        total += float(
            torch.dot(a[start : start + chunk].double(), b[start : start + chunk].double())
        )
    return total


def _l1_rescale(out: torch.Tensor, before: torch.Tensor, eps: float = 1e-7) -> None:
    after = out.abs().sum()
    if float(before) >= eps and float(after) >= eps:
        out.mul_(before / after)


def _check_lengths(tensors: Sequence[torch.Tensor], **others: Sequence) -> None:
    if len(tensors) == 0:
        raise ValueError("no tensors to merge")
    for name, values in others.items():
        if len(values) != len(tensors):
            raise ValueError(f"got {len(tensors)} tensors but {len(values)} {name}")
