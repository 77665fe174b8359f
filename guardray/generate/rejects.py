"""Rejects shards: the generated outputs that were not kept, with the reason and raw text.

They live in ``<output_dir>/rejects/`` (a sub-folder, so sample readers never see them),
one Parquet file per task, named like the task's sample shard. Columns:

| column          | type   | meaning                                                   |
|-----------------|--------|-----------------------------------------------------------|
| request_id      | string | the request (``{source}:{policy}:{label}:{index}``)        |
| task            | int32  | the task (shard index) it belonged to                     |
| kind            | string | ``sample`` or ``policy`` (a synthetic policy answer, 3.3) |
| policy_id       | string | the policy asked about ("" for policy answers)            |
| source          | string | ``seed`` or ``diverse``                                   |
| requested_label | int8   | 0 safe / 1 unsafe asked for (-1 for policy answers)       |
| reason          | string | one of `guardray.generate.parse.REJECT_REASONS`              |
| detail          | string | human-readable detail                                     |
| attempts        | int8   | generation attempts made                                  |
| raw_output      | string | the last raw model output                                 |
| generator       | string | the model                                                 |
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

REQUEST_ID = "request_id"
TASK = "task"
KIND = "kind"
POLICY_ID = "policy_id"
SOURCE = "source"
REQUESTED_LABEL = "requested_label"
REASON = "reason"
DETAIL = "detail"
ATTEMPTS = "attempts"
RAW_OUTPUT = "raw_output"
GENERATOR = "generator"


def reject_schema():
    """The pyarrow schema of a rejects shard."""
    import pyarrow as pa

    return pa.schema([
        (REQUEST_ID, pa.string()), (TASK, pa.int32()), (KIND, pa.string()),
        (POLICY_ID, pa.string()), (SOURCE, pa.string()), (REQUESTED_LABEL, pa.int8()),
        (REASON, pa.string()), (DETAIL, pa.string()), (ATTEMPTS, pa.int8()),
        (RAW_OUTPUT, pa.string()), (GENERATOR, pa.string()),
    ])


REJECT_COLUMNS: tuple[str, ...] = (REQUEST_ID, TASK, KIND, POLICY_ID, SOURCE, REQUESTED_LABEL,
                                   REASON, DETAIL, ATTEMPTS, RAW_OUTPUT, GENERATOR)


def write_rejects(rows: list[dict[str, Any]], uri: str,
                  storage_options: Mapping[str, Any] | None = None) -> str:
    """Atomically write reject rows (possibly none) as one Parquet file at ``uri``.

    Raises:
        ValueError: a row lacks a column or has extra ones (nothing is written).
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    from guardray.io import uris

    for i, row in enumerate(rows):
        if set(row) != set(REJECT_COLUMNS):
            raise ValueError(f"reject row {i} has columns {sorted(row)}, expected "
                             f"{list(REJECT_COLUMNS)}")
    table = pa.Table.from_pylist(rows, schema=reject_schema())
    with uris.open_atomic(uri, storage_options) as handle:
        pq.write_table(table, handle, compression="zstd")
    return uris.parse_uri(uri).uri


def read_rejects(dir_uri: str | os.PathLike[str],
                 storage_options: Mapping[str, Any] | None = None):
    """All rejects files of folder ``dir_uri`` as one pyarrow table (empty if none)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from guardray.io import uris

    tables = []
    if uris.exists(dir_uri, storage_options):
        for name in uris.list_files(dir_uri, storage_options):
            if name.endswith(".parquet"):
                filesystem, path = uris.get_filesystem(uris.join_uri(dir_uri, name),
                                                       storage_options)
                with filesystem.open_input_file(path) as handle:
                    tables.append(pq.read_table(handle, schema=reject_schema()))
    return pa.concat_tables(tables) if tables else reject_schema().empty_table()
