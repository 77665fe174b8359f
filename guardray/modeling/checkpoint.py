"""Guard classifier checkpoints: loading a two-label classifier, and writing one atomically.

A guardray checkpoint is a Hugging Face folder (safetensors + config + tokenizer) that
``AutoModelForSequenceClassification.from_pretrained`` and ``pipeline("text-classification")``
load, with ``id2label`` ``{0: "safe", 1: "unsafe"}`` and a `MODEL_CARD` JSON beside it (the
decision threshold chosen on validation rows, the policies, the input format, metrics).
"""

from __future__ import annotations

import json
import os
import tempfile
from typing import Any

from guardray.io.folders import atomic_folder
from guardray.metrics.binary import nan_to_none

MODEL_CARD = "guardray_model.json"
ID2LABEL = {0: "safe", 1: "unsafe"}
LABEL2ID = {"safe": 0, "unsafe": 1}


def load_classifier(path: str, *, trust_remote_code: bool = False):
    """Load a sequence classifier with two labels (safe/unsafe) and its tokenizer.

    Only safetensors weights are loaded. A checkpoint without a 2-way head (a plain encoder,
    or an MLM checkpoint) gets a freshly initialised one.
    """
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(path, trust_remote_code=trust_remote_code)
    model = AutoModelForSequenceClassification.from_pretrained(
        path, num_labels=2, id2label=ID2LABEL, label2id=LABEL2ID, use_safetensors=True,
        trust_remote_code=trust_remote_code, ignore_mismatched_sizes=True)
    model.config.problem_type = "single_label_classification"
    return model, tokenizer


def save_checkpoint(model, tokenizer, target: str, card: dict[str, Any], *,
                    overwrite: bool = False, storage_options: dict[str, Any] | None = None) -> str:
    """Write an HF checkpoint (safetensors + config + tokenizer + `MODEL_CARD`) atomically.

    Locally the files go to a hidden temporary folder next to ``target`` that is renamed into place
    (`guardray.io.folders.atomic_folder`), so readers see the whole checkpoint or none. On S3 the
    files are uploaded with the model card last (its presence marks a complete upload).

    Args:
        model, tokenizer: what to save.
        target: destination folder (local or ``s3://``).
        card: JSON-able metadata written as `MODEL_CARD`.
        overwrite: replace an existing checkpoint.
        storage_options: S3 settings.

    Returns:
        The destination location.

    Raises:
        FileExistsError: ``target`` exists and ``overwrite`` is false.
    """
    from guardray.io import uris

    loc = uris.parse_uri(target)
    if not overwrite and uris.exists(loc.uri, storage_options):
        raise FileExistsError(f"{loc.uri} already exists; set overwrite=true to replace it")
    model.config.id2label, model.config.label2id = dict(ID2LABEL), dict(LABEL2ID)
    if loc.is_s3:
        with tempfile.TemporaryDirectory(prefix="guardray-ckpt-") as tmp:
            _write_folder(model, tokenizer, tmp, card=None)
            fs, path = uris.get_fsspec_filesystem(loc.uri, storage_options)
            fs.put(tmp.rstrip("/") + "/", path.rstrip("/") + "/", recursive=True)
        uris.write_json_atomic(uris.join_uri(loc.uri, MODEL_CARD), nan_to_none(card),
                               storage_options)
        return loc.uri
    with atomic_folder(loc.path, overwrite=True) as tmp:
        _write_folder(model, tokenizer, str(tmp), card)
    return loc.uri


def _write_folder(model, tokenizer, folder: str, card: dict[str, Any] | None) -> None:
    os.makedirs(folder, exist_ok=True)
    model.save_pretrained(folder, safe_serialization=True)
    tokenizer.save_pretrained(folder)
    if card is not None:
        with open(os.path.join(folder, MODEL_CARD), "w", encoding="utf-8") as fh:
            json.dump(nan_to_none(card), fh, indent=2, sort_keys=True, allow_nan=False,
                      default=str)


def read_model_card(model_dir: str, storage_options: dict[str, Any] | None = None) -> dict:
    """The `MODEL_CARD` of a guardray checkpoint, or {} for other checkpoints."""
    from guardray.io import uris

    target = uris.join_uri(model_dir, MODEL_CARD)
    if not uris.exists(target, storage_options):
        return {}
    return uris.read_json(target, storage_options)


def card_policy_thresholds(card: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """``threshold.per_policy`` of a model card: ``{policy id: threshold choice}`` with a
    numeric ``threshold`` in each (a UniGuard searched with ``objective.threshold_scope:
    policy``); {} for a card with one threshold for every policy."""
    t = card.get("threshold")
    per = t.get("per_policy") if isinstance(t, dict) else None
    return {str(pid): v for pid, v in (per or {}).items()
            if isinstance(v, dict) and v.get("threshold") is not None}
