"""The per-tensor merge loop shared by the streaming executor (disk) and the in-memory API.

For each tensor name it loads that tensor from every input source, checks it, resolves the
method's parameters for that tensor, calls the pure method and checks the result. Only the
tensors of one name (plus one prefetched name, if enabled) are alive at a time.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import torch

from guardray.errors import ModelError
from guardray.merge.registry import MethodSpec, apply_method, layer_t, resolve

log = logging.getLogger(__name__)

# config.json keys that must agree between merged models (when present in both).
ARCH_KEYS = (
    "model_type",
    "architectures",
    "hidden_size",
    "num_hidden_layers",
    "num_attention_heads",
    "num_key_value_heads",
    "intermediate_size",
    "vocab_size",
)


class MergeError(ModelError):
    """The inputs cannot be merged: architectures, tensors or values do not fit."""


@dataclass
class MergeJob:
    """Everything the per-tensor loop needs.

    Attributes:
        spec: the merge method.
        inputs: the merged input sources, in config order.
        input_settings: per-model parameter settings, aligned with ``inputs``.
        global_settings: top-level parameter settings.
        base: base source (None for linear without base; for linear it is also in ``inputs``).
        seed: DARE seed.
        device: where the math runs.
        out_dtype: dtype of floating outputs (None: the reference model's dtype).
        num_layers: for gradient parameters (``t = layer / (num_layers - 1)``).
        check_finite: refuse NaN/Inf in inputs and outputs.
    """

    spec: MethodSpec
    inputs: Sequence[Any]
    input_settings: Sequence[Mapping[str, Any]]
    global_settings: Mapping[str, Any]
    base: Any = None
    seed: int = 0
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    out_dtype: torch.dtype | None = None
    num_layers: int = 1
    check_finite: bool = True
    stats: dict[str, int] = field(default_factory=lambda: {"merged": 0, "copied": 0})

    @property
    def reference(self):
        return self.base if self.base is not None else self.inputs[0]

    @property
    def sources(self) -> list[Any]:
        """Distinct sources, base first."""
        out = [self.base] if self.base is not None else []
        return out + [s for s in self.inputs if s is not self.base]

    def needs_base_tensor(self) -> bool:
        return self.base is not None and not self.spec.base_is_input


@contextlib.contextmanager
def torch_threads(n: int | None) -> Iterator[None]:
    """Run the block with ``n`` torch CPU threads (None: unchanged), then restore the count."""
    if n is None or n == torch.get_num_threads():
        yield
        return
    old = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(old)


def check_compatible(job: MergeJob) -> list[str]:
    """Check that all sources have the same architecture, tensor names, shapes and kinds.

    Returns:
        The tensor names to merge, in the reference model's order.

    Raises:
        MergeError: naming the models and tensors that disagree.
    """
    ref = job.reference
    sources = job.sources
    ref_cfg = ref.config or {}
    for src in sources:
        if src is ref or not src.config:
            continue
        for key in ARCH_KEYS:
            if key in ref_cfg and key in src.config and ref_cfg[key] != src.config[key]:
                raise MergeError(
                    f"architectures differ: {ref.label} has {key}={ref_cfg[key]!r} "
                    f"but {src.label} has {key}={src.config[key]!r}"
                )
    names = ref.keys()
    ref_set = set(names)
    for src in sources:
        if src is ref:
            continue
        keys = set(src.keys())
        missing, extra = sorted(ref_set - keys), sorted(keys - ref_set)
        if missing:
            raise MergeError(
                f"{src.label} is missing {len(missing)} tensor(s) that {ref.label} "
                f"has, e.g. {missing[:5]}"
            )
        if extra:
            raise MergeError(
                f"{src.label} has {len(extra)} tensor(s) that {ref.label} lacks, e.g. {extra[:5]}"
            )
    for name in names:
        ref_info = ref.info(name)
        for src in sources:
            info = src.info(name)
            if tuple(info.shape) != tuple(ref_info.shape):
                raise MergeError(
                    f"tensor {name!r}: shape {list(info.shape)} in {src.label} but "
                    f"{list(ref_info.shape)} in {ref.label}"
                )
            if info.dtype.is_floating_point != ref_info.dtype.is_floating_point:
                raise MergeError(
                    f"tensor {name!r}: dtype {info.dtype} in {src.label} but "
                    f"{ref_info.dtype} in {ref.label}"
                )
    return names


def output_dtype(job: MergeJob, name: str) -> torch.dtype:
    """Floating tensors take ``job.out_dtype`` (or the reference's); others keep theirs."""
    dtype = job.reference.info(name).dtype
    if dtype.is_floating_point and job.out_dtype is not None:
        return job.out_dtype
    return dtype


def _compute_dtype(dtype: torch.dtype) -> torch.dtype:
    return torch.float64 if dtype == torch.float64 else torch.float32


def _load(job: MergeJob, name: str) -> dict[int, torch.Tensor]:
    """Read tensor ``name`` from every source (raw dtype, CPU), keyed by ``id(source)``."""
    wanted = list(job.inputs)
    if job.needs_base_tensor():
        wanted.append(job.base)
    out: dict[int, torch.Tensor] = {}
    for src in wanted:
        if id(src) not in out:
            out[id(src)] = src.get(name)
    return out


def merge_one(job: MergeJob, name: str, raw: dict[int, torch.Tensor]) -> torch.Tensor:
    """Merge tensor ``name`` given its raw tensors from `_load`."""
    ref_dtype = job.reference.info(name).dtype
    if not ref_dtype.is_floating_point:
        return _copy_integer(job, name, raw)
    cdt = _compute_dtype(ref_dtype)

    def prepare(src) -> tuple[torch.Tensor, bool]:
        x = raw[id(src)]
        y = x.to(device=job.device, dtype=cdt)
        if job.check_finite and not _all_finite(y):
            bad = int((~torch.isfinite(y)).sum())
            raise MergeError(f"tensor {name!r} of {src.label} has {bad} NaN/Inf value(s)")
        owned = getattr(src, "fresh", True) or y.data_ptr() != x.data_ptr()
        return y, owned

    base = prepare(job.base)[0] if job.needs_base_tensor() else None
    prepared = [prepare(src) for src in job.inputs]
    raw.clear()
    tensors = [p[0] for p in prepared]
    consume = all(p[1] for p in prepared) and len({id(t) for t in tensors}) == len(tensors)
    del prepared
    t = layer_t(name, job.num_layers)
    try:
        shared, per_model = resolve(job.spec, name, t, job.global_settings, job.input_settings)
        with torch.no_grad():
            out = apply_method(
                job.spec,
                base,
                tensors,
                shared,
                per_model,
                tensor_name=name,
                seed=job.seed,
                consume=consume,
            )
    except ValueError as exc:
        raise MergeError(f"tensor {name!r}: {exc}") from None
    del tensors, base
    out = out.to(dtype=output_dtype(job, name))
    # Checked after the cast: float16 overflows to Inf beyond 65504.
    if job.check_finite and not _all_finite(out):
        raise MergeError(
            f"tensor {name!r}: the merge produced NaN/Inf values in {out.dtype} "
            f"(method {job.spec.name}, parameters {shared})"
        )
    job.stats["merged"] += 1
    return out


def _all_finite(x: torch.Tensor) -> bool:
    """Whether ``x`` has no NaN/Inf. A sum is NaN/Inf if any entry is, and costs a fraction of
    ``isfinite(x).all()`` (which allocates a mask); only a non-finite sum (NaN/Inf, or overflow of
    huge finite values) needs the exact check."""
    if x.numel() == 0 or bool(torch.isfinite(x.sum())):
        return True
    return bool(torch.isfinite(x).all())


def _copy_integer(job: MergeJob, name: str, raw: dict[int, torch.Tensor]) -> torch.Tensor:
    """Integer/bool tensors (buffers such as position ids) are copied, never averaged."""
    ref = raw[id(job.reference)]
    for src in job.sources:
        other = raw.get(id(src))
        if other is not None and not torch.equal(other, ref):
            log.warning(
                "integer tensor %r differs between %s and %s; keeping %s's",
                name,
                job.reference.label,
                src.label,
                job.reference.label,
            )
            break
    job.stats["copied"] += 1
    return ref.clone()


def _nbytes(info) -> int:
    n = 1
    for d in info.shape:
        n *= d
    return n * torch.empty((), dtype=info.dtype).element_size()


def iter_merged(
    job: MergeJob,
    names: Sequence[str],
    *,
    progress: bool = False,
    prefetch: bool = True,
    desc: str = "merging",
) -> Iterator[tuple[str, torch.Tensor]]:
    """Yield ``(name, merged tensor)`` for each name.

    With ``prefetch`` the next tensor is read in a background thread while the current one is
    merged, but only when the two together are no bigger than the largest tensor: reading
    overlaps compute for the many small tensors while peak memory stays set by the largest one.
    """
    from guardray.progress import Progress

    size = {n: _nbytes(job.reference.info(n)) for n in names}
    budget = max(size.values(), default=0)
    bar = Progress(desc, len(names), unit="tensor", enabled=progress)
    pool = ThreadPoolExecutor(max_workers=1) if prefetch and len(names) > 1 else None
    try:
        pending: Future | None = None
        for i, name in enumerate(names):
            raw = pending.result() if pending is not None else _load(job, name)
            pending = None
            nxt = names[i + 1] if i + 1 < len(names) else None
            if pool is not None and nxt is not None and size[name] + size[nxt] <= budget:
                pending = pool.submit(_load, job, nxt)
            yield name, merge_one(job, name, raw)
            bar.update(1)
    finally:
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)
        bar.close()
