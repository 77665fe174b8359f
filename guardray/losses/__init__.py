"""Training losses: GuardFormer's GIP objective (MLM + ALICE++ + CE, eq. 1).

Modules:
    gip: `mlm_loss`, `classification_loss`, `symmetric_kl`, `alice_pp_loss` (with
        `AliceParams` / `AliceLoss`) and `gip_loss`. Pure torch.
"""

from guardray.losses.gip import (
    IGNORE_INDEX,
    AliceLoss,
    AliceParams,
    alice_pp_loss,
    classification_loss,
    draw_layer,
    gip_loss,
    mlm_loss,
    symmetric_kl,
)

__all__ = [
    "IGNORE_INDEX",
    "AliceLoss",
    "AliceParams",
    "alice_pp_loss",
    "classification_loss",
    "draw_layer",
    "gip_loss",
    "mlm_loss",
    "symmetric_kl",
]
