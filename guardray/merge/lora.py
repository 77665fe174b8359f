"""LoRA adapters (PEFT's on-disk format) merged into their base, one tensor at a time.

An adapter folder holds ``adapter_config.json`` and ``adapter_model.safetensors``. For every
adapted module ``M`` the file has ``base_model.model.M.lora_A.weight`` (r x in) and
``...lora_B.weight`` (out x r); the merged weight is ``W + (alpha / r) * B @ A`` (``alpha /
sqrt(r)`` with rsLoRA, transposed for ``fan_in_fan_out`` layers). Embedding adapters store
``lora_embedding_A`` (r x vocab) and ``lora_embedding_B`` (dim x r): ``W + scale * (B @ A)^T``.
Other tensors in the file (``modules_to_save``, e.g. a classifier head) replace the base's.
This is implemented by hand with safetensors reads; PEFT is not needed.
"""

from __future__ import annotations

import json
import logging
import math
import re
from dataclasses import dataclass
from pathlib import Path

import torch

from guardray.merge.checkpoint import Checkpoint, CheckpointError, MemInfo, read_header, read_tensor

log = logging.getLogger(__name__)

ADAPTER_CONFIG = "adapter_config.json"
ADAPTER_WEIGHTS = "adapter_model.safetensors"
_PREFIX = "base_model.model."
_LORA_RE = re.compile(r"^(?P<module>.+)\.(?P<kind>lora_A|lora_B)(?:\.[^.]+)?\.weight$")
_EMB_RE = re.compile(r"^(?P<module>.+)\.(?P<kind>lora_embedding_A|lora_embedding_B)(?:\.[^.]+)?$")


def is_adapter_dir(path: str | Path) -> bool:
    """Whether ``path`` is a folder with an ``adapter_config.json``."""
    return (Path(path) / ADAPTER_CONFIG).is_file()


@dataclass(frozen=True)
class _Pair:
    a: str
    b: str
    scale: float
    embedding: bool
    fan_in_fan_out: bool


class LoraAdapter:
    """A PEFT LoRA adapter folder, read lazily.

    Raises:
        CheckpointError: missing files, an adapter type other than plain LoRA (DoRA, other PEFT
            methods), or an A without its B.
    """

    def __init__(self, path: str | Path):
        self.path = Path(path)
        cfg_file = self.path / ADAPTER_CONFIG
        weights = self.path / ADAPTER_WEIGHTS
        if not cfg_file.is_file():
            raise CheckpointError(f"{self.path}: not a LoRA adapter (no {ADAPTER_CONFIG})")
        if not weights.is_file():
            raise CheckpointError(
                f"{self.path}: no {ADAPTER_WEIGHTS} (pickled adapter_model.bin is never loaded)"
            )
        self.config = json.loads(cfg_file.read_text())
        peft_type = str(self.config.get("peft_type", "LORA")).upper()
        if peft_type != "LORA":
            raise CheckpointError(
                f"{self.path}: adapter type {peft_type} is not supported (only LORA)"
            )
        if self.config.get("use_dora"):
            raise CheckpointError(f"{self.path}: DoRA adapters (use_dora: true) are not supported")
        self._infos, _ = read_header(weights)
        self.pairs: dict[str, _Pair] = {}  # base tensor name -> LoRA pair
        self.replacements: dict[str, str] = {}  # base tensor name -> adapter tensor name
        self._collect()

    @property
    def base_model_path(self) -> str | None:
        return self.config.get("base_model_name_or_path")

    def _collect(self) -> None:
        halves: dict[str, dict[str, str]] = {}
        for name in self._infos:
            key = name[len(_PREFIX) :] if name.startswith(_PREFIX) else name
            match = _LORA_RE.match(key) or _EMB_RE.match(key)
            if match:
                halves.setdefault(match["module"], {})[match["kind"][-1]] = name
                halves[match["module"]]["emb"] = "embedding" in match["kind"]
            elif ".lora_" in key:
                raise CheckpointError(f"{self.path}: unsupported adapter tensor {name!r}")
            else:
                # modules_to_save copies; PEFT saves embedding bases as "M.base_layer.weight".
                self.replacements[key.replace(".base_layer.", ".")] = name
        alpha = float(self.config.get("lora_alpha", 8))
        for module, half in halves.items():
            if "A" not in half or "B" not in half:
                raise CheckpointError(
                    f"{self.path}: module {module!r} has lora_A or lora_B but not both"
                )
            rank = self._infos[half["A"]].shape[0]
            a = float(self._pattern("alpha_pattern", module, alpha))
            scale = a / math.sqrt(rank) if self.config.get("use_rslora") else a / rank
            self.pairs[f"{module}.weight"] = _Pair(
                half["A"],
                half["B"],
                scale,
                bool(half["emb"]),
                bool(self.config.get("fan_in_fan_out")),
            )

    def _pattern(self, key: str, module: str, default):
        # PEFT matches pattern keys as module-name suffixes / regexes.
        for pattern, value in (self.config.get(key) or {}).items():
            if re.match(rf"(.*\.)?{pattern}$", module):
                return value
        return default

    def tensor(self, name: str) -> torch.Tensor:
        return read_tensor(self._infos[name])

    def delta(self, base_name: str) -> torch.Tensor:
        """``scale * B @ A`` for one base weight, float32, in the base weight's layout."""
        pair = self.pairs[base_name]
        a = self.tensor(pair.a).float()
        b = self.tensor(pair.b).float()
        delta = (b @ a) * pair.scale
        return delta.T if (pair.embedding or pair.fan_in_fan_out) else delta


class LoraMergedSource:
    """A base checkpoint with a LoRA adapter applied to each tensor as it is read.

    Merged tensors come back as float32 (so the LoRA delta is not rounded to a low-precision
    dtype before the merge); ``info`` reports the base dtype, which decides the output dtype.
    """

    def __init__(self, base: Checkpoint, adapter: LoraAdapter, label: str | None = None):
        self.base = base
        self.adapter = adapter
        self.label = label or f"{base.label}+{adapter.path}"
        self.config = base.config
        self.folder = base.folder
        missing = [n for n in adapter.pairs if n not in base]
        if missing:
            sample = ", ".join(base.keys()[:3])
            raise CheckpointError(
                f"{self.label}: the adapter modifies {len(missing)} tensor(s) "
                f"the base lacks, e.g. {missing[:3]} (base has e.g. {sample})"
            )
        for name, pair in adapter.pairs.items():
            base_shape = base.info(name).shape
            a, b = (adapter._infos[pair.a].shape, adapter._infos[pair.b].shape)
            out = (b[0], a[1]) if not (pair.embedding or pair.fan_in_fan_out) else (a[1], b[0])
            if tuple(out) != tuple(base_shape):
                raise CheckpointError(
                    f"{self.label}: LoRA delta for {name!r} has shape "
                    f"{list(out)} but the base weight is {list(base_shape)}"
                )
        self._extra = [n for n in adapter.replacements if n not in base]
        if self._extra:
            log.warning(
                "%s: adapter adds %d tensor(s) the base lacks (modules_to_save), e.g. %s",
                self.label,
                len(self._extra),
                self._extra[:3],
            )
        for name in adapter.replacements:
            if name in base and tuple(adapter._infos[adapter.replacements[name]].shape) != tuple(
                base.info(name).shape
            ):
                raise CheckpointError(
                    f"{self.label}: adapter tensor {name!r} has a different shape than the base's"
                )

    def keys(self) -> list[str]:
        return self.base.keys() + self._extra

    def __contains__(self, name: str) -> bool:
        return name in self.base or name in self.adapter.replacements

    def info(self, name: str):
        if name in self.adapter.replacements:
            i = self.adapter._infos[self.adapter.replacements[name]]
            return MemInfo(i.dtype, i.shape)
        return self.base.info(name)

    def get(self, name: str) -> torch.Tensor:
        if name in self.adapter.replacements:
            tensor = self.adapter.tensor(self.adapter.replacements[name])
        else:
            tensor = self.base.get(name)
        if name in self.adapter.pairs:
            tensor = tensor.float().add_(self.adapter.delta(name))
        return tensor

    def close(self) -> None:
        self.base.close()


def open_lora(base_path: str | Path, adapter_path: str | Path, label: str | None = None):
    """Open ``base_path`` with the adapter at ``adapter_path`` applied."""
    return LoraMergedSource(Checkpoint(base_path), LoraAdapter(adapter_path), label)
