"""Is this a model guardray can load? Checked in the driver, before Ray starts.

Every stage loads its encoder the same way: ``AutoConfig``, ``AutoTokenizer`` and
``AutoModelForSequenceClassification.from_pretrained(..., use_safetensors=True)`` with
``trust_remote_code`` off unless configured. `check_model` checks what those calls need, in
seconds, so that ``guardray evaluate --model <not a model>`` (or a bad ``model.base`` of
pretrain / fine-tune) ends with one line naming the folder instead of failing inside a Ray
actor 20 s later with hundreds of traceback lines ending in "install sentencepiece":

- a local folder: it exists and is a folder; ``config.json`` is JSON; the weights are
  safetensors (a folder with only pickle files, ``pytorch_model.bin`` / ``*.pt``, is refused:
  unpickling can run code); a sharded index lists files that exist; a model whose
  ``config.json`` maps to its own code (``auto_map`` with a ``model_type`` transformers does
  not know) is refused unless ``trust_remote_code`` is set, before transformers is asked
  (which would prompt on a terminal or raise a multi-line error);
- any reference (folder or hub id): ``AutoConfig`` loads it, and the tokenizer loads
  (``tokenizer=True``), without weights.

No model weights are read, and no code from the folder runs.
"""

from __future__ import annotations

import json
import os
from typing import Any

from guardray.errors import ModelError

CONFIG = "config.json"
SAFETENSORS_INDEX = "model.safetensors.index.json"
# Weight files loaded with pickle (torch.load / pickle.load); never loaded by guardray.
PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl", ".pickle")
# Files a Hugging Face tokenizer may consist of (any one of them may be enough).
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "vocab.txt", "vocab.json",
                   "spiece.model", "sentencepiece.bpe.model", "tokenizer.model", "merges.txt")


def _flat(exc: BaseException, limit: int = 300) -> str:
    """An exception's message on one line (transformers' span several), at most ``limit``."""
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if len(text) <= limit else text[:limit] + "..."


def is_local_ref(ref: str) -> bool:
    """True when ``ref`` names a local path rather than a hub id: it exists, or it is
    absolute, starts with ``.`` or ``~``, or has more than one ``/`` (hub ids are
    ``name`` or ``org/name``)."""
    return (os.path.exists(ref) or os.path.isabs(ref) or ref.startswith((".", "~"))
            or ref.count("/") > 1)


def check_model(ref: str, *, trust_remote_code: bool = False, field: str = "model",
                trust_field: str = "trust_remote_code", tokenizer: bool = True) -> Any:
    """Check that the model at ``ref`` loads the way guardray loads models (see the module
    docstring); return its transformers config.

    Args:
        ref: a local folder or a hub id (resolved: no ``tiny:`` / ``embedded:`` prefix).
        trust_remote_code: whether the job allows code from the model folder.
        field: the config field or flag that named the model (starts the message).
        trust_field: the setting that allows remote code (named in the message).
        tokenizer: also load the tokenizer.

    Raises:
        ModelError: one line naming ``field``, the model and what is wrong.
    """
    from guardray.modeling.remote import is_remote, localize

    if is_remote(ref):  # checked as the copy every node loads
        ref = str(localize(ref, field=field))
    if is_local_ref(ref):
        check_model_folder(ref, trust_remote_code=trust_remote_code, field=field,
                           trust_field=trust_field)
    from transformers import AutoConfig

    where = "" if is_local_ref(ref) else " (not a local folder, so a hub id)"
    try:
        config = AutoConfig.from_pretrained(ref, trust_remote_code=trust_remote_code)
    except (OSError, ValueError, KeyError, ImportError) as exc:
        raise ModelError(f"{field}: {ref}{where}: not a loadable model config: {_flat(exc)}"
                         ) from None
    if tokenizer:
        from transformers import AutoTokenizer

        try:
            AutoTokenizer.from_pretrained(ref, trust_remote_code=trust_remote_code)
        except (OSError, ValueError, KeyError, ImportError, TypeError) as exc:
            raise ModelError(f"{field}: {ref}{where}: its tokenizer does not load: {_flat(exc)}"
                             ) from None
    return config


def check_model_folder(folder: str, *, trust_remote_code: bool = False, field: str = "model",
                       trust_field: str = "trust_remote_code") -> dict[str, Any]:
    """The file checks of `check_model` for a local folder; returns its ``config.json``.

    Raises:
        ModelError: missing folder, a file, no or bad ``config.json``, remote code without
            ``trust_remote_code``, pickle-only or missing weights, missing shards, no
            tokenizer files.
    """
    path = os.path.expanduser(folder)
    if not os.path.exists(path):
        raise ModelError(f"{field}: {folder}: no such folder")
    if not os.path.isdir(path):
        raise ModelError(f"{field}: {folder} is a file, not a model folder")
    names = set(os.listdir(path))
    if CONFIG not in names:
        raise ModelError(f"{field}: {folder} is not a Hugging Face model folder (no {CONFIG})")
    try:
        with open(os.path.join(path, CONFIG), encoding="utf-8") as fh:
            config = json.load(fh)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ModelError(f"{field}: {folder}/{CONFIG} is not readable JSON: {_flat(exc)}"
                         ) from None
    if not isinstance(config, dict):
        raise ModelError(f"{field}: {folder}/{CONFIG} is not a JSON object")
    _check_remote_code(folder, config, trust_remote_code, field, trust_field)
    _check_weights(folder, path, names, field)
    if not names & set(TOKENIZER_FILES):
        raise ModelError(f"{field}: {folder} has no tokenizer files (one of "
                         f"{', '.join(TOKENIZER_FILES[:3])}...); save the tokenizer with the "
                         "model")
    return config


def _check_remote_code(folder: str, config: dict, trust: bool, field: str,
                       trust_field: str) -> None:
    if trust or not config.get("auto_map"):
        return
    from transformers.models.auto.configuration_auto import CONFIG_MAPPING_NAMES

    model_type = config.get("model_type")
    if model_type in CONFIG_MAPPING_NAMES:
        return  # transformers has the classes: the folder's own code is not needed
    modules = sorted({str(v).split(".")[0] for v in _flatten(config["auto_map"])})
    raise ModelError(
        f"{field}: {folder} needs its own model code ({CONFIG} auto_map -> "
        f"{', '.join(m + '.py' for m in modules)}; model_type {model_type!r} is not a "
        f"transformers model), and guardray runs no code from a checkpoint unless "
        f"{trust_field}=true: set it only for a model whose code you trust")


def _flatten(value: Any) -> list[str]:
    if isinstance(value, dict):
        return [x for v in value.values() for x in _flatten(v)]
    if isinstance(value, (list, tuple)):
        return [x for v in value for x in _flatten(v)]
    return [str(value).split("--")[-1]] if value else []


def _check_weights(folder: str, path: str, names: set[str], field: str) -> None:
    if SAFETENSORS_INDEX in names:
        try:
            with open(os.path.join(path, SAFETENSORS_INDEX), encoding="utf-8") as fh:
                shards = sorted(set(json.load(fh)["weight_map"].values()))
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
            raise ModelError(f"{field}: {folder}/{SAFETENSORS_INDEX} is not a safetensors "
                             f"index: {_flat(exc)}") from None
        missing = [s for s in shards if s not in names]
        if missing:
            raise ModelError(f"{field}: {folder}/{SAFETENSORS_INDEX} lists missing shard(s) "
                             f"{missing[:3]}")
        return
    if any(n.endswith(".safetensors") for n in names):
        return
    pickles = sorted(n for n in names if n.endswith(PICKLE_SUFFIXES))
    if pickles:
        raise ModelError(
            f"{field}: {folder} holds only pickle weights ({', '.join(pickles[:3])}); guardray "
            "loads safetensors only, because unpickling can run code: convert the model "
            "(save_pretrained(..., safe_serialization=True)) where you trust the file")
    raise ModelError(f"{field}: {folder} has no weights (*.safetensors)")
