"""One GIP micro-batch: forward passes and eq. 1 (GuardFormer 3.3), and the optimizer's groups.

`gip_step` runs on the DeepSpeed engine in the Ray Train worker (`guardray.pretrain.loop`)
and on a bare `GIPModel` in the benchmark (same call signature); it does no backward.
"""

from __future__ import annotations

import hashlib
from typing import Any


def gip_step(engine, batch: dict, *, weights: tuple[float, float, float], alice_params,
             num_layers: int, hidden_size: int, generator) -> dict[str, Any]:
    """Forward passes and eq. 1 for one micro-batch (no backward).

    Args:
        engine: the DeepSpeed engine (or the bare `GIPModel`: same call signature); its
            ``module`` (when it has one) runs ALICE++'s perturbed passes.
        batch: a `guardray.pretrain.data.collate_batch` dict on the model's device.
        weights: ``(l1, l2, l3)``; a zero weight skips its forward passes.
        alice_params: `guardray.pretrain.losses.AliceParams`.
        num_layers, hidden_size: of the encoder (ALICE++'s layer range and delta shape).
        generator: torch.Generator for ALICE++'s noise and layer draw.

    Returns:
        ``{"loss": tensor, "mlm", "alice", "alice_label", "alice_virtual", "ce", "accuracy":
        floats, "layer": int or -1}``.
    """
    import torch

    from guardray.pretrain.losses import (
        IGNORE_INDEX,
        alice_pp_loss,
        classification_loss,
        gip_loss,
        mlm_loss,
    )

    l1, l2, l3 = weights
    ids, mask, labels = batch["input_ids"], batch["attention_mask"], batch["labels"]
    # ALICE++'s perturbed passes call the wrapped module, not the engine: DeepSpeed hooks the
    # engine's outputs so that any backward through them (here ALICE++'s inner
    # autograd.grad w.r.t. delta) counts as *the* backward and triggers the gradient
    # reduction. The module's own ZeRO-3 gather hooks still run; the final
    # engine.backward(loss) reaches these passes' parameters like any other.
    module = getattr(engine, "module", engine)
    out: dict[str, Any] = {"layer": -1}
    clean = engine(input_ids=ids, attention_mask=mask, head="cls")
    ce = classification_loss(clean, labels)
    zero = ce.detach() * 0.0
    if l2 > 0:
        def logits_with_delta(layer: int, delta):
            return module(input_ids=ids, attention_mask=mask, head="cls", perturb=(layer, delta))

        a = alice_pp_loss(logits_with_delta, clean, labels,
                          (int(ids.shape[0]), int(ids.shape[1]), hidden_size), num_layers,
                          alice_params, generator, attention_mask=mask)
        alice, out["layer"] = a.total, int(a.layer)
        out["alice_label"] = float(a.label.detach())
        out["alice_virtual"] = float(a.virtual.detach())
    else:
        alice = zero
        out["alice_label"] = out["alice_virtual"] = 0.0
    if l1 > 0:
        # MLM logits only at the masked positions ([M, V], not [B, T, V]): same loss
        masked = batch["mlm_labels"] != IGNORE_INDEX
        mlm_logits = engine(input_ids=batch["mlm_input_ids"], attention_mask=mask, head="mlm",
                            mlm_positions=masked)
        mlm = mlm_loss(mlm_logits, batch["mlm_labels"][masked])
    else:
        mlm = zero
    loss = gip_loss(mlm, alice, ce, weights)
    with torch.no_grad():
        acc = (clean.argmax(dim=-1) == labels).float().mean()
    out.update(loss=loss, mlm=float(mlm.detach()), alice=float(alice.detach()),
               ce=float(ce.detach()), accuracy=float(acc))
    return out


def mix_seed(*parts: int) -> int:
    """A 63-bit seed from integers (stable across processes, unlike ``hash``)."""
    digest = hashlib.blake2b(",".join(map(str, parts)).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") >> 1
