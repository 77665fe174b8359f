"""The ``guardray merge`` config: MergeKit's YAML schema plus a few guardray keys.

MergeKit keys: ``merge_method``, ``base_model``, ``models: [{model, parameters}]``, top-level
``parameters``, ``dtype``, ``out_dtype``, ``tokenizer_source``. guardray keys: ``seed`` (DARE
masks), ``device``, ``max_shard_size``, ``copy_tokenizer``, ``num_threads`` (torch CPU threads for
the math, default 1), and where the job writes: ``output_dir``, ``overwrite``, ``prefetch`` (read
the next tensor while merging one), ``progress`` (a bar over tensors). MergeKit's ``slices`` /
``modules`` (layer stacking, "frankenmerges") are not supported and fail with a message saying so.

A model is a local folder of safetensors (``model.safetensors`` or a sharded index), or
``BASE+ADAPTER`` (MergeKit's syntax) for a LoRA adapter folder merged into ``BASE`` first, or a
LoRA adapter folder alone when its ``adapter_config.json`` names a local base. Loading validates
structure only; the executor checks that the paths exist.
"""

from __future__ import annotations

import difflib
from pathlib import Path
from typing import Any, ClassVar

from pydantic import Field, field_validator

from guardray.config import ConfigError, JobConfig, StrictModel, load_config
from guardray.merge.registry import (
    METHODS,
    REQUIRED,
    get_method,
    method_names,
    validate_setting,
)

DTYPES = {
    "float32": "float32",
    "fp32": "float32",
    "float": "float32",
    "float16": "float16",
    "fp16": "float16",
    "half": "float16",
    "bfloat16": "bfloat16",
    "bf16": "bfloat16",
    "float64": "float64",
    "fp64": "float64",
    "double": "float64",
}
UNSUPPORTED_MERGEKIT_KEYS = ("slices", "modules", "tokenizer", "chat_template")


class ModelEntry(StrictModel):
    """One input model: ``model`` (path, or ``BASE+ADAPTER``) and its per-model parameters."""

    model: str = Field(min_length=1)
    parameters: dict[str, Any] | None = None

    @field_validator("model", mode="before")
    @classmethod
    def _model_is_string(cls, value: Any) -> Any:
        if isinstance(value, dict):
            raise ValueError(
                "write the model as a string: a local folder, or BASE+ADAPTER for a LoRA adapter"
            )
        return value


class MergeConfig(JobConfig):
    """A merge job (``guardray merge CONFIG OUTPUT_DIR`` / ``python jobs/merge.py --config
    CONFIG output_dir=OUTPUT_DIR``)."""

    JOB_NAME: ClassVar[str] = "merge"

    merge_method: str
    base_model: str | None = None
    models: list[ModelEntry] = Field(min_length=1)
    parameters: dict[str, Any] | None = None
    dtype: str | None = None
    out_dtype: str | None = None
    tokenizer_source: str | None = None
    # guardray's own keys
    seed: int = 0
    device: str = "cpu"
    max_shard_size: str | int = "2GB"
    copy_tokenizer: bool = True
    # CPU threads for the tensor math (None: torch's default). One is the default: the merge is
    # memory-bound, a reader thread already overlaps I/O, and on a shared 2-core machine
    # multi-threaded small ops spin-wait for a descheduled thread (10-20x slower, measured).
    num_threads: int | None = Field(default=1, ge=1)
    # where the merge job writes (``guardray merge CONFIG OUTPUT_DIR`` sets output_dir)
    output_dir: str | None = None
    overwrite: bool = False
    prefetch: bool = True
    progress: bool = True
    # MergeKit keys guardray does not implement: accepted by the schema, refused by the check.
    slices: Any = None
    modules: Any = None
    tokenizer: Any = None
    chat_template: Any = None

    @field_validator("models", mode="before")
    @classmethod
    def _models_from_strings(cls, value: Any) -> Any:
        # MergeKit also accepts a bare list of model names.
        if isinstance(value, list):
            return [{"model": v} if isinstance(v, str) else v for v in value]
        return value

    @property
    def method(self):
        """The `MethodSpec` of ``merge_method`` (KeyError if unknown)."""
        return get_method(self.merge_method)

    def out_torch_dtype_name(self) -> str | None:
        """Canonical output dtype name (``out_dtype`` or else ``dtype``), None for 'as input'."""
        name = self.out_dtype or self.dtype
        return DTYPES[name] if name else None

    def inputs(self) -> tuple[str | None, list[ModelEntry]]:
        """The base model and the list of merged inputs, following MergeKit's rules.

        For methods with a required base, the base is not a merged input even when it is listed
        in ``models``. For ``linear`` every listed model is an input, and a ``base_model`` that
        is not listed is added as one (MergeKit does the same).
        """
        spec = self.method
        entries = list(self.models)
        if spec.base_is_input:
            if self.base_model and all(e.model != self.base_model for e in entries):
                entries.append(ModelEntry(model=self.base_model))
            return self.base_model, entries
        return self.base_model, [e for e in entries if e.model != self.base_model]


def check_merge_config(cfg: MergeConfig) -> list[str]:
    """Method-aware checks of a structurally valid config.

    Returns:
        Problems as ``"dotted.field: message"`` lines (empty if the config is valid).
    """
    problems: list[str] = []
    for key in UNSUPPORTED_MERGEKIT_KEYS:
        if getattr(cfg, key) is not None:
            problems.append(
                f"{key}: MergeKit's {key!r} is not supported by guardray merge "
                "(list whole models under 'models:' instead)"
            )
    try:
        spec = cfg.method
    except KeyError:
        close = difflib.get_close_matches(cfg.merge_method, method_names(), n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        return problems + [
            f"merge_method: unknown method {cfg.merge_method!r}{hint}; "
            f"valid: {', '.join(method_names())}"
        ]
    for field in ("dtype", "out_dtype"):
        value = getattr(cfg, field)
        if value is not None and value not in DTYPES:
            problems.append(f"{field}: unknown dtype {value!r}; valid: {', '.join(DTYPES)}")
    try:
        _parse_size(cfg.max_shard_size)
    except ValueError as exc:
        problems.append(f"max_shard_size: {exc}")
    if not (cfg.device in ("cpu", "cuda", "auto") or cfg.device.startswith("cuda:")):
        problems.append(f"device: {cfg.device!r} is not one of cpu, cuda, cuda:N, auto")
    if cfg.tokenizer_source == "union":
        problems.append(
            "tokenizer_source: 'union' (vocabulary merging) is not supported; "
            "use 'base' or a model path"
        )

    if spec.base == "required" and not cfg.base_model:
        problems.append(f"base_model: merge_method {spec.name!r} needs a base_model")
    seen: dict[str, int] = {}
    for i, entry in enumerate(cfg.models):
        if entry.model in seen:
            problems.append(
                f"models.{i}.model: {entry.model!r} is listed twice "
                f"(also models.{seen[entry.model]})"
            )
        seen.setdefault(entry.model, i)
    _, inputs = cfg.inputs()
    n = len(inputs)
    if n < spec.min_models or (spec.max_models is not None and n > spec.max_models):
        want = (
            f"exactly {spec.min_models}"
            if spec.max_models == spec.min_models
            else f"at least {spec.min_models}"
        )
        what = "input model(s)" if spec.base_is_input else "model(s) besides base_model"
        problems.append(f"models: {spec.name!r} merges {want} {what}, got {n}")

    problems += _check_params(spec, "parameters", cfg.parameters or {}, top_level=True)
    for i, entry in enumerate(cfg.models):
        problems += _check_params(
            spec, f"models.{i}.parameters", entry.parameters or {}, top_level=False
        )
    for p in spec.params:
        if p.default is REQUIRED and not p.per_model and p.name not in (cfg.parameters or {}):
            problems.append(f"parameters.{p.name}: required by {spec.name!r} ({p.help})")
    return problems


def _check_params(spec, where: str, settings: dict[str, Any], *, top_level: bool) -> list[str]:
    problems = []
    names = [p.name for p in spec.params] if top_level else spec.model_param_names
    for key, setting in settings.items():
        param = spec.param(key)
        if param is None or key not in names:
            if param is not None:  # a merge-wide parameter set on one model
                problems.append(
                    f"{where}.{key}: {key!r} applies to the whole merge; "
                    "set it under the top-level 'parameters'"
                )
                continue
            close = difflib.get_close_matches(key, names, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            valid = ", ".join(names) or "none"
            problems.append(
                f"{where}.{key}: unknown parameter for {spec.name!r}{hint}; valid here: {valid}"
            )
            continue
        try:
            validate_setting(param, setting)
        except ValueError as exc:
            problems.append(f"{where}.{key}: {exc}")
    if "density" in settings and "drop_rate" in settings:
        problems.append(f"{where}: give density or drop_rate (p = 1 - density), not both")
    return problems


def _parse_size(value: str | int) -> int:
    """``"2GB"`` / ``"500MB"`` / ``1000000`` -> bytes."""
    if isinstance(value, int) and not isinstance(value, bool):
        size = value
    elif isinstance(value, str):
        text = value.strip().upper().replace("IB", "B")
        units = {"KB": 1 << 10, "MB": 1 << 20, "GB": 1 << 30, "TB": 1 << 40, "B": 1}
        for unit, factor in units.items():
            if text.endswith(unit):
                try:
                    size = int(float(text[: -len(unit)]) * factor)
                except ValueError:
                    raise ValueError(f"cannot read size {value!r}; e.g. 2GB, 500MB") from None
                break
        else:
            try:
                size = int(text)
            except ValueError:
                raise ValueError(f"cannot read size {value!r}; e.g. 2GB, 500MB") from None
    else:
        raise ValueError(f"cannot read size {value!r}; e.g. 2GB, 500MB")
    if size <= 0:
        raise ValueError(f"size must be positive, got {value!r}")
    return size


parse_size = _parse_size


def validate_merge_config(cfg: MergeConfig, source: str = "<config>") -> MergeConfig:
    """Raise ConfigError (one line per problem, prefixed by ``source``) if ``cfg`` is invalid."""
    problems = check_merge_config(cfg)
    if problems:
        raise ConfigError("\n".join(f"{source}: {p}" for p in problems))
    return cfg


def load_merge_config(
    path: str | Path | None = None,
    overrides: list[str] | tuple[str, ...] = (),
    *,
    data: dict[str, Any] | None = None,
) -> MergeConfig:
    """Load and validate a merge config from YAML (MergeKit schema) plus ``key=value`` overrides.

    Paths are not checked here (a config may name models of another machine).

    Raises:
        ConfigError: naming the file, the field and the problem; unknown methods and
            parameters list the valid ones.
    """
    cfg = load_config(MergeConfig, path, overrides, data=data)
    return validate_merge_config(cfg, str(path) if path is not None else "<config>")


__all__ = [
    "DTYPES",
    "METHODS",
    "MergeConfig",
    "ModelEntry",
    "check_merge_config",
    "load_merge_config",
    "parse_size",
    "validate_merge_config",
]
