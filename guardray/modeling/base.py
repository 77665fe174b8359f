"""Resolving a model reference (``model.base`` of the training stages) to a folder or hub id."""

from __future__ import annotations

import os

TINY_PREFIX = "tiny:"


def resolve_base(ref: str) -> str:
    """A local folder (or hub id) for ``model.base``, on the node that calls it.

    ``embedded:NAME`` resolves to the packaged offline model; ``tiny:xlmr`` builds (once, in
    guardray's cache) a tiny random XLM-R classifier with a real tokenizer, ``tiny:llama-chat``
    a tiny random Llama chat model (ChatML template); ``s3://...`` is
    copied once into this node's cache (`guardray.modeling.remote.localize`); a relative path
    becomes absolute (trials run in their own working directory); anything else is a hub id.
    """
    if ref.startswith(TINY_PREFIX):
        return str(_tiny_base(ref[len(TINY_PREFIX):]))
    if ref.startswith("embedded:"):
        from guardray.modeling.offline import resolve_model

        return resolve_model(ref)
    from guardray.modeling.remote import is_remote, localize

    if is_remote(ref):
        return str(localize(ref, field="model.base"))
    if os.path.exists(ref):
        return os.path.abspath(ref)
    return ref


def portable_ref(ref: str) -> str:
    """``ref`` as a Ray worker on any node resolves it (`resolve_base` there): node-local
    forms (``tiny:``, ``embedded:``, ``s3://``, hub ids) stay as they are, so each node builds
    or fetches its own copy; a local path becomes absolute (it must be on a filesystem every
    node shares)."""
    if os.path.exists(ref) and not ref.startswith((TINY_PREFIX, "embedded:")):
        return os.path.abspath(ref)
    return ref


def _tiny_base(kind: str):
    from guardray.io.folders import build_once
    from guardray.modeling.offline import cache_dir
    from guardray.modeling.tiny import build_tiny_chat_lm, build_tiny_xlmr

    if kind == "llama-chat":
        return build_once(cache_dir() / "models" / "tiny-llama-chat", build_tiny_chat_lm)
    if kind != "xlmr":
        raise ValueError(f"unknown tiny model {kind!r}; valid: tiny:xlmr, tiny:llama-chat")
    return build_once(cache_dir() / "models" / "tiny-xlmr-classifier",
                      lambda tmp: build_tiny_xlmr(tmp, task="sequence-classification", seed=0))
