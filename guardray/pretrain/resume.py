"""Which checkpoint a GIP run resumes from, found on disk when Ray Train has no record of it.

Ray Train V2 resumes from the checkpoints listed in its ``checkpoint_manager_snapshot.json``,
which it writes only after a checkpoint has been uploaded and registered. A run killed in
between (or whose snapshot was lost) left a complete checkpoint that Ray ignores: the rerun
started again at step 0 and ``history.jsonl`` repeated the steps. So every rank records what
it wrote, and the driver looks for the newest complete checkpoint itself:

- `write_part_record`: after a rank has written its part of a checkpoint (DeepSpeed's files,
  rank 0 also ``loop_state.json``), it lists those files and their sizes in
  ``guardray_part_rank{r}.json``. Ray Train copies every rank's part into one folder
  ``checkpoint_{step:09d}``.
- `is_complete`: ``loop_state.json`` names the world size, and every rank's record is there
  with every file it lists, at its size (a copy cut short is not complete).
- `find_resume_checkpoint`: the newest complete ``checkpoint_*`` folder of the run.

The worker resumes from the newer of Ray's checkpoint and this one
(`guardray.pretrain.engine.restore`). Works on local paths and ``s3://`` (pyarrow
filesystems), never reads a checkpoint's content beyond these JSON files.
"""

from __future__ import annotations

import json
import logging
import os
import re
from typing import Any

log = logging.getLogger(__name__)

LOOP_STATE = "loop_state.json"
PART_PREFIX = "guardray_part_rank"
_CHECKPOINT_RE = re.compile(r"^checkpoint_(\d+)$")


def part_record_name(rank: int) -> str:
    return f"{PART_PREFIX}{rank}.json"


def write_part_record(folder: str, rank: int) -> None:
    """List the files under ``folder`` (this rank's part) with their sizes, written last."""
    files = {}
    for root, _, names in os.walk(folder):
        for name in names:
            path = os.path.join(root, name)
            rel = os.path.relpath(path, folder).replace(os.sep, "/")
            if not rel.startswith(PART_PREFIX):
                files[rel] = os.path.getsize(path)
    with open(os.path.join(folder, part_record_name(rank)), "w", encoding="utf-8") as fh:
        json.dump({"rank": rank, "files": files}, fh)


def checkpoint_step(path: str) -> int | None:
    """The global step in a ``checkpoint_{step:09d}`` folder name, else None."""
    match = _CHECKPOINT_RE.match(os.path.basename(path.rstrip("/")))
    return int(match.group(1)) if match else None


def _read_json(fs, path: str) -> Any:
    with fs.open_input_stream(path) as fh:
        return json.loads(fh.read().decode("utf-8"))


def is_complete(fs, folder: str) -> bool:
    """True when every rank's part of the checkpoint in ``folder`` is there, whole."""
    import pyarrow.fs as pafs

    try:
        world = int(_read_json(fs, f"{folder}/{LOOP_STATE}")["world_size"])
        records = [_read_json(fs, f"{folder}/{part_record_name(r)}") for r in range(world)]
    except (OSError, ValueError, KeyError, TypeError):
        return False
    expected = [(f"{folder}/{rel}", size) for rec in records
                for rel, size in rec["files"].items()]
    infos = fs.get_file_info([path for path, _ in expected])
    return all(info.type == pafs.FileType.File and info.size == size
               for (_, size), info in zip(expected, infos))


def find_resume_checkpoint(fs, run_path: str) -> tuple[str, int] | None:
    """``(folder, step)`` of the newest complete checkpoint under ``run_path``, or None.

    Args:
        fs: a pyarrow filesystem.
        run_path: ``{storage_path}/{run_name}`` inside ``fs``.
    """
    import pyarrow.fs as pafs

    try:
        entries = fs.get_file_info(pafs.FileSelector(run_path, allow_not_found=True))
    except (OSError, ValueError):
        return None
    found = sorted(((checkpoint_step(e.path), e.path) for e in entries
                    if e.type == pafs.FileType.Directory and checkpoint_step(e.path) is not None),
                   reverse=True)
    for step, path in found:
        if is_complete(fs, path):
            return path, step
        log.warning("checkpoint %s is incomplete (a write was cut short); not resuming from it",
                    path)
    return None
