"""Shared helpers of the GIP pretraining tests: sample shards and a debug config."""

from __future__ import annotations

import random
from pathlib import Path

from sample_testlib import SAFE, UNSAFE

from guardray import schema as S
from guardray.config import load_config
from guardray.pretrain.config import PretrainConfig

REPO = Path(__file__).resolve().parents[2]
DEBUG = REPO / "configs" / "debug" / "pretrain.yaml"
RATIONALES = {0: "The prompt asks nothing unsafe.", 1: "The prompt asks for unsafe help."}


def gip_rows(n: int = 256, policy_ids=("tax", "finance", "safety"), seed: int = 0,
             splits=("train",)) -> list[dict]:
    """``n`` separable sample rows (alternating labels) over ``policy_ids`` and ``splits``."""
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        y = i % 2
        pid = policy_ids[i % len(policy_ids)]
        text = f"{rng.choice(UNSAFE if y else SAFE)} {i}"
        rows.append({S.ID: S.sample_id(pid, text), S.POLICY_ID: pid, S.TEXT: text,
                     S.RATIONALE: RATIONALES[y], S.LABEL: y, S.LABEL_INITIAL: y,
                     S.SOURCE: "seed", S.GENERATOR: "test", S.SPLIT: splits[i % len(splits)]})
    return rows


def write_gip_shards(folder: Path, n: int = 256, shards: int = 2, **kwargs) -> Path:
    """Write ``n`` rows as ``shards`` Parquet shards; returns the folder."""
    from guardray.io.shards import write_shard

    rows = gip_rows(n, **kwargs)
    per = -(-len(rows) // shards)
    for i in range(shards):
        write_shard(rows[i * per:(i + 1) * per], folder, index=i, if_exists="overwrite")
    return folder


def debug_config(tmp: Path, data: Path, *overrides: str) -> PretrainConfig:
    """The debug config with data, storage and output under ``tmp``."""
    return load_config(PretrainConfig, DEBUG, (
        f"data.path={data}", f"storage_path={tmp / 'ray'}", f"output_dir={tmp / 'out'}",
        *overrides))
