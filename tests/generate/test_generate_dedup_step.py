"""The generate job's dedup step on generated shards (no LLM: the shards are written here)."""

from __future__ import annotations

import pyarrow.parquet as pq
import pytest

from guardray import schema as S
from guardray.dedup.config import DedupSettings
from guardray.generate.config import GenerateConfig
from guardray.generate.dedup_step import dedup_config, dedup_output_dir, run_dedup_step
from guardray.io.manifest import read_manifest
from guardray.io.shards import list_shards, read_shards, write_shard


def row(text: str, policy_id: str = "tax", label: int = 1) -> dict:
    return {S.ID: S.sample_id(policy_id, text), S.POLICY_ID: policy_id, S.TEXT: text,
            S.RATIONALE: "r", S.LABEL: label, S.LABEL_INITIAL: label, S.SOURCE: "seed",
            S.GENERATOR: "test", S.SPLIT: "train"}


DISTINCT = ["How do I report freelance income on my tax return?",
            "Can I deduct my home office if I rent my apartment?",
            "What is the capital of France?",
            "Write a short poem about the ocean at night."]
NEAR = ("How can I hide income from the tax authorities?",
        "How can I hide my income from the tax authorities?")
EXACT = ("What is the deadline for filing taxes?", "  what is the DEADLINE for filing taxes?\n")


@pytest.fixture
def generated(tmp_path):
    """A generate output folder: two task shards, one synthetic-policy shard."""
    out = tmp_path / "gen"
    write_shard([row(DISTINCT[0]), row(NEAR[0]), row(EXACT[0])], out, index=0, prefix="gen")
    write_shard([row(DISTINCT[1]), row(NEAR[1]), row(EXACT[1])], out, index=1, prefix="gen")
    write_shard([row(DISTINCT[2], "div-x"), row(DISTINCT[3], "div-x")], out, index=0,
                prefix="div")
    return out


def cfg_for(out, **dedup) -> GenerateConfig:
    return GenerateConfig(policies=["configs/policies/tax.yaml"], output_dir=str(out),
                          dedup=dedup)


def test_the_step_config_is_the_dedup_jobs_with_this_runs_folders(tmp_path):
    cfg = cfg_for(tmp_path / "g", method="per_batch", threshold=0.8, scope="global",
                  embedder={"batch_size": 7}, global_method={"probes": 2})
    d = dedup_config(cfg)
    assert d.input_dir == str(tmp_path / "g") and d.output_dir == dedup_output_dir(cfg)
    assert d.output_dir == str(tmp_path / "g" / "dedup")
    assert d.overwrite and d.ray == cfg.ray
    for name in DedupSettings.model_fields:  # every knob carried over, none forgotten
        assert getattr(d, name) == getattr(cfg.dedup, name), name
    with pytest.raises(Exception, match="enabled"):  # 'enabled' is the step's, not the job's
        cfg_for(tmp_path, enabled="maybe")


def test_disabled_step_writes_nothing(generated):
    assert run_dedup_step(cfg_for(generated, enabled=False)) == {"enabled": False}
    assert not (generated / "dedup").exists()


def test_global_step_removes_exact_and_near_duplicates(ray_session, generated):
    summary = run_dedup_step(cfg_for(generated, method="global", threshold=0.9,
                                     embedder={"batch_size": 8},
                                     global_method={"target_cluster_size": 4}))
    assert summary["enabled"] and summary["method"] == "global"
    assert (summary["in"], summary["out"]) == (8, 6)
    assert summary["dropped"] == {"exact_duplicate": 1, "near_duplicate": 1}
    kept = read_shards(generated / "dedup")
    texts = set(kept.column(S.TEXT).to_pylist())
    assert set(DISTINCT) <= texts
    assert len(texts & set(NEAR)) == 1 and len(texts & set(EXACT)) == 1
    removed = pq.read_table(generated / "dedup" / "removed" / "removed-00000.parquet")
    assert removed.num_rows == 2
    assert read_manifest(generated / "dedup")["counts"]["out"] == 6
    # the raw shards are untouched (resumption reads them), and a rerun rebuilds the same set
    assert read_shards(generated).num_rows == 8
    first = sorted(kept.column(S.ID).to_pylist())
    run_dedup_step(cfg_for(generated, method="global", threshold=0.9,
                           global_method={"target_cluster_size": 4}))
    assert sorted(read_shards(generated / "dedup").column(S.ID).to_pylist()) == first
    assert len(list_shards(generated / "dedup")) >= 1


def test_exact_only_step_needs_no_embedder(ray_session, generated):
    summary = run_dedup_step(cfg_for(generated, method="exact_only",
                                     embedder={"model": "/nonexistent/model"}))
    assert (summary["in"], summary["out"]) == (8, 7)
    assert summary["dropped"] == {"exact_duplicate": 1, "near_duplicate": 0}
