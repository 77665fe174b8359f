"""Load and validate policy YAML files; errors name the file, the field and the problem."""

from __future__ import annotations

from pathlib import Path

from pydantic import ValidationError

from guardray.config.base import ConfigError
from guardray.config.loader import format_validation_error, load_yaml
from guardray.policies.schema import Policy

# The policies shipped with guardray (the paper's CustomGuardBenchmark four).
BUILTIN_DIR = Path(__file__).resolve().parent.parent.parent / "configs" / "policies"


def load_policy(path: str | Path) -> Policy:
    """Load one policy file.

    Raises:
        ConfigError: ``"<file>: <field>: <problem>"`` lines for every problem found.
    """
    data = load_yaml(path)
    try:
        return Policy.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(format_validation_error(exc, Policy, str(path))) from None


def policy_files(paths: list[str | Path]) -> list[Path]:
    """Expand folders into their ``*.yaml``/``*.yml`` files (sorted); keep files as given."""
    out: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            found = sorted([*p.glob("*.yaml"), *p.glob("*.yml")])
            if not found:
                raise ConfigError(f"{p}: folder holds no policy files (*.yaml)")
            out += found
        else:
            out.append(p)
    return out


def load_policies(paths: list[str | Path]) -> list[Policy]:
    """Load policies from files and folders; all problems are reported together.

    Raises:
        ConfigError: any file invalid, or two files sharing an ``id``.
    """
    policies: list[Policy] = []
    origin: dict[str, Path] = {}
    errors: list[str] = []
    for path in policy_files(paths):
        try:
            policy = load_policy(path)
        except ConfigError as exc:
            errors.append(str(exc))
            continue
        if policy.id in origin:
            errors.append(f"{path}: id: {policy.id!r} is already used by {origin[policy.id]}")
            continue
        origin[policy.id] = path
        policies.append(policy)
    if errors:
        raise ConfigError("\n".join(errors))
    return policies
