"""The CPU and GPU dependency sets resolve, pin everything, and differ only where vLLM forces it.

Resolution is real: uv (guardray's dev extra) against PyPI, for Linux x86-64 / CPython 3.11,
the GPU nodes' platform. uv caches package metadata, so a repeat run takes seconds.
"""

from __future__ import annotations

import importlib.util
import re
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
_spec = importlib.util.spec_from_file_location("depsets", REPO / "cluster" / "depsets.py")
depsets = sys.modules["depsets"] = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(depsets)

CPU = depsets.read_pins(depsets.CPU_SET)
GPU = depsets.read_pins(depsets.GPU_SET)
CHANGED = {n for n in CPU if n in GPU and CPU[n] != GPU[n]}


def test_read_pins_canonical_names_and_comments(tmp_path):
    f = tmp_path / "c.txt"
    f.write_text("# header\nPyYAML==6.0.3  # comment\nsentence_transformers==6.2.0\n-e .\n\n")
    assert depsets.read_pins(f) == {"pyyaml": "6.0.3", "sentence-transformers": "6.2.0"}
    f.write_text("torch>=2.4\n")
    with pytest.raises(ValueError, match="not an exact pin"):
        depsets.read_pins(f)


def test_gpu_set_keeps_every_cpu_package_and_adds_vllm():
    assert set(CPU) <= set(GPU)
    assert GPU["vllm"] == depsets.VLLM.split("==")[1]
    # the versions the issue names: vLLM 0.33 pins torch 2.14 and transformers < 5.21
    assert GPU["torch"].startswith("2.14.") and GPU["transformers"] < "5.21"


def test_gpu_header_lists_exactly_the_changed_pins_with_a_reason():
    header = [ln for ln in depsets.GPU_SET.read_text().splitlines() if ln.startswith("#   ")]
    listed = {}
    for ln in header[1:]:  # the first indented line is the pip command
        m = re.match(r"#   (\S+) (\S+) -> (\S+): (.+)", ln)
        assert m, ln
        listed[m.group(1)] = (m.group(2), m.group(3), m.group(4))
    assert set(listed) == CHANGED
    for name, (cpu, gpu, why) in listed.items():
        assert (cpu, gpu) == (CPU[name], GPU[name])
        assert "depends on" in why


@pytest.mark.parametrize("label", ["CPU", "GPU"])
def test_set_resolves_and_pins_every_package(label):
    extras, pins = (depsets.CPU_EXTRAS, CPU) if label == "CPU" else (depsets.GPU_EXTRAS, GPU)
    res = depsets.resolve(extras, pins)
    assert res.ok, res.reason
    allow = depsets.CUDA_ONLY if label == "CPU" else re.compile("$^")
    assert depsets.unpinned(res.pins, pins, allow=allow) == []
    assert {n: v for n, v in res.pins.items() if n in pins} == {
        n: pins[n] for n in res.pins if n in pins}


@pytest.mark.parametrize("name", sorted(CHANGED))
def test_each_difference_is_forced_by_vllm(name):
    """Keeping this package's CPU pin (all other CPU pins kept too, but the other changed ones)
    makes the GPU set unresolvable, and the resolver says which requirement forbids it."""
    why = depsets.forced_reason(CPU, CHANGED, name)
    assert name in why and "depends on" in why


def test_a_needless_difference_is_caught():
    """The check is not vacuous: a package whose CPU pin the GPU set could keep is reported."""
    assert depsets.forced_reason(CPU, CHANGED | {"tqdm"}, "tqdm") == ""


def test_broken_set_reports_the_resolver_reason():
    res = depsets.resolve(depsets.GPU_EXTRAS, dict(CPU), extra_requirements=(depsets.VLLM,))
    assert not res.ok and "vllm" in res.reason and "depends on" in res.reason
