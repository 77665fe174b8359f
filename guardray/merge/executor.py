"""The streaming merge executor: checkpoints on disk in, a merged checkpoint on disk out.

Tensors are read one name at a time from every input (``os.preadv``, no memory map), merged,
and written at their planned offset in the output shards, so peak memory is about
(number of models x largest tensor), not the model size. The output folder is built next to
``OUTPUT_DIR`` and renamed into place only when complete.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from guardray.io.folders import atomic_folder, check_output_dir, check_output_location
from guardray.merge.checkpoint import Checkpoint, CheckpointError
from guardray.merge.config import DTYPES, MergeConfig, parse_size, validate_merge_config
from guardray.merge.engine import (
    MergeError,
    MergeJob,
    check_compatible,
    iter_merged,
    output_dtype,
    torch_threads,
)
from guardray.merge.io import (
    OutputTensor,
    ShardedWriter,
    copy_model_files,
)
from guardray.merge.lora import LoraAdapter, LoraMergedSource, is_adapter_dir
from guardray.merge.registry import layer_index
from guardray.modeling.training import resolve_device

log = logging.getLogger(__name__)
MANIFEST_NAME = "merge_manifest.json"


@dataclass
class MergeResult:
    """What a merge wrote."""

    output_dir: Path
    files: list[str]
    stats: dict[str, int]
    seconds: float
    manifest: dict[str, Any] = field(repr=False, default_factory=dict)


def open_model(ref: str, label: str | None = None):
    """Open a model reference: a folder/file, ``BASE+ADAPTER``, or an adapter folder whose
    ``adapter_config.json`` names a local base."""
    label = label or ref
    path = Path(ref)
    if not path.exists() and "+" in ref:
        base, adapter = ref.rsplit("+", 1)
        return LoraMergedSource(Checkpoint(base, label), LoraAdapter(adapter), label)
    if path.is_dir() and is_adapter_dir(path):
        adapter = LoraAdapter(path)
        base = adapter.base_model_path
        if not base or not Path(base).is_dir():
            raise CheckpointError(
                f"{label}: LoRA adapter whose base {base!r} is not a local folder; "
                "write the model as BASE_FOLDER+ADAPTER_FOLDER"
            )
        return LoraMergedSource(Checkpoint(base, label), adapter, label)
    return Checkpoint(path, label)


def _paths_of(ref: str) -> list[Path]:
    if not Path(ref).exists() and "+" in ref:
        return [Path(p).absolute() for p in ref.rsplit("+", 1)]
    return [Path(ref).absolute()]


def _refuse_overlap(out: Path, refs: list[str]) -> None:
    for ref in refs:
        for p in _paths_of(ref):
            if out == p or out in p.parents or p in out.parents:
                raise MergeError(
                    f"output folder {out} overlaps input {p}; choose another OUTPUT_DIR"
                )


def _num_layers(config: dict | None, names: list[str]) -> int:
    for key in ("num_hidden_layers", "n_layer", "num_layers"):
        if config and isinstance(config.get(key), int):
            return config[key]
    indices = [i for i in (layer_index(n) for n in names) if i is not None]
    return max(indices) + 1 if indices else 1


def build_job(cfg: MergeConfig, device: str | None = None) -> tuple[MergeJob, dict[str, Any]]:
    """Open the models of ``cfg`` and build the per-tensor job (caller closes the sources)."""
    spec = cfg.method
    base_ref, entries = cfg.inputs()
    opened: dict[str, Any] = {}
    try:

        def get(ref: str):
            if ref not in opened:
                opened[ref] = open_model(ref)
            return opened[ref]

        base = get(base_ref) if base_ref else None
        inputs = [get(e.model) for e in entries]
    except BaseException:
        for src in opened.values():
            src.close()
        raise
    out_name = cfg.out_torch_dtype_name()
    job = MergeJob(
        spec=spec,
        inputs=inputs,
        input_settings=[e.parameters or {} for e in entries],
        global_settings=cfg.parameters or {},
        base=base,
        seed=cfg.seed,
        device=resolve_device(device or cfg.device),
        out_dtype=getattr(torch, out_name) if out_name else None,
    )
    return job, opened


def run_merge(
    cfg: MergeConfig,
    output_dir: str | Path,
    *,
    overwrite: bool = False,
    device: str | None = None,
    progress: bool = True,
    prefetch: bool = True,
) -> MergeResult:
    """Merge the models of ``cfg`` into ``output_dir`` (sharded safetensors + index, config,
    tokenizer, ``merge_manifest.json``).

    Args:
        cfg: a merge config (validated again here).
        output_dir: destination folder; replaced atomically.
        overwrite: replace an existing non-empty ``output_dir``.
        device: overrides ``cfg.device`` (``cpu``, ``cuda``, ``auto``).
        progress: show a tqdm bar over tensors.
        prefetch: read the next tensor while merging the current one.

    Raises:
        ConfigError: invalid config. CheckpointError: unreadable inputs. MergeError: inputs that
        do not fit together, NaN/Inf values. FileExistsError: ``output_dir`` is not empty.
        NotADirectoryError / StorageError: ``output_dir`` runs through a file, or its storage
        refuses the write (read-only, full disk; also while writing: nothing is left then).
    """
    validate_merge_config(cfg)
    start = time.perf_counter()
    out = Path(output_dir).absolute()
    check_output_dir(out, overwrite=overwrite)
    check_output_location(out, "output_dir")  # a file on the path, read-only, full: fail now
    base_ref, entries = cfg.inputs()
    _refuse_overlap(out, ([base_ref] if base_ref else []) + [e.model for e in entries])
    job, opened = build_job(cfg, device)
    try:
        names = check_compatible(job)
        ref = job.reference
        job.num_layers = _num_layers(ref.config, names)
        plan = [OutputTensor(n, output_dtype(job, n), tuple(ref.info(n).shape)) for n in names]
        log.info(
            "merging %d tensors of %d model(s) with %s on %s",
            len(names),
            len(job.sources),
            job.spec.name,
            job.device,
        )
        with atomic_folder(out, overwrite=overwrite) as tmp:
            writer = ShardedWriter(
                tmp,
                plan,
                parse_size(cfg.max_shard_size),
                metadata={"merged_by": "guardray", "merge_method": job.spec.name},
            )
            try:
                with torch_threads(cfg.num_threads):
                    for name, tensor in iter_merged(
                        job, names, progress=progress, prefetch=prefetch
                    ):
                        writer.write(name, tensor)
            except BaseException:
                writer.abort()
                raise
            writer.close()
            files = [p.name for p in writer.files]
            files += _copy_side_files(cfg, job, opened, tmp)
            manifest = _manifest(cfg, job, names, files, time.perf_counter() - start)
            (tmp / MANIFEST_NAME).write_text(json.dumps(manifest, indent=2) + "\n")
            files.append(MANIFEST_NAME)
    finally:
        for src in opened.values():
            src.close()
    seconds = time.perf_counter() - start
    log.info(
        "wrote %s (%d tensors merged, %d copied) in %.1f s",
        out,
        job.stats["merged"],
        job.stats["copied"],
        seconds,
    )
    return MergeResult(out, files, dict(job.stats), seconds, manifest)


def _copy_side_files(cfg: MergeConfig, job: MergeJob, opened: dict[str, Any], tmp: Path):
    ref = job.reference
    folder = getattr(ref, "folder", None)
    if folder is None:
        return []
    tok = cfg.tokenizer_source
    if tok in (None, "base"):
        tok_dir = folder
    elif tok in opened:
        tok_dir = getattr(opened[tok], "folder", folder)
    else:
        tok_dir = Path(tok)
        if not tok_dir.is_dir():
            raise MergeError(f"tokenizer_source {tok!r} is not a model of this merge nor a folder")
    dtype = output_dtype(
        job, next((n for n in ref.keys() if ref.info(n).dtype.is_floating_point), ref.keys()[0])
    )
    return copy_model_files(
        folder,
        tmp,
        tokenizer=cfg.copy_tokenizer,
        tokenizer_src=tok_dir,
        dtype_name=str(dtype).removeprefix("torch."),
    )


def _manifest(cfg: MergeConfig, job: MergeJob, names, files, seconds) -> dict[str, Any]:
    from guardray import __version__

    return {
        "tool": f"guardray {__version__}",
        "merge_method": job.spec.name,
        "config": cfg.model_dump(mode="json", exclude_none=True),
        "inputs": [
            {"label": s.label, "role": "base" if s is job.base else "model"} for s in job.sources
        ],
        "tensors": {"total": len(names), **job.stats},
        "out_dtype": str(job.out_dtype).removeprefix("torch.") if job.out_dtype else "as input",
        "device": str(job.device),
        "files": files,
        "seconds": round(seconds, 3),
    }


__all__ = ["DTYPES", "MergeResult", "build_job", "open_model", "run_merge"]
