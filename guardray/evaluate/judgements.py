"""Judgements written as they finish, so an interrupted judge run resumes where it stopped.

A judge run over hundreds of prompts takes long (minutes to hours on CPU). Every finished
Ray Data block of answers is written at once, as one Parquet part in a hidden folder of the
output (``<output_dir>/.judgements/<dataset>-<fingerprint>/part-*.parquet``, each written
atomically). A rerun of the same command reads the parts back and judges only the rows
without an answer; a crash, a kill or a full disk then loses at most the blocks in flight.

The folder name carries a `fingerprint` of what decides an answer (template, model,
sampling, context limits; not batch sizes or concurrency), and every stored row its
`row_key` (position, policy and text): a changed judge or changed data never reuses an
answer. The runner removes the folder once the evaluation's results are written.

Columns of a part: ``row`` (int64), ``key`` (string), ``answer`` (string), ``error``
(string, "" when answered), ``cut`` (bool, the prompt's text was cut to fit the context).
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import uuid
from typing import Any

log = logging.getLogger(__name__)

FOLDER = ".judgements"
ROW, KEY, ANSWER, ERROR, CUT = "row", "key", "answer", "error", "cut"
COLUMNS = (ROW, KEY, ANSWER, ERROR, CUT)
# Settings that change how fast answers come, not what they are.
_BATCHING = {"batch_size", "concurrency", "max_batch_tokens"}


def fingerprint(judge) -> str:
    """12 hex digits over the settings of a `JudgeConfig` that decide its answers."""
    data = judge.model_dump(mode="json")
    data.pop("name", None)
    data["llm"] = {k: v for k, v in data["llm"].items() if k not in _BATCHING}
    data["llm"].get("http", {}).pop("qps", None)
    text = json.dumps(data, sort_keys=True, ensure_ascii=False)
    return hashlib.blake2b(text.encode(), digest_size=6).hexdigest()


def row_key(row: int, policy_id: str, text: str) -> str:
    """A key of one judged row: its position, policy and text."""
    digest = hashlib.blake2b(digest_size=10)
    digest.update(json.dumps([int(row), policy_id, text], ensure_ascii=False).encode())
    return digest.hexdigest()


def folder_for(out: str, slug: str, judge) -> str:
    """The judgements folder of dataset ``slug`` under output folder ``out``."""
    from guardray.io import uris

    return uris.join_uri(out, FOLDER, f"{slug}-{fingerprint(judge)}")


class JudgementStore:
    """The parts of one dataset's judgements (see the module docstring).

    Args:
        folder: the folder (local or ``s3://``).
        storage_options: S3 settings.
    """

    def __init__(self, folder: str, storage_options: dict[str, Any] | None = None):
        self.folder, self.so = folder, storage_options
        self.written_rows = 0
        self.written_parts = 0

    def load(self, keys: dict[int, str]):
        """The stored judgements of the rows in ``keys`` (row -> `row_key`), as a DataFrame
        with `COLUMNS`; rows whose key differs (other data) are left out. A part that cannot
        be read is skipped with a warning (its rows are judged again)."""
        import pandas as pd
        import pyarrow as pa
        import pyarrow.parquet as pq

        from guardray.io import uris

        try:
            names = [n for n in uris.list_files(self.folder, self.so) if n.endswith(".parquet")]
        except FileNotFoundError:
            names = []
        frames = []
        for name in names:
            try:
                data = uris.read_bytes(uris.join_uri(self.folder, name), self.so)
                frame = pq.read_table(pa.BufferReader(data)).to_pandas()
            except (OSError, pa.ArrowException, ValueError) as exc:
                log.warning("judgements: skipping unreadable part %s (%s)", name, exc)
                continue
            if not set(COLUMNS) <= set(frame.columns):
                log.warning("judgements: skipping %s: not a judgements part", name)
                continue
            frames.append(frame[list(COLUMNS)])
        if not frames:
            return pd.DataFrame({c: [] for c in COLUMNS})
        found = pd.concat(frames, ignore_index=True).drop_duplicates(ROW, keep="last")
        ok = [keys.get(int(r)) == k for r, k in zip(found[ROW], found[KEY])]
        return found[ok].reset_index(drop=True)

    def append(self, frame) -> None:
        """Write the judgements in ``frame`` (`COLUMNS`) as a new part, atomically."""
        import pyarrow as pa
        import pyarrow.parquet as pq

        from guardray.io import uris

        if len(frame) == 0:
            return
        table = pa.table({ROW: pa.array(frame[ROW].astype("int64")),
                          KEY: pa.array(frame[KEY].astype(str), pa.string()),
                          ANSWER: pa.array(frame[ANSWER].astype(str), pa.string()),
                          ERROR: pa.array(frame[ERROR].astype(str), pa.string()),
                          CUT: pa.array(frame[CUT].astype(bool), pa.bool_())})
        buf = io.BytesIO()
        pq.write_table(table, buf, compression="zstd")
        name = f"part-{self.written_parts:05d}-{uuid.uuid4().hex[:8]}.parquet"
        uris.write_bytes_atomic(uris.join_uri(self.folder, name), buf.getvalue(), self.so)
        self.written_parts += 1
        self.written_rows += len(frame)


def remove_all(out: str, storage_options: dict[str, Any] | None = None) -> None:
    """Remove ``<out>/.judgements`` (once the results it fed are written)."""
    from guardray.io import uris

    fs, root = uris.get_fsspec_filesystem(uris.join_uri(out, FOLDER), storage_options)
    if fs.exists(root):
        fs.rm(root, recursive=True)
