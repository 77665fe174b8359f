"""Resolving a model reference (``model.base`` of the training stages) to a folder or hub id."""

from __future__ import annotations

import os

TINY_PREFIX = "tiny:"


def resolve_base(ref: str) -> str:
    """A local folder (or hub id) for ``model.base``.

    ``embedded:NAME`` resolves to the packaged offline model; ``tiny:xlmr`` builds (once, in
    guardray's cache) a tiny random XLM-R classifier with a real tokenizer; a relative path
    becomes absolute (trials run in their own working directory); anything else is a hub id.
    """
    if ref.startswith(TINY_PREFIX):
        return str(_tiny_base(ref[len(TINY_PREFIX):]))
    if ref.startswith("embedded:"):
        from guardray.modeling.offline import resolve_model

        return resolve_model(ref)
    if os.path.exists(ref):
        return os.path.abspath(ref)
    return ref


def _tiny_base(kind: str):
    from guardray.io.folders import build_once
    from guardray.modeling.offline import cache_dir
    from guardray.modeling.tiny import build_tiny_xlmr

    if kind != "xlmr":
        raise ValueError(f"unknown tiny model {kind!r}; valid: tiny:xlmr")
    return build_once(cache_dir() / "models" / "tiny-xlmr-classifier",
                      lambda tmp: build_tiny_xlmr(tmp, task="sequence-classification", seed=0))
