"""Writing a merged checkpoint: streamed sharded safetensors, an atomic output folder, and the
config / tokenizer files copied from an input model.

Since every output tensor's name, dtype and shape are known before merging starts, each shard's
layout is planned up front and each tensor is written at its offset as soon as it is merged:
no shard is ever held in memory. The header itself is written last, when every tensor is on
disk (`ShardedWriter.close`): until then the first 8 bytes (the header length) are zero, so a
merge killed half-way leaves files that no safetensors reader loads, never a model whose
unwritten tensors read as zeros. The output folder is written through
`guardray.io.folders.atomic_folder`, whose next run removes what a killed run left.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import struct
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from guardray.merge.checkpoint import INDEX_NAME, SINGLE_NAME, TORCH_TO_SAFETENSORS

log = logging.getLogger(__name__)

# Files copied next to the weights: model config and everything a tokenizer may consist of.
CONFIG_FILES = ("config.json", "generation_config.json")
TOKENIZER_PATTERNS = (
    "tokenizer*",
    "special_tokens_map.json",
    "added_tokens.json",
    "vocab.*",
    "merges.txt",
    "sentencepiece*.model",
    "spiece.model",
    "*.tiktoken",
    "chat_template.*",
    "preprocessor_config.json",
)


@dataclass(frozen=True)
class OutputTensor:
    """A tensor the writer will receive: name, dtype and shape."""

    name: str
    dtype: torch.dtype
    shape: tuple[int, ...]

    @property
    def nbytes(self) -> int:
        n = 1
        for d in self.shape:
            n *= d
        return n * torch.empty((), dtype=self.dtype).element_size()


def plan_shards(tensors: Sequence[OutputTensor], max_shard_bytes: int) -> list[list[OutputTensor]]:
    """Split tensors, in order, into shards of at most ``max_shard_bytes`` (a bigger tensor gets
    a shard of its own)."""
    shards: list[list[OutputTensor]] = []
    current: list[OutputTensor] = []
    size = 0
    for t in tensors:
        if current and size + t.nbytes > max_shard_bytes:
            shards.append(current)
            current, size = [], 0
        current.append(t)
        size += t.nbytes
    if current or not shards:
        shards.append(current)
    return shards


class ShardedWriter:
    """Writes tensors into pre-planned safetensors shards plus, if sharded, the index.

    Args:
        folder: output folder (already existing).
        tensors: every tensor to be written, in the order they should be laid out.
        max_shard_bytes: shard size limit.
        metadata: ``__metadata__`` of each shard (``format: pt`` is always set).
    """

    def __init__(
        self,
        folder: Path,
        tensors: Sequence[OutputTensor],
        max_shard_bytes: int,
        metadata: dict[str, str] | None = None,
    ):
        self.folder = Path(folder)
        shards = plan_shards(tensors, max_shard_bytes)
        meta = {"format": "pt", **(metadata or {})}
        self._where: dict[str, tuple[Path, int, OutputTensor]] = {}
        self._files: list[Path] = []
        self._headers: dict[Path, bytes] = {}  # written by close(), once the data is on disk
        self._pending = set()
        for i, shard in enumerate(shards):
            name = (
                SINGLE_NAME
                if len(shards) == 1
                else (f"model-{i + 1:05d}-of-{len(shards):05d}.safetensors")
            )
            path = self.folder / name
            self._files.append(path)
            header: dict[str, Any] = {"__metadata__": meta}
            offset = 0
            for t in shard:
                header[t.name] = {
                    "dtype": TORCH_TO_SAFETENSORS[t.dtype],
                    "shape": list(t.shape),
                    "data_offsets": [offset, offset + t.nbytes],
                }
                offset += t.nbytes
            raw = json.dumps(header, separators=(",", ":")).encode()
            raw += b" " * (-len(raw) % 8)
            data_start = 8 + len(raw)
            self._headers[path] = struct.pack("<Q", len(raw)) + raw
            with open(path, "wb") as f:  # zeros where the header goes: not loadable yet
                f.truncate(data_start + offset)
            for t in shard:
                begin = header[t.name]["data_offsets"][0]
                self._where[t.name] = (path, data_start + begin, t)
                self._pending.add(t.name)
        self._handles: dict[Path, Any] = {}
        if len(shards) > 1:
            weight_map = {t.name: p.name for t_name, (p, _, t) in self._where.items()}
            total = sum(t.nbytes for _, _, t in self._where.values())
            index = {"metadata": {"total_size": total}, "weight_map": weight_map}
            (self.folder / INDEX_NAME).write_text(json.dumps(index, indent=2) + "\n")

    @property
    def files(self) -> list[Path]:
        return list(self._files)

    def write(self, name: str, tensor: torch.Tensor) -> None:
        """Write one tensor (its dtype and shape must match the plan)."""
        path, offset, planned = self._where[name]
        if tensor.dtype != planned.dtype or tuple(tensor.shape) != planned.shape:
            raise ValueError(
                f"{name}: got {tensor.dtype} {list(tensor.shape)}, planned "
                f"{planned.dtype} {list(planned.shape)}"
            )
        f = self._handles.get(path)
        if f is None:
            f = self._handles[path] = open(path, "r+b")
        data = tensor.detach().to("cpu").contiguous().reshape(-1)
        if data.numel():
            f.seek(offset)
            f.write(memoryview(data.view(torch.uint8).numpy()))
        self._pending.discard(name)

    def close(self) -> None:
        """Flush and fsync every shard's data, then write and fsync its header (only now is
        the file loadable); raise, leaving every header unwritten, if some planned tensor was
        never written."""
        for f in self._handles.values():
            f.flush()
            os.fsync(f.fileno())
            f.close()
        self._handles.clear()
        if self._pending:
            missing = sorted(self._pending)
            raise RuntimeError(
                f"{len(missing)} planned tensor(s) never written, e.g. {missing[:3]}"
            )
        for path in self._files:
            with open(path, "r+b") as f:
                f.write(self._headers[path])
                f.flush()
                os.fsync(f.fileno())

    def abort(self) -> None:
        for f in self._handles.values():
            f.close()
        self._handles.clear()


def copy_model_files(
    src: Path,
    dst: Path,
    *,
    tokenizer: bool = True,
    tokenizer_src: Path | None = None,
    dtype_name: str | None = None,
) -> list[str]:
    """Copy ``config.json`` (dtype updated), ``generation_config.json`` and tokenizer files.

    Args:
        src: folder of the model whose config is copied.
        dst: output folder.
        tokenizer: also copy tokenizer files.
        tokenizer_src: folder to take the tokenizer from (default ``src``).
        dtype_name: output dtype written into config.json (``dtype`` / ``torch_dtype``).

    Returns:
        Names of the copied files.
    """
    copied = []
    for name in CONFIG_FILES:
        file = src / name
        if not file.is_file():
            continue
        if name == "config.json" and dtype_name:
            config = json.loads(file.read_text())
            keys = [k for k in ("dtype", "torch_dtype") if k in config] or ["dtype"]
            for key in keys:
                config[key] = dtype_name
            (dst / name).write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
        else:
            shutil.copy2(file, dst / name)
        copied.append(name)
    if tokenizer:
        tok_dir = tokenizer_src or src
        for pattern in TOKENIZER_PATTERNS:
            for file in sorted(tok_dir.glob(pattern)):
                if file.is_file() and not (dst / file.name).exists():
                    shutil.copy2(file, dst / file.name)
                    copied.append(file.name)
        if not any(n.startswith("tokenizer") for n in copied):
            log.warning("no tokenizer files found in %s; the output has no tokenizer", tok_dir)
    return copied
