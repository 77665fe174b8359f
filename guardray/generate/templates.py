"""Prompt templates of synthetic data generation: shipped defaults plus per-job overrides.

The defaults live in ``guardray/generate/templates/prompts.yaml`` (one key per template, Python
``string.Template`` syntax). A job replaces any of them with ``templates.file`` (a YAML file
with some of the same keys) and ``templates.overrides`` (inline texts); both are checked when
loaded: an unknown template name or a ``$variable`` the template cannot use fails with the
valid names listed.
"""

from __future__ import annotations

import hashlib
import string
from pathlib import Path
from typing import Any

from guardray.config.base import ConfigError
from guardray.config.loader import load_yaml

DEFAULT_FILE = Path(__file__).resolve().parent / "templates" / "prompts.yaml"

# template name -> the variables it may use
TEMPLATE_VARIABLES: dict[str, frozenset[str]] = {
    "generate_system": frozenset({"policy"}),
    "generate_user": frozenset({"label", "label_meaning", "case_instruction", "persona",
                                "style", "length", "language"}),
    "label_meaning_unsafe": frozenset(),
    "label_meaning_safe": frozenset(),
    "case_clear": frozenset({"label"}),
    "case_borderline": frozenset({"label"}),
    "example_rationale_unsafe": frozenset(),
    "example_rationale_safe": frozenset(),
    "fallback_example_unsafe": frozenset({"behaviour"}),
    "fallback_example_safe": frozenset({"behaviour"}),
    "reflect_system": frozenset({"policy"}),
    "reflect_user": frozenset({"prompt", "label", "rationale"}),
    "diversify_system": frozenset(),
    "diversify_example_user": frozenset({"examples"}),
    "diversify_user": frozenset({"examples", "policy_names", "topic"}),
}


class Templates:
    """A complete, checked set of templates; `render` fills one in."""

    def __init__(self, texts: dict[str, str]):
        self.texts = dict(texts)
        self._compiled = {name: string.Template(text) for name, text in texts.items()}

    def render(self, name: str, **values: Any) -> str:
        """Fill template ``name``; every variable it uses must be given.

        Raises:
            KeyError: unknown template name (the valid ones are listed).
        """
        if name not in self._compiled:
            raise KeyError(f"unknown template {name!r}; valid: {', '.join(sorted(self.texts))}")
        return self._compiled[name].substitute(**values)

    def fingerprint(self) -> str:
        """Hash of every template text (part of a run's plan: changing a template changes it)."""
        digest = hashlib.blake2b(digest_size=8)
        for name in sorted(self.texts):
            digest.update(f"{name}\x1f{self.texts[name]}\x1e".encode())
        return digest.hexdigest()


def load_templates(file: str | Path | None = None,
                   overrides: dict[str, str] | None = None) -> Templates:
    """Defaults, then the keys of ``file``, then ``overrides``; all checked.

    Raises:
        ConfigError: unknown names, non-string values, bad ``$`` syntax or variables a
            template may not use, naming the source and the valid options.
    """
    texts = _checked(load_yaml(DEFAULT_FILE), str(DEFAULT_FILE))
    missing = sorted(set(TEMPLATE_VARIABLES) - set(texts))
    if missing:
        raise ConfigError(f"{DEFAULT_FILE}: missing template(s) {missing}")
    if file is not None:
        texts.update(_checked(load_yaml(file), str(file)))
    if overrides:
        texts.update(_checked(overrides, "templates.overrides"))
    return Templates(texts)


def _checked(data: dict[str, Any], source: str) -> dict[str, str]:
    errors, out = [], {}
    for name, text in data.items():
        if name not in TEMPLATE_VARIABLES:
            errors.append(f"{source}: {name}: unknown template; valid: "
                          f"{', '.join(sorted(TEMPLATE_VARIABLES))}")
            continue
        if not isinstance(text, str) or not text.strip():
            errors.append(f"{source}: {name}: must be a non-empty string")
            continue
        template = string.Template(text)
        if not template.is_valid():
            errors.append(f"{source}: {name}: invalid '$' placeholder (write $$ for a dollar)")
            continue
        unknown = sorted(set(template.get_identifiers()) - TEMPLATE_VARIABLES[name])
        if unknown:
            allowed = ", ".join(f"${v}" for v in sorted(TEMPLATE_VARIABLES[name])) or "none"
            errors.append(f"{source}: {name}: unknown variable(s) "
                          f"{', '.join('$' + u for u in unknown)}; valid here: {allowed}")
            continue
        out[name] = text
    if errors:
        raise ConfigError("\n".join(errors))
    return out
