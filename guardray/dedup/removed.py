"""The removed-rows file of the dedup stage: one row per removed sample, and why.

Written to ``{output_dir}/removed/removed-00000.parquet`` (a sub-folder, so readers of the
kept-shard folder never see a file with another schema). Columns:

| column           | type    | meaning                                                       |
|------------------|---------|---------------------------------------------------------------|
| removed_id       | string  | ``id`` of the removed row                                     |
| kept_id          | string  | ``id`` of the kept row it duplicates (its representative)     |
| similarity       | float32 | cosine to the kept row (1.0 for exact duplicates)             |
| reason           | string  | ``exact_duplicate`` or ``near_duplicate``                     |
| method           | string  | ``exact`` (normalised-text hash), ``global`` or ``per_batch`` |
| scope            | string  | the policy compared within, or ``*`` for global scope         |
| policy_id        | string  | policy of the removed row                                     |
| kept_policy_id   | string  | policy of the kept row (differs only with global scope)       |
| text             | string  | text of the removed row                                       |
| kept_text        | string  | text of the kept row                                          |

Rows are in processing order (scope, then removed id). The file is written atomically.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from guardray.io import uris

REMOVED_ID = "removed_id"
KEPT_ID = "kept_id"
SIMILARITY = "similarity"
REASON = "reason"
METHOD = "method"
SCOPE = "scope"
POLICY_ID = "policy_id"
KEPT_POLICY_ID = "kept_policy_id"
TEXT = "text"
KEPT_TEXT = "kept_text"

REMOVED_DIR = "removed"
REMOVED_FILE = "removed-00000.parquet"


def removed_schema() -> pa.Schema:
    """The Arrow schema of the removed-rows file."""
    s = pa.string()
    return pa.schema([
        pa.field(REMOVED_ID, s, nullable=False), pa.field(KEPT_ID, s, nullable=False),
        pa.field(SIMILARITY, pa.float32(), nullable=False), pa.field(REASON, s, nullable=False),
        pa.field(METHOD, s, nullable=False), pa.field(SCOPE, s, nullable=False),
        pa.field(POLICY_ID, s, nullable=False), pa.field(KEPT_POLICY_ID, s, nullable=False),
        pa.field(TEXT, s, nullable=False), pa.field(KEPT_TEXT, s, nullable=False),
    ])


def removed_table(columns: Mapping[str, Any]) -> pa.Table:
    """Build a removed-rows table (validated against `removed_schema`) from column arrays."""
    schema = removed_schema()
    missing = [f.name for f in schema if f.name not in columns]
    extra = sorted(set(columns) - set(schema.names))
    if missing or extra:
        raise ValueError(f"removed rows: missing {missing}, unexpected {extra}")
    return pa.Table.from_arrays([pa.array(columns[f.name], f.type) for f in schema], schema=schema)


def write_removed(
    table: pa.Table, output_dir: str | os.PathLike[str],
    storage_options: Mapping[str, Any] | None = None,
) -> str:
    """Atomically write the removed-rows table; returns its location."""
    if table.schema != removed_schema():
        raise ValueError(f"removed rows have schema {table.schema}, expected {removed_schema()}")
    target = uris.join_uri(output_dir, REMOVED_DIR, REMOVED_FILE)
    with uris.open_atomic(target, storage_options) as handle:
        pq.write_table(table, handle, compression="zstd")
    return uris.parse_uri(target).uri


def read_removed(output_dir: str | os.PathLike[str],
                 storage_options: Mapping[str, Any] | None = None) -> pa.Table:
    """Read the removed-rows file of a dedup output folder."""
    data = uris.read_bytes(uris.join_uri(output_dir, REMOVED_DIR, REMOVED_FILE), storage_options)
    return pq.read_table(pa.BufferReader(data))
