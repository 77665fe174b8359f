"""Small pieces every torch training or merging loop needs: the device, AdamW's groups.

- `resolve_device`: ``cpu``, ``cuda``, ``cuda:N`` or ``auto`` as a ``torch.device``, with a
  clear error when a GPU is asked for and torch sees none.
- `param_groups`: AdamW parameter groups without weight decay on biases, norms and other 1-d
  tensors; a tied tensor (an MLM decoder sharing the input embeddings) appears once.
"""

from __future__ import annotations

from typing import Any

from guardray.errors import ConfigError


class DeviceError(ConfigError):
    """A device the machine does not have was asked for."""


def resolve_device(name: str, *, field: str = "device"):
    """``cpu``, ``cuda``, ``cuda:N`` or ``auto`` (a GPU if torch sees one) as a ``torch.device``.

    Raises:
        DeviceError: a CUDA device was asked for and torch sees no CUDA GPU (``field`` names
            the config field in the message).
    """
    import torch

    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise DeviceError(f"{field}: {name!r} was requested but torch sees no CUDA GPU; "
                          "use cpu or auto")
    return device


def param_groups(model, weight_decay: float) -> list[dict[str, Any]]:
    """AdamW groups: no weight decay on biases, LayerNorm weights and other 1-d tensors.

    Only trainable parameters are listed, each once (tied weights share one tensor). Empty
    groups are left out.
    """
    decay, no_decay, seen = [], [], set()
    for name, p in model.named_parameters():
        if not p.requires_grad or id(p) in seen:
            continue
        seen.add(id(p))
        exempt = p.ndim < 2 or "LayerNorm" in name or "layer_norm" in name or name.endswith(".bias")
        (no_decay if exempt else decay).append(p)
    return [g for g in ({"params": decay, "weight_decay": weight_decay},
                        {"params": no_decay, "weight_decay": 0.0}) if g["params"]]
