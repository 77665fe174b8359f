"""Load a config model from YAML with ``key=value`` overrides, with errors a person can act on.

Rules:
- YAML is read with a safe loader (`parse_yaml`); a syntax error names the file, line and
  column, and a file that is not UTF-8 text (a binary file, another encoding) names the byte.
- Floats are read the way YAML 1.2 and every other config language read them: PyYAML follows
  YAML 1.1, which reads ``1e5``, ``1.0e300`` and ``3e-5`` (no dot or no exponent sign) as
  strings, so an integer field given ``max_steps=1e3`` failed and a float field received a
  string. Integers, booleans and everything else are unchanged.
- Overrides use dotted paths into the mapping (``train.lr=3e-5``, ``policies=[tax,finance]``);
  each value is parsed as YAML, so numbers, booleans and lists come out typed. A value that is
  not valid YAML (``name=a: b``, ``x=[1``) is an error naming the override, not a silent
  string: quote it (``'name="a: b"'``) to mean the text.
- Unknown keys, in the file or in an override, fail with the list of valid names at that level.
"""

from __future__ import annotations

import difflib
import re
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ValidationError

from guardray.config.base import ConfigError

M = TypeVar("M", bound=BaseModel)

_FLOAT_TAG = "tag:yaml.org,2002:float"
# YAML 1.2 core-schema floats plus PyYAML's 1.1 extras ('_' separators, a trailing dot);
# an exponent needs no dot and no sign. Plain integers do not match (they stay int).
_FLOAT_RE = re.compile(r"""^(?:
    [-+]?[0-9][0-9_]*\.[0-9_]*(?:[eE][-+]?[0-9]+)?
  | [-+]?[0-9][0-9_]*[eE][-+]?[0-9]+
  | [-+]?\.[0-9][0-9_]*(?:[eE][-+]?[0-9]+)?
  | [-+]?\.(?:inf|Inf|INF)
  | \.(?:nan|NaN|NAN)
)$""", re.VERBOSE)


class _Loader(yaml.SafeLoader):
    """`yaml.SafeLoader` with YAML 1.2 floats (its own resolver table: SafeLoader's is kept)."""


_Loader.yaml_implicit_resolvers = {
    first: [(tag, rx) for tag, rx in resolvers if tag != _FLOAT_TAG]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_Loader.add_implicit_resolver(_FLOAT_TAG, _FLOAT_RE, list("-+0123456789."))


def parse_yaml(text: str) -> Any:
    """``text`` as YAML with the safe loader and YAML 1.2 floats (``1e5`` -> 100000.0).

    Raises:
        yaml.YAMLError: the text is not valid YAML.
    """
    return yaml.load(text, Loader=_Loader)  # a SafeLoader subclass: safe


def _yaml_problem(exc: yaml.YAMLError) -> str:
    """The one-line problem of a YAML error (PyYAML's text spans several lines)."""
    if isinstance(exc, yaml.reader.ReaderError):  # a NUL or other control character
        return (f"unacceptable character #x{exc.character:04x} at offset {exc.position} "
                f"({exc.reason})")
    problem = getattr(exc, "problem", None) or str(exc)
    return " ".join(str(problem).split())


def load_yaml(path: str | Path) -> dict[str, Any]:
    """Read a YAML mapping from ``path``.

    Raises:
        ConfigError: the file is missing, is not valid YAML, or its top level is not a mapping.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{path}: file not found") from None
    except UnicodeDecodeError as exc:  # a binary file, or text in another encoding
        raise ConfigError(f"{path}: not UTF-8 text (byte 0x{exc.object[exc.start]:02x} at "
                          f"offset {exc.start}); config and policy files are YAML in UTF-8"
                          ) from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror}") from None
    try:
        data = parse_yaml(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{path}:{mark.line + 1}:{mark.column + 1}" if mark else str(path)
        raise ConfigError(f"{where}: invalid YAML: {_yaml_problem(exc)}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level, got {type(data).__name__}")
    return data


def parse_overrides(items: list[str] | tuple[str, ...]) -> list[tuple[list[str], Any]]:
    """Parse ``["a.b=1", "c=[x, y]"]`` into ``[(["a", "b"], 1), (["c"], ["x", "y"])]``.

    Raises:
        ConfigError: an item has no ``=`` or an empty key, or its value is not valid YAML
            (the message names the override and says how to quote a literal text).
    """
    parsed = []
    for item in items:
        key, sep, raw = item.partition("=")
        key = key.strip()
        if not sep or not key or any(not part for part in key.split(".")):
            raise ConfigError(f"override {item!r}: expected key=value, e.g. train.lr=3e-5")
        try:
            value = parse_yaml(raw) if raw.strip() else ""
        except yaml.YAMLError as exc:
            raise ConfigError(
                f"override {item!r}: the value is not valid YAML ({_yaml_problem(exc)}); "
                f"quote it to mean the text, e.g. '{key}=\"...\"'") from None
        parsed.append((key.split("."), value))
    return parsed


def apply_overrides(data: dict[str, Any], overrides: list[str] | tuple[str, ...]) -> dict[str, Any]:
    """Return a copy of ``data`` with each dotted ``key=value`` override set (sections created)."""
    import copy

    out = copy.deepcopy(data)
    for path, value in parse_overrides(overrides):
        node = out
        for i, part in enumerate(path[:-1]):
            child = node.get(part)
            if child is None:
                child = node[part] = {}
            if not isinstance(child, dict):
                dotted = ".".join(path[: i + 1])
                raise ConfigError(f"override {'.'.join(path)}: {dotted} is a value, not a section")
            node = child
        node[path[-1]] = value
    return out


def load_config(
    model: type[M],
    path: str | Path | None = None,
    overrides: list[str] | tuple[str, ...] = (),
    *,
    data: dict[str, Any] | None = None,
) -> M:
    """Build ``model`` from a YAML file (or ``data``) plus overrides.

    Args:
        model: the pydantic config class of the job.
        path: YAML file; None to start from the model's defaults (or from ``data``).
        overrides: ``key=value`` strings applied after the file.
        data: an already-read mapping, used instead of ``path``.

    Raises:
        ConfigError: naming the file, the dotted field and the problem; for unknown keys,
            the valid names at that level and the closest match.
    """
    source = str(path) if path is not None else "<config>"
    raw = dict(data) if data is not None else (load_yaml(path) if path is not None else {})
    merged = apply_overrides(raw, overrides)
    try:
        return model.model_validate(merged)
    except ValidationError as exc:
        raise ConfigError(format_validation_error(exc, model, source)) from None
    except ConfigError as exc:
        raise ConfigError(f"{source}: {exc}") from None


def format_validation_error(exc: ValidationError, model: type[BaseModel], source: str) -> str:
    """One line per problem: ``source: dotted.field: message``, valid names for unknown keys."""
    lines = []
    for err in exc.errors():
        loc = [str(p) for p in err["loc"]]
        dotted = ".".join(loc) or "<top level>"
        msg = err["msg"]
        if err["type"] == "extra_forbidden":
            valid = _field_names_at(model, err["loc"][:-1])
            if valid:
                close = difflib.get_close_matches(loc[-1], valid, n=1)
                hint = f" (did you mean {close[0]!r}?)" if close else ""
                msg = f"unknown key{hint}; valid keys here: {', '.join(sorted(valid))}"
            else:
                msg = "unknown key"
        elif err["type"] == "value_error" and msg.startswith("Value error, "):
            msg = msg[len("Value error, ") :]
        lines.append(f"{source}: {dotted}: {msg}")
    return "\n".join(lines)


def _field_names_at(model: type[BaseModel], loc: tuple) -> list[str]:
    """Field names of the sub-model reached by following ``loc`` from ``model`` ([] if none)."""
    current: Any = model
    for part in loc:
        if isinstance(part, int):
            continue  # list index: the item type was unwrapped below
        fields = getattr(current, "model_fields", None)
        if not fields or part not in fields:
            return []
        current = _unwrap_model(fields[part].annotation)
        if current is None:
            return []
    fields = getattr(current, "model_fields", None)
    return [name for name in fields] if fields else []


def _unwrap_model(annotation: Any) -> type[BaseModel] | None:
    """The BaseModel inside ``annotation`` (Optional[X], list[X], dict[str, X]), if any."""
    import typing

    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in typing.get_args(annotation):
        found = _unwrap_model(arg)
        if found is not None:
            return found
    return None
