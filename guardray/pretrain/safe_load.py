"""Loading DeepSpeed checkpoint files without running code from them.

DeepSpeed's `TorchCheckpointEngine` loads every ``*.pt`` file of a checkpoint with
``torch.load(weights_only=False)``: a full unpickle, so a ``__reduce__`` payload planted in
``mp_rank_00_model_states.pt`` runs on resume. Anyone who can write to the run's
``storage_path`` (which may be a shared ``s3://`` bucket) could run code on the cluster.

`secure_checkpoint_engine` replaces the engine's ``load`` with `load_weights_only`:
``torch.load(weights_only=True)`` (tensors, containers and primitives only) plus an explicit
allow-list of the few DeepSpeed types its checkpoints hold (`ALLOWED_GLOBALS`, read off the
ZeRO 0-3 fp32/bf16 checkpoints DeepSpeed 0.19 writes). A file that references anything else
is refused with `UnsafeCheckpointError` before any of it is rebuilt; the weights-only
unpickler never calls a callable outside the allow-list.
"""

from __future__ import annotations

import importlib
import logging
import pickle
from typing import Any

from guardray.errors import ModelError

log = logging.getLogger(__name__)

# Every global a DeepSpeed 0.19 checkpoint of a GIP run references, beyond what torch's
# weights-only unpickler allows by default (torch.serialization.get_unsafe_globals_in_checkpoint
# on ZeRO 0, 2 and 3 checkpoints, fp32 and bf16). They are plain data holders: an enum, a
# dataclass and loss-scaler state objects whose attributes are restored without calling code.
ALLOWED_GLOBALS: tuple[str, ...] = (
    "deepspeed.runtime.zero.config.ZeroStageEnum",
    "deepspeed.utils.tensor_fragment.fragment_address",
    "deepspeed.runtime.fp16.loss_scaler.LossScaler",
    "deepspeed.runtime.fp16.loss_scaler.DynamicLossScaler",
)


class UnsafeCheckpointError(ModelError):
    """A checkpoint file references code or types outside the allow-list; it was not loaded."""


def _resolve(ref: str) -> Any:
    module, _, name = ref.rpartition(".")
    return getattr(importlib.import_module(module), name)


def allowed_globals() -> list[Any]:
    """The objects of `ALLOWED_GLOBALS` (those the installed DeepSpeed has)."""
    out = []
    for ref in ALLOWED_GLOBALS:
        try:
            out.append(_resolve(ref))
        except (ImportError, AttributeError):  # another DeepSpeed version: nothing to allow
            log.debug("allow-listed checkpoint type %s is not in this DeepSpeed", ref)
    return out


def load_weights_only(path: str, map_location: Any = None) -> Any:
    """``torch.load(path, weights_only=True)`` with `ALLOWED_GLOBALS` allowed.

    Raises:
        UnsafeCheckpointError: the file references a global outside the allow-list (a planted
            payload, or a checkpoint written by other code); the message names the file.
    """
    import torch

    try:
        with torch.serialization.safe_globals(allowed_globals()):
            return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError:
        allowed = set(ALLOWED_GLOBALS)
        found = [g for g in torch.serialization.get_unsafe_globals_in_checkpoint(path)
                 if g not in allowed]  # reads the pickle's opcodes only, runs nothing
        raise UnsafeCheckpointError(
            f"{path}: refused to load this checkpoint file: it references "
            f"{', '.join(found) or 'objects'}, which a DeepSpeed checkpoint never holds; it "
            "may have been tampered with. "
            "Nothing from it was run. Delete this checkpoint folder to resume from an earlier "
            "one, or start the run again under a new run_name") from None


def secure_checkpoint_engine(engine) -> None:
    """Make ``engine.load_checkpoint`` read every file through `load_weights_only`.

    Args:
        engine: a ``deepspeed.DeepSpeedEngine``; its checkpoint engine must be DeepSpeed's
            default `TorchCheckpointEngine` (the others load with their own ``torch.load``).

    Raises:
        RuntimeError: another checkpoint engine is configured.
    """
    from deepspeed.runtime.checkpoint_engine import TorchCheckpointEngine

    ce = engine.checkpoint_engine
    if type(ce) is not TorchCheckpointEngine:
        raise RuntimeError(f"GIP resumes only with DeepSpeed's TorchCheckpointEngine, got "
                           f"{type(ce).__name__}: its loader is not known to be safe")
    ce.load = load_weights_only
