"""Column names and the Arrow schema of a sample row: the one place they are spelled out.

A sample row is one labelled prompt for one policy (DESIGN.md, "Data contracts"):

| column          | type   | meaning                                                     |
|-----------------|--------|-------------------------------------------------------------|
| id              | string | stable content hash of (policy_id, text), see `sample_id`   |
| policy_id       | string | id of the policy the label refers to                        |
| text            | string | the user prompt                                             |
| rationale       | string | why the prompt is (un)safe under the policy ("" if none)    |
| label           | int8   | final label: 0 safe, 1 unsafe                               |
| label_initial   | int8   | the generator's label before self-reflection                |
| source          | string | one of SOURCES: seed / diverse / real                       |
| generator       | string | model or process that produced the row                      |
| split           | string | one of SPLITS: train / validation / test                    |
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
SPLITS: tuple[str, ...] = ("train", "validation", "test")


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
