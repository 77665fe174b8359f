"""Load and validate policy YAML files; errors name the file, the field and the problem."""

from __future__ import annotations

from pathlib import Path

from pydantic import ValidationError

from guardray.config.base import ConfigError
from guardray.config.loader import format_validation_error, load_yaml
from guardray.policies.schema import Policy

# The policies shipped with guardray (the paper's CustomGuardBenchmark four).
BUILTIN_DIR = Path(__file__).resolve().parent.parent.parent / "configs" / "policies"

# A policy file within the schema's limits (`guardray.policies.schema`: 64 items of 500
# characters per list, 100 examples of 2,000...) stays well under this; a larger file is
# refused before it is read and parsed.
MAX_FILE_BYTES = 1024 * 1024


def load_policy(path: str | Path) -> Policy:
    """Load one policy file.

    Raises:
        ConfigError: ``"<file>: <field>: <problem>"`` lines for every problem found; a file
            over `MAX_FILE_BYTES`, not UTF-8 text or not YAML (`guardray.config.load_yaml`).
    """
    path = Path(path)
    if path.is_file() and path.stat().st_size > MAX_FILE_BYTES:
        raise ConfigError(f"{path}: {path.stat().st_size} bytes; a policy file may hold at most "
                          f"{MAX_FILE_BYTES} (is it a policy?)")
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
