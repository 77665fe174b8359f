"""Helpers for the merge tests (the tiny models themselves come from guardray.modeling.tiny)."""

from __future__ import annotations

from pathlib import Path

from guardray.modeling.tiny import build_llama_family, build_xlmr_family  # noqa: F401


def load_state_dict(folder: Path) -> dict:
    """All tensors of a safetensors folder, read with the safetensors library itself."""
    import json

    from safetensors.torch import load_file

    index = folder / "model.safetensors.index.json"
    if index.is_file():
        files = sorted(set(json.loads(index.read_text())["weight_map"].values()))
    else:
        files = ["model.safetensors"]
    out = {}
    for f in files:
        out.update(load_file(str(folder / f)))
    return out
