"""The cluster manifests are valid YAML, point at jobs and configs that exist, and agree on versions."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parent.parent
CLUSTER = REPO / "cluster"


def canonical(name: str) -> str:
    """PEP 503 name: case-insensitive, runs of -_. are one '-'."""
    return re.sub(r"[-_.]+", "-", name).lower()


def load(rel: str):
    return yaml.safe_load((CLUSTER / rel).read_text())


def test_rayjob_entrypoint_runs_an_existing_job_with_an_existing_config():
    job = load("kuberay/rayjob-pipeline.yaml")
    assert job["kind"] == "RayJob"
    argv = shlex.split(job["spec"]["entrypoint"])
    assert argv[:2] == ["python", "jobs/pipeline.py"]
    assert (REPO / argv[1]).is_file()
    config = argv[argv.index("--config") + 1]
    assert (REPO / config).is_file()
    yaml.safe_load(job["spec"]["runtimeEnvYAML"])  # embedded runtime env is YAML too


@pytest.mark.parametrize("rel", ["kuberay/raycluster.yaml", "kuberay/rayjob-pipeline.yaml"])
def test_kuberay_ray_version_matches_constraints(rel):
    doc = load(rel)
    spec = doc["spec"].get("rayClusterSpec", doc["spec"])
    pinned = re.search(r"^ray==(\S+)$", (REPO / "constraints.txt").read_text(), re.M).group(1)
    assert spec["rayVersion"] == pinned


def _pins() -> dict[str, str]:
    return {
        canonical(name): version
        for name, version in (
            l.split("==", 1) for l in (REPO / "constraints.txt").read_text().splitlines()
            if "==" in l and not l.startswith("#")
        )
    }


@pytest.mark.parametrize("rel", ["runtime_env.yaml", "runtime_env_stock_image.yaml"])
def test_runtime_envs_upload_the_checkout_without_venvs_and_agree(rel):
    """Both runtime envs upload the checkout (never a venv or outputs) with the same
    environment variables; the KubeRay RayJob's runtime env sets the same variables."""
    env = load(rel)
    assert env["working_dir"] == "."
    for folder in (".venv/", ".venv-gpuset/", ".git/", "outputs/"):
        assert folder in env["excludes"], folder
    assert env["env_vars"] == load("runtime_env.yaml")["env_vars"]
    assert env["env_vars"]["LD_PRELOAD"] == ""  # see the comment in runtime_env.yaml
    job = yaml.safe_load(load("kuberay/rayjob-pipeline.yaml")["spec"]["runtimeEnvYAML"])
    assert job["env_vars"] == env["env_vars"]


def test_runtime_env_of_the_image_installs_nothing():
    assert "pip" not in load("runtime_env.yaml")  # dependencies come from the image / nodes


def test_stock_image_runtime_env_installs_every_dependency_at_the_tested_pins():
    import tomllib

    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    needed = [*project["dependencies"], *project["optional-dependencies"]["deepspeed"],
              *project["optional-dependencies"]["local"]]
    needed = {canonical(re.split(r"[\[<>=!~ ;]", d, maxsplit=1)[0]) for d in needed} - {"ray"}
    pins = _pins()
    listed = {}
    for spec in load("runtime_env_stock_image.yaml")["pip"]["packages"]:
        name, version = spec.split("==")
        assert pins.get(canonical(name)) == version, f"{spec} disagrees with constraints.txt"
        listed[canonical(name)] = version
    assert needed <= set(listed), f"missing: {sorted(needed - set(listed))}"


def test_dockerfile_base_matches_ray_pin():
    text = (CLUSTER / "Dockerfile").read_text()
    pinned = re.search(r"^ray==(\S+)$", (REPO / "constraints.txt").read_text(), re.M).group(1)
    assert f"rayproject/ray:{pinned}-py311" in text
    assert "ARG CONSTRAINTS=constraints.txt" in text and "-c ${CONSTRAINTS}" in text


def test_dockerfile_gpu_build_uses_the_gpu_set():
    """The GPU build line in the Dockerfile's header names the GPU set and the vllm extra, and
    the image copies both sets."""
    text = (CLUSTER / "Dockerfile").read_text()
    gpu_build = text[text.index("GPU: docker build"):].split("\n# Then")[0]
    assert "CONSTRAINTS=constraints-gpu.txt" in gpu_build and "EXTRAS=deepspeed,vllm" in gpu_build
    copy = next(ln for ln in text.splitlines() if ln.startswith("COPY") and "pyproject" in ln)
    assert "constraints.txt" in copy.split() and "constraints-gpu.txt" in copy.split()


def test_launcher_config_shape():
    cfg = load("launcher/aws.yaml")
    assert cfg["head_node_type"] in cfg["available_node_types"]
    assert cfg["provider"]["type"] == "aws"
