"""Lazy reading of safetensors checkpoints, one tensor at a time.

The safetensors header is parsed here and each tensor is read with ``os.preadv`` straight into a
fresh torch buffer. Unlike a memory map, this keeps no file pages mapped into the process, so
the resident memory of a merge is the tensors it holds, not the size of the models it reads.
Only safetensors are read; pickle checkpoints (``*.bin``, ``*.pt``) are refused.

A *tensor source* is anything with ``keys()``, ``info(name)``, ``get(name)``, ``config`` and
``label``: `Checkpoint` (a folder or file on disk), `StateDictSource` (tensors in memory) and
`guardray.merge.lora.LoraMergedSource` (a base with a LoRA adapter applied on the fly).
"""

from __future__ import annotations

import json
import os
import struct
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from guardray.errors import ModelError

SAFETENSORS_DTYPES: dict[str, torch.dtype] = {
    "F64": torch.float64,
    "F32": torch.float32,
    "F16": torch.float16,
    "BF16": torch.bfloat16,
    "I64": torch.int64,
    "I32": torch.int32,
    "I16": torch.int16,
    "I8": torch.int8,
    "U8": torch.uint8,
    "BOOL": torch.bool,
    "F8_E4M3": torch.float8_e4m3fn,
    "F8_E5M2": torch.float8_e5m2,
    "U16": torch.uint16,
    "U32": torch.uint32,
    "U64": torch.uint64,
}
TORCH_TO_SAFETENSORS = {v: k for k, v in SAFETENSORS_DTYPES.items()}
INDEX_NAME = "model.safetensors.index.json"
SINGLE_NAME = "model.safetensors"
_MAX_HEADER = 100 * 1024 * 1024


class CheckpointError(ModelError):
    """A checkpoint is missing, unreadable, or not what a merge needs."""


@dataclass(frozen=True)
class TensorInfo:
    """Where one tensor lies in a safetensors file, and what it is."""

    dtype: torch.dtype
    shape: tuple[int, ...]
    file: Path
    start: int  # absolute byte offset in the file
    nbytes: int

    @property
    def numel(self) -> int:
        n = 1
        for d in self.shape:
            n *= d
        return n


def read_header(path: Path) -> tuple[dict[str, TensorInfo], dict[str, str]]:
    """Parse a safetensors header: tensor infos by name, and the ``__metadata__`` mapping.

    Raises:
        CheckpointError: the file is not a valid safetensors file.
    """
    size = path.stat().st_size
    with open(path, "rb") as f:
        raw = f.read(8)
        if len(raw) != 8:
            raise CheckpointError(f"{path}: not a safetensors file (shorter than 8 bytes)")
        (header_len,) = struct.unpack("<Q", raw)
        if header_len > _MAX_HEADER or 8 + header_len > size:
            raise CheckpointError(f"{path}: not a safetensors file (bad header length)")
        try:
            header = json.loads(f.read(header_len))
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise CheckpointError(f"{path}: corrupt safetensors header: {exc}") from None
    data_start = 8 + header_len
    metadata = header.pop("__metadata__", None) or {}
    infos = {}
    for name, entry in header.items():
        try:
            dtype = SAFETENSORS_DTYPES[entry["dtype"]]
            shape = tuple(int(d) for d in entry["shape"])
            begin, end = (int(x) for x in entry["data_offsets"])
        except (KeyError, TypeError, ValueError):
            raise CheckpointError(
                f"{path}: tensor {name!r} has an unsupported or bad entry {entry!r}"
            ) from None
        info = TensorInfo(dtype, shape, path, data_start + begin, end - begin)
        expected = info.numel * torch.empty((), dtype=dtype).element_size()
        if end < begin or info.nbytes != expected or data_start + end > size:
            raise CheckpointError(
                f"{path}: tensor {name!r} has inconsistent offsets "
                f"({begin}, {end}) for shape {list(shape)} {entry['dtype']}"
            )
        infos[name] = info
    return infos, metadata


def read_tensor(info: TensorInfo, fd: int | None = None) -> torch.Tensor:
    """Read one tensor into new CPU memory (no memory map)."""
    buf = torch.empty(info.nbytes, dtype=torch.uint8)
    if info.nbytes:
        own = fd is None
        fd = os.open(info.file, os.O_RDONLY) if own else fd
        try:
            view = memoryview(buf.numpy())
            done = 0
            while done < info.nbytes:
                n = os.preadv(fd, [view[done:]], info.start + done)
                if n <= 0:
                    raise CheckpointError(f"{info.file}: unexpected end of file")
                done += n
        finally:
            if own:
                os.close(fd)
    return buf.view(info.dtype).reshape(info.shape)


class Checkpoint:
    """A safetensors model on disk: a folder (single file or sharded index) or one file.

    Every ``get`` returns new memory (``fresh = True``), which the merge may reuse in place.

    Args:
        path: folder with ``model.safetensors`` / ``model.safetensors.index.json`` (or any
            single ``*.safetensors`` file in it), or a ``.safetensors`` file.
        label: name used in error messages (defaults to the path).
    """

    fresh = True

    def __init__(self, path: str | Path, label: str | None = None):
        self.path = Path(path)
        self.label = label or str(path)
        self.files = self._find_files()
        self._infos: dict[str, TensorInfo] = {}
        self.metadata: dict[str, str] = {}
        for file in self.files:
            infos, meta = read_header(file)
            self.metadata.update(meta)
            for name, info in infos.items():
                if name in self._infos:
                    raise CheckpointError(
                        f"{self.label}: tensor {name!r} appears in two files "
                        f"({self._infos[name].file.name}, {file.name})"
                    )
                self._infos[name] = info
        self._check_index()
        self._fds: dict[Path, int] = {}
        self._lock = threading.Lock()  # the executor's prefetch thread reads too
        self.config = self._read_json("config.json")

    @property
    def folder(self) -> Path:
        return self.path if self.path.is_dir() else self.path.parent

    def _find_files(self) -> list[Path]:
        p = self.path
        if p.is_file():
            if p.suffix != ".safetensors":
                raise CheckpointError(
                    f"{self.label}: only .safetensors files are read, not {p.name}"
                )
            return [p]
        if not p.is_dir():
            raise CheckpointError(
                f"{self.label}: no such folder. guardray merges local checkpoints only "
                "(no model hub); download the model first and give its folder"
            )
        index = p / INDEX_NAME
        if index.is_file():
            try:
                weight_map = json.loads(index.read_text())["weight_map"]
            except (json.JSONDecodeError, KeyError, TypeError) as exc:
                raise CheckpointError(f"{index}: not a safetensors index ({exc})") from None
            files = sorted(set(weight_map.values()))
            missing = [f for f in files if not (p / f).is_file()]
            if missing:
                raise CheckpointError(f"{index}: lists shard(s) that do not exist: {missing}")
            self._weight_map = weight_map
            return [p / f for f in files]
        if (p / SINGLE_NAME).is_file():
            return [p / SINGLE_NAME]
        found = sorted(p.glob("*.safetensors"))
        found = [f for f in found if f.name != "adapter_model.safetensors"]
        if len(found) == 1:
            return found
        pickles = sorted(x.name for x in p.iterdir() if x.suffix in (".bin", ".pt", ".pth"))
        if pickles:
            raise CheckpointError(
                f"{self.label}: has only pickle weights ({', '.join(pickles)}); guardray never "
                "unpickles checkpoints. Re-save the model with save_pretrained(..., "
                "safe_serialization=True)"
            )
        what = f"{len(found)} .safetensors files but no {INDEX_NAME}" if found else "no weights"
        raise CheckpointError(f"{self.label}: {what} (expected {SINGLE_NAME} or {INDEX_NAME})")

    def _check_index(self) -> None:
        weight_map = getattr(self, "_weight_map", None)
        if weight_map is None:
            return
        for name, file in weight_map.items():
            info = self._infos.get(name)
            if info is None or info.file.name != file:
                raise CheckpointError(
                    f"{self.path / INDEX_NAME}: says {name!r} is in {file}, "
                    "but that file has no such tensor"
                )

    def _read_json(self, name: str) -> dict[str, Any] | None:
        file = self.folder / name
        if not file.is_file():
            return None
        try:
            return json.loads(file.read_text())
        except json.JSONDecodeError as exc:
            raise CheckpointError(f"{file}: invalid JSON: {exc}") from None

    def keys(self) -> list[str]:
        """Tensor names, in file order then byte order (sequential reads)."""
        return sorted(self._infos, key=lambda n: (str(self._infos[n].file), self._infos[n].start))

    def info(self, name: str) -> TensorInfo:
        return self._infos[name]

    def __contains__(self, name: str) -> bool:
        return name in self._infos

    def get(self, name: str) -> torch.Tensor:
        """Read tensor ``name`` into new CPU memory."""
        info = self._infos[name]
        with self._lock:
            fd = self._fds.get(info.file)
            if fd is None:
                fd = self._fds[info.file] = os.open(info.file, os.O_RDONLY)
        return read_tensor(info, fd)

    def close(self) -> None:
        with self._lock:
            for fd in self._fds.values():
                os.close(fd)
            self._fds.clear()

    def __enter__(self) -> Checkpoint:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __del__(self) -> None:  # pragma: no cover - best effort
        try:
            self.close()
        except Exception:
            pass


@dataclass(frozen=True)
class MemInfo:
    """`TensorInfo`'s fields that sources in memory can provide."""

    dtype: torch.dtype
    shape: tuple[int, ...]


class StateDictSource:
    """A state dict in memory, seen as a tensor source. Its tensors belong to the caller, so
    the merge never writes into them (``fresh = False``)."""

    fresh = False

    def __init__(self, state_dict: dict[str, torch.Tensor], label: str, config=None):
        self.state_dict = state_dict
        self.label = label
        self.config = config

    def keys(self) -> list[str]:
        return list(self.state_dict)

    def info(self, name: str) -> MemInfo:
        t = self.state_dict[name]
        return MemInfo(t.dtype, tuple(t.shape))

    def __contains__(self, name: str) -> bool:
        return name in self.state_dict

    def get(self, name: str) -> torch.Tensor:
        return self.state_dict[name]

    def close(self) -> None:
        pass
