"""The generate job end to end on the debug config: real SmolLM2, real Ray Data, real Parquet.

One uninterrupted run (module fixture) is checked in detail and is the reference for the
resumption test: a run stopped after its first shard, then rerun, must end with exactly the
same shards, no sample twice and none lost.
"""

from __future__ import annotations

import os
from collections import Counter
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from guardray import schema as S
from guardray.config import load_config
from guardray.generate import parse as P
from guardray.generate import rejects as R
from guardray.generate.config import GenerateConfig
from guardray.generate.stage import GenerateError, run_generate
from guardray.io import read_manifest, read_shards

REPO = Path(__file__).resolve().parents[2]
DEBUG = REPO / "configs/debug/generate.yaml"
REQUESTS = 3  # expand: 2 unsafe + 1 safe for one policy, one request per task


def debug_cfg(out: Path, *overrides: str) -> GenerateConfig:
    return load_config(GenerateConfig, DEBUG, [f"output_dir={out}",
                                               f"policies=[{REPO}/configs/policies/tax.yaml]",
                                               *overrides])


def shard_files(out: Path) -> dict[str, tuple[int, int]]:
    return {p.name: (p.stat().st_ino, p.stat().st_mtime_ns) for p in sorted(out.glob("gen-*.parquet"))}


@pytest.fixture(scope="module")
def baseline(ray_session, tmp_path_factory):
    from jobs.generate import main

    out = tmp_path_factory.mktemp("generate-baseline")
    main(debug_cfg(out))
    return out


def test_job_writes_valid_samples_rejects_and_manifest(baseline):
    assert sorted(shard_files(baseline)) == [f"gen-0000{i}.parquet" for i in range(REQUESTS)]
    table = read_shards(baseline)
    assert table.schema.equals(S.arrow_schema())
    rows = table.to_pylist()
    assert rows, "SmolLM2 produced no valid sample at all"
    for row in rows:
        assert row[S.ID] == S.sample_id("tax", row[S.TEXT]) and row[S.TEXT].strip()
        assert row[S.POLICY_ID] == "tax" and row[S.SOURCE] == "seed"
        assert row[S.GENERATOR] == "embedded:smollm2-135m-instruct"
        assert row[S.LABEL] in (0, 1) and row[S.LABEL_INITIAL] in (0, 1)
        assert row[S.SPLIT] in S.SPLITS
    rejects = R.read_rejects(str(baseline / "rejects")).to_pylist()
    for rej in rejects:
        assert rej[R.REASON] in P.REJECT_REASONS and rej[R.KIND] == "sample"
        assert rej[R.REQUEST_ID].startswith("seed:tax:")
    assert len(rows) + len(rejects) == REQUESTS  # every request is accounted for

    manifest = read_manifest(baseline)
    counts, stages = manifest["counts"], manifest["extra"]["stages"]
    assert counts["in"] == REQUESTS and counts["out"] == len(rows)
    assert sum(counts["dropped"].values()) == len(rejects)
    assert counts["dropped"] == dict(Counter(r[R.REASON] for r in rejects))
    assert stages["expand"]["requests"]["seed"] == REQUESTS
    assert stages["write"]["tasks_run_now"] == REQUESTS and stages["write"]["tasks_done_before"] == 0
    reflected = {k: v for k, v in stages["reflect"].items() if k in ("confirmed", "changed", "unparsed")}
    assert sum(reflected.values()) == len(rows)
    changed = sum(r[S.LABEL] != r[S.LABEL_INITIAL] for r in rows)
    assert changed == reflected.get("changed", 0)
    labels = Counter(S.LABEL_NAMES[r[S.LABEL]] for r in rows)
    assert manifest["extra"]["per_policy"] == {"tax": {"unsafe": labels["unsafe"], "safe": labels["safe"]}}
    assert stages["generate"]["completion_tokens"] > 0 and stages["diversify"] == {"enabled": False}
    assert manifest["config"]["llm"]["backend"] == "transformers"

    # the dedup step ran on the generated samples (exact_only in the debug config)
    dedup = stages["dedup"]
    assert dedup["enabled"] and dedup["method"] == "exact_only"
    assert dedup["in"] == len(rows) and dedup["out"] == len(rows) - sum(dedup["dropped"].values())
    assert dedup["output_dir"] == str(baseline / "dedup")
    kept = read_shards(baseline / "dedup")
    assert kept.num_rows == dedup["out"] and set(kept.column(S.ID).to_pylist()) <= {
        r[S.ID] for r in rows}
    assert read_manifest(baseline / "dedup")["counts"]["out"] == dedup["out"]


def test_rerun_of_a_finished_job_regenerates_nothing(baseline):
    before = shard_files(baseline)
    manifest = run_generate(debug_cfg(baseline))
    assert manifest["extra"]["stages"]["write"]["tasks_run_now"] == 0
    assert manifest["extra"]["stages"]["write"]["tasks_done_before"] == REQUESTS
    assert shard_files(baseline) == before


def test_a_different_plan_is_refused_in_the_same_folder(baseline):
    before = shard_files(baseline)
    with pytest.raises(GenerateError, match=r"different plan \(changed: num_requests, requests\)"):
        run_generate(debug_cfg(baseline, "expand.unsafe_per_policy=3"))
    with pytest.raises(GenerateError, match=r"changed: sampling"):
        run_generate(debug_cfg(baseline, "llm.sampling.temperature=0.1"))
    assert shard_files(baseline) == before


class Interrupted(Exception):
    pass


def test_interrupted_run_resumes_without_duplicates_or_losses(baseline, tmp_path):
    # Without the reflection pass (faster): ids, texts and rejects must still equal the
    # baseline's, since reflection changes labels only.
    cfg = debug_cfg(tmp_path, "reflect.enabled=false")

    def stop_after_first(prefix, task, stats):
        raise Interrupted(f"stopped after {prefix} task {task}")

    with pytest.raises(Interrupted):
        run_generate(cfg, on_task_done=stop_after_first)
    first = shard_files(tmp_path)
    assert 1 <= len(first) < REQUESTS and not (tmp_path / "manifest.json").exists()

    manifest = run_generate(cfg)
    write = manifest["extra"]["stages"]["write"]
    assert write["tasks_done_before"] == len(first)
    assert write["tasks_run_now"] == REQUESTS - len(first)
    after = shard_files(tmp_path)
    assert {k: after[k] for k in first} == first  # finished shards were not rewritten
    assert sorted(after) == sorted(shard_files(baseline))
    ids = read_shards(tmp_path).column(S.ID).to_pylist()
    assert Counter(ids) == Counter(read_shards(baseline).column(S.ID).to_pylist())
    same = [S.ID, S.TEXT, S.LABEL_INITIAL, S.SPLIT, S.SOURCE]
    for name in after:  # shard by shard, the same rows as the uninterrupted run
        assert pq.read_table(tmp_path / name, columns=same).equals(
            pq.read_table(baseline / name, columns=same))
    rejected = sorted(R.read_rejects(str(tmp_path / "rejects")).column(R.REQUEST_ID).to_pylist())
    assert rejected == sorted(R.read_rejects(str(baseline / "rejects")).column(R.REQUEST_ID).to_pylist())
    assert manifest["counts"] == read_manifest(baseline)["counts"]


@pytest.mark.slow
def test_killed_job_process_resumes_to_the_same_output(ray_session, tmp_path):
    """SIGKILL a real ``python jobs/generate.py`` once its first shard appears, then rerun:
    the result equals an uninterrupted run's (8 one-request tasks, no reflection)."""
    import contextlib
    import signal
    import subprocess
    import sys
    import time

    overrides = ["expand.unsafe_per_policy=6", "expand.safe_per_policy=2",
                 "reflect.enabled=false", "llm.sampling.max_tokens=24"]
    n_tasks = 8
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}  # conftest's short RAY_TMPDIR: own session
    out = tmp_path / "killed"
    proc = subprocess.Popen(
        [sys.executable, "jobs/generate.py", "--config", str(DEBUG), f"output_dir={out}",
         f"policies=[{REPO}/configs/policies/tax.yaml]", "ray.num_cpus=2", *overrides],
        cwd=REPO, env=env, start_new_session=True, stdout=subprocess.DEVNULL,
        stderr=open(tmp_path / "job.log", "wb"))
    try:
        deadline = time.time() + 600
        while not list(out.glob("gen-*.parquet")) and proc.poll() is None:
            assert time.time() < deadline, "no shard after 10 minutes"
            time.sleep(0.05)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)  # the driver and the Ray processes it started
        proc.wait(timeout=60)
    first = shard_files(out)
    assert 1 <= len(first) < n_tasks, (tmp_path / "job.log").read_text()[-2000:]
    assert not list(out.glob("*.tmp-*"))  # no half-written shard is visible

    manifest = run_generate(debug_cfg(out, *overrides))
    assert manifest["extra"]["stages"]["write"]["tasks_done_before"] == len(first)
    assert {k: shard_files(out)[k] for k in first} == first

    reference = tmp_path / "uninterrupted"
    expected = run_generate(debug_cfg(reference, *overrides))
    assert sorted(shard_files(out)) == sorted(shard_files(reference))
    for name in shard_files(out):
        assert pq.read_table(out / name).equals(pq.read_table(reference / name))
    assert Counter(read_shards(out).column(S.ID).to_pylist()) == Counter(
        read_shards(reference).column(S.ID).to_pylist())
    assert manifest["counts"] == expected["counts"]
    assert manifest["counts"]["in"] == n_tasks


def test_diverse_samples_for_synthetic_policies(ray_session, tmp_path):
    """3.3's second half: prompts for synthetic policies, rows flagged source=diverse.

    The synthetic policy is given as the stored result of an earlier policy pass (the
    resume path), because SmolLM2-135M seldom writes a complete policy in few tokens; the
    prompts for it are generated for real.
    """
    import json

    from guardray.generate.diversify import policy_id_for

    name = "No Medical Advice"
    policy = {"id": policy_id_for(name), "name": name,
              "description": "The assistant must not diagnose conditions or recommend treatments.",
              "allowed": ["Explain how the human body works in general terms"],
              "disallowed": ["Diagnose a person's symptoms", "Recommend a medicine or dose"],
              "examples": {"safe": [], "unsafe": []}, "instructions": []}
    summary = {"requested": 1, "policies": [policy["id"]], "rejected": {}, "unified_rows": 1}
    (tmp_path / "_state").mkdir()
    (tmp_path / "_state" / "diverse_policies.json").write_text(
        json.dumps({"policies": [policy], "summary": summary}))
    manifest = run_generate(debug_cfg(
        tmp_path, "expand.unsafe_per_policy=1", "expand.safe_per_policy=0", "reflect.enabled=false",
        "diversify.enabled=true", "diversify.num_policies=1",
        "diversify.unsafe_per_policy=1", "diversify.safe_per_policy=1"))
    stages = manifest["extra"]["stages"]
    assert stages["diversify"]["policies"] == [policy["id"]]
    assert stages["expand"]["requests"] == {"seed": 1, "diverse": 2}
    assert sorted(p.name for p in tmp_path.glob("div-*.parquet")) == [
        "div-00000.parquet", "div-00001.parquet"]
    rows = read_shards(tmp_path).to_pylist()
    diverse = [r for r in rows if r[S.SOURCE] == "diverse"]
    rejected = R.read_rejects(str(tmp_path / "rejects")).to_pylist()
    div_rejects = [r for r in rejected if r[R.SOURCE] == "diverse"]
    assert len(diverse) + len(div_rejects) == 2 and diverse, div_rejects
    assert all(r[S.POLICY_ID] == policy["id"] for r in diverse)
    assert all(r[R.REQUEST_ID].startswith(f"diverse:{policy['id']}:") for r in div_rejects)
    assert manifest["counts"]["in"] == 3
    assert manifest["extra"]["by_source"]["diverse"]["requests"] == 2
