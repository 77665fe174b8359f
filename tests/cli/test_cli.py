"""The guardray command line, run as a user runs it (a real subprocess)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def guardray(*args: str, cwd: Path = REPO) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "guardray", *args], cwd=cwd, capture_output=True, text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"}, timeout=300,
    )


def test_help_lists_commands():
    r = guardray("--help")
    assert r.returncode == 0
    for cmd in ("version", "policies", "models", "pipeline"):
        assert cmd in r.stdout


def test_version():
    r = guardray("version")
    assert r.returncode == 0 and r.stdout.startswith("guardray 0.")
    assert "ray 2." in r.stdout and "torch 2." in r.stdout


def test_policies_validate_ok():
    r = guardray("policies", "validate", "configs/policies")
    assert r.returncode == 0, r.stderr
    assert [l.split()[1] for l in r.stdout.splitlines()] == ["finance", "injection", "safety", "tax"]


def test_policies_validate_bad_file_names_file_field_problem(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("id: ok\nname: X\ndescription: d\nallowed: [a]\ndisallowed: []\n")
    r = guardray("policies", "validate", "configs/policies/tax.yaml", str(bad))
    assert r.returncode == 2
    assert f"{bad}: disallowed: List should have at least 1 item" in r.stderr
    assert r.stdout == ""  # nothing reported as ok when any file is bad


def test_policies_show():
    r = guardray("policies", "show", "configs/policies/finance.yaml")
    assert r.returncode == 0 and r.stdout.startswith("Avoid Financial Advice\n")


def test_pipeline_print_config_with_override():
    r = guardray("pipeline", "--config", "configs/debug/pipeline.yaml", "seed=7", "--print-config")
    assert r.returncode == 0, r.stderr
    assert "seed: 7" in r.stdout and "job: pipeline" in r.stdout


def test_pipeline_bad_override_lists_valid_keys():
    r = guardray("pipeline", "--config", "configs/debug/pipeline.yaml", "ray.cpus=2", "--print-config")
    assert r.returncode == 2
    assert "ray.cpus: unknown key (did you mean 'num_cpus'?); valid keys here: address, dashboard, num_cpus" in r.stderr


def test_import_guardray_is_light():
    code = (
        "import sys, guardray, guardray.cli, guardray.config, guardray.policies, guardray.io, "
        "guardray.schema, guardray.modeling.offline; "
        "heavy = sorted(m for m in ('ray', 'deepspeed', 'vllm', 'torch', 'transformers') if m in sys.modules); "
        "print(heavy)"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "[]"


def _job_script(job: str, *args: str) -> subprocess.CompletedProcess:
    """``python jobs/<job>.py ...`` from another folder, as ``ray job submit`` runs it."""
    return subprocess.run(
        [sys.executable, str(REPO / "jobs" / f"{job}.py"), *args], cwd=REPO.parent,
        capture_output=True, text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"}, timeout=300,
    )


def _one_error_line(r: subprocess.CompletedProcess, job: str, expected: str) -> None:
    assert r.returncode == 1, r.stderr[-2000:]
    errors = [line for line in r.stderr.splitlines() if "ERROR" in line]
    assert len(errors) == 1 and f"{job} failed: " in errors[0] and expected in errors[0], r.stderr
    assert "Traceback" not in r.stderr


def test_expected_errors_end_the_same_way_from_the_cli_and_the_job_script(tmp_path):
    """Bad data: one line naming it and exit status 1, before Ray starts, however launched."""
    missing = tmp_path / "no-such-shards"
    args = ("--config", str(REPO / "configs" / "debug" / "pretrain.yaml"),
            f"data.path={missing}", f"output_dir={tmp_path / 'out'}",
            f"storage_path={tmp_path / 'ray'}")
    for r in (guardray("pretrain", *args), _job_script("pretrain", *args)):
        _one_error_line(r, "pretrain", str(missing))
        assert "starting a local Ray instance" not in r.stderr
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(f"merge_method: linear\nmodels:\n  - model: {tmp_path / 'nope'}\n")
    for r in (guardray("merge", str(recipe), str(tmp_path / "m")),
              _job_script("merge", "--config", str(recipe), f"output_dir={tmp_path / 'm'}")):
        _one_error_line(r, "merge", "nope")


def test_a_config_error_exits_2_from_the_job_script(tmp_path):
    r = _job_script("dedup", "--config", str(REPO / "configs" / "debug" / "dedup.yaml"),
                    "no_such_key=1")
    assert r.returncode == 2 and "no_such_key" in r.stderr and "Traceback" not in r.stderr


def test_bad_shards_and_unwritable_outputs_end_with_one_line_both_ways(tmp_path):
    """Issue 15, item 3: a truncated shard and an output that is a file, before Ray starts,
    from ``guardray dedup`` and from ``python jobs/dedup.py`` (what ``ray job submit`` runs)."""
    from guardray import schema as S
    from guardray.io.shards import write_shard

    text = "How do I report freelance income?"
    row = {S.ID: S.sample_id("tax", text), S.POLICY_ID: "tax", S.TEXT: text, S.RATIONALE: "",
           S.LABEL: 1, S.LABEL_INITIAL: 1, S.SOURCE: "seed", S.GENERATOR: "test",
           S.SPLIT: "train"}
    shard = Path(write_shard([row], tmp_path / "in", index=0))
    (tmp_path / "taken").write_text("a file")
    cfg = str(REPO / "configs" / "debug" / "dedup.yaml")
    args = ("--config", cfg, f"input_dir={tmp_path / 'in'}",
            f"output_dir={tmp_path / 'taken' / 'out'}")
    for r in (guardray("dedup", *args), _job_script("dedup", *args)):
        _one_error_line(r, "dedup", f"output_dir: output {tmp_path / 'taken' / 'out'}")
        assert "starting a local Ray instance" not in r.stderr
    shard.write_bytes(shard.read_bytes()[:40])
    args = (*args[:3], f"output_dir={tmp_path / 'out'}")
    for r in (guardray("dedup", *args), _job_script("dedup", *args)):
        _one_error_line(r, "dedup", f"shard '{shard}' is not readable Parquet")
