"""benchmarks/gpu_check.py without a GPU (issue 19): the dry run lists every step with its
needs, the smoke mode runs the pure-torch steps through guardray's code on CPU, a failing step
is reported without ending the run, and a bare machine (no pydantic, Ray, DeepSpeed or vLLM)
skips exactly the steps that need them.

The script runs as a subprocess, as on a GPU node. Packages are made "not installed" for one
run by a ``None`` entry in ``sys.modules`` (what Python does for a blocked import), so the
script's own checks and guardray's imports meet a real ImportError.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "benchmarks" / "gpu_check.py"
PURE_TORCH = ["gip-minilm", "gip-xlmr-large", "embed-minilm", "merge", "finetune-loop",
              "guard-scorer"]
STACKS = ["deepspeed-zero2", "ray-data-embed", "ray-train-gip", "ray-tune-finetune",
          "ray-serve", "vllm-generate"]
STEPS = PURE_TORCH + STACKS
# What the lent GPU machine lacks (pydantic perhaps): with deepspeed installed but pydantic
# blocked, transformers' save_pretrained would import deepspeed and fail, as it never does there.
BARE = ("pydantic", "ray", "deepspeed", "vllm")


def run(*args: str, blocked: tuple[str, ...] = (), timeout: float = 600):
    """Run the script; ``blocked`` packages fail to import in it. One torch thread: the tiny
    models' matrices are too small for two, and the 2-core machine is shared."""
    code = ("import runpy, sys\n"
            f"for name in {list(blocked)!r}:\n"
            "    sys.modules[name] = None\n"
            f"sys.path.insert(0, {str(SCRIPT.parent)!r})\n"
            f"sys.argv = [{str(SCRIPT)!r}, *{list(args)!r}]\n"
            f"runpy.run_path({str(SCRIPT)!r}, run_name='__main__')\n")
    return subprocess.run([sys.executable, "-c", code], check=False, cwd=REPO, capture_output=True,
                          text=True, timeout=timeout, env={**os.environ, "OMP_NUM_THREADS": "1"})


def rows(stdout: str) -> dict[str, list[str]]:
    """The table's cells after the step name, by step, in order."""
    out = {}
    for line in stdout.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if line.startswith("| ") and cells[0] in STEPS:
            out[cells[0]] = cells[1:]
    return out


@pytest.fixture(scope="module")
def tiny_encoder(tmp_path_factory) -> Path:
    """A tiny random XLM-R with a real tokenizer, standing in for MiniLM (seconds on CPU)."""
    from guardray.modeling.tiny import build_tiny_xlmr

    return build_tiny_xlmr(tmp_path_factory.mktemp("encoder") / "tiny")


def test_dry_run_lists_every_step_with_its_needs_and_runs_nothing():
    out = run("--dry-run", "--device", "cpu")
    assert out.returncode == 0, out.stderr
    table = rows(out.stdout)
    assert list(table) == STEPS
    needs = {step: cells[1] for step, cells in table.items()}
    assert needs["gip-xlmr-large"].split(", ")[:3] == ["cpu", "torch", "transformers"]
    assert "guardray.pretrain.step" in needs["gip-minilm"]
    assert "guardray.merge.api" in needs["merge"]
    assert "deepspeed" in needs["deepspeed-zero2"] and "deepspeed" in needs["ray-train-gip"]
    assert all("ray" in needs[s].split(", ") for s in STACKS[1:])
    assert needs["vllm-generate"].startswith("cuda, ray, vllm")  # a GPU even with --device cpu
    here = {step: cells[2] for step, cells in table.items()}
    assert all(here[s] == "ready" for s in PURE_TORCH + STACKS[:-1])
    assert here["vllm-generate"].startswith("would skip: cuda: no CUDA GPU")
    assert "vllm: not installed" in here["vllm-generate"]
    assert "torch " in out.stdout and "optional: ray present" in out.stdout
    assert "| ok |" not in out.stdout and "[gpu_check]" not in out.stderr  # nothing ran


def test_on_a_machine_without_a_gpu_cuda_steps_are_skipped_not_failed():
    out = run("--only", "gip-xlmr-large,merge")  # default --device cuda
    assert out.returncode == 0, out.stderr
    table = rows(out.stdout)
    assert [c[0] for c in table.values()] == ["skipped", "skipped"]
    assert table["merge"][2].startswith("cuda: no CUDA GPU")


def test_a_bare_machine_skips_exactly_the_steps_that_need_what_is_missing():
    out = run("--dry-run", "--device", "cpu", blocked=BARE)
    assert out.returncode == 0, out.stderr
    here = {step: cells[2] for step, cells in rows(out.stdout).items()}
    for step in ("gip-minilm", "gip-xlmr-large", "embed-minilm", "finetune-loop",
                 "guard-scorer"):
        assert here[step] == "ready", (step, here[step])
    assert here["merge"] == "would skip: guardray.merge.api: needs pydantic (not installed)"
    assert here["deepspeed-zero2"] == "would skip: deepspeed: not installed"
    assert "ray: not installed" in here["ray-serve"]
    assert "guardray.serve.config: needs pydantic" in here["ray-serve"]
    assert "optional: ray absent, deepspeed absent" in out.stdout


def test_smoke_mode_runs_the_pure_torch_steps_on_a_bare_machine(tiny_encoder, tmp_path):
    """Without pydantic, Ray, DeepSpeed or vLLM every pure-torch step runs through guardray's
    code, except the merge, which is skipped with its reason."""
    md, js = tmp_path / "check.md", tmp_path / "check.json"
    out = run("--device", "cpu", "--smoke", "--model", str(tiny_encoder), "--only",
              ",".join(PURE_TORCH), "--out", str(md), "--json", str(js), blocked=BARE)
    assert out.returncode == 0, out.stdout + out.stderr[-3000:]
    table = rows(out.stdout)
    assert {s: c[0] for s, c in table.items()} == {**dict.fromkeys(PURE_TORCH, "ok"),
                                                    "merge": "skipped"}
    figures = {step: cells[2] for step, cells in table.items()}
    assert "tokens/s" in figures["gip-minilm"] and "tokens/s" in figures["gip-xlmr-large"]
    assert "min cosine vs cpu 1" in figures["embed-minilm"]
    assert "val F1" in figures["finetune-loop"] and "pairs/s" in figures["guard-scorer"]
    assert figures["merge"] == "guardray.merge.api: needs pydantic (not installed)"
    assert "sizes: smoke" in out.stdout and "device: cpu" in out.stdout
    assert rows(md.read_text()) == table
    results = {r["step"]: r for r in json.loads(js.read_text())["results"]}
    assert list(results) == PURE_TORCH
    assert results["gip-xlmr-large"]["figures"]["params M"] > 8  # XLM-R's 250k vocabulary


def test_a_failing_step_is_reported_and_the_next_one_still_runs():
    """A model that does not exist fails its step with the error's first line; the merge
    after it runs (and agrees with the CPU); any failure makes the exit code 1."""
    out = run("--device", "cpu", "--smoke", "--model", "/no/such/encoder", "--only",
              "gip-minilm,merge")
    assert out.returncode == 1, out.stdout + out.stderr[-3000:]
    table = rows(out.stdout)
    assert [c[0] for c in table.values()] == ["failed", "ok"]
    assert "/no/such/encoder" in table["gip-minilm"][2] and "Traceback" in out.stderr
    assert "max abs diff 0" in table["merge"][2]


def test_unknown_steps_are_refused_with_the_valid_names():
    out = run("--only", "gip,merge")
    assert out.returncode == 2
    assert "unknown step(s) ['gip']" in out.stderr and "gip-xlmr-large" in out.stderr


@pytest.mark.slow
def test_smoke_mode_runs_the_deepspeed_and_ray_steps_on_cpu(tiny_encoder, tmp_path):
    """About two minutes on 2 cores: DeepSpeed, Ray Data, Ray Train, Ray Tune and Ray Serve
    through guardray's entry points on CPU; vLLM is skipped (it needs a GPU)."""
    pytest.importorskip("ray")
    pytest.importorskip("deepspeed")
    out = run("--device", "cpu", "--smoke", "--model", str(tiny_encoder), "--only",
              ",".join(STACKS))
    assert out.returncode == 0, out.stdout + out.stderr[-3000:]
    table = rows(out.stdout)
    assert {s: c[0] for s, c in table.items()} == {**dict.fromkeys(STACKS[:-1], "ok"),
                                                    "vllm-generate": "skipped"}
    assert "tokens/s" in table["ray-train-gip"][2] and "trials 2" in table["ray-tune-finetune"][2]
