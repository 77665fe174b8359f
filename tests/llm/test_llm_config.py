"""LLMConfig / SamplingConfig validation and the lazy-import contract of guardray.llm."""

from __future__ import annotations

import subprocess
import sys

import pytest

from guardray.config import ConfigError, load_config
from guardray.llm import LLMConfig, SamplingConfig


def test_defaults_are_the_embedded_model_on_cpu():
    cfg = LLMConfig()
    assert cfg.backend == "transformers"
    assert cfg.model == "embedded:smollm2-135m-instruct"
    assert cfg.transformers.device == "cpu" and cfg.sampling.seed == 0


def test_unknown_backend_lists_the_valid_ones():
    with pytest.raises(ConfigError) as err:
        load_config(LLMConfig, data={"backend": "llamacpp"})
    msg = str(err.value)
    assert "backend" in msg and "'transformers', 'openai_http' or 'vllm'" in msg


def test_unknown_key_in_a_backend_section_names_valid_keys():
    with pytest.raises(ConfigError, match=r"http\.qsp: unknown key \(did you mean 'qps'\?\)"):
        load_config(LLMConfig, data={"http": {"qsp": 3}})


@pytest.mark.parametrize("data, field", [
    ({"sampling": {"temperature": -0.1}}, "sampling.temperature"),
    ({"sampling": {"top_p": 0}}, "sampling.top_p"),
    ({"sampling": {"max_tokens": 0}}, "sampling.max_tokens"),
    ({"sampling": {"stop": [""]}}, "sampling.stop"),
    ({"http": {"url": "127.0.0.1:8000"}}, "http.url"),
    ({"http": {"api_key_env": "sk-live-123"}}, "http.api_key_env"),
    ({"transformers": {"device": "gpu"}}, "transformers.device"),
    ({"batch_size": 0}, "batch_size"),
])
def test_bad_values_name_the_field(data, field):
    with pytest.raises(ConfigError, match=field.replace(".", r"\.")):
        load_config(LLMConfig, data=data)


def test_with_sampling_validates_and_copies():
    cfg = LLMConfig()
    other = cfg.with_sampling(max_tokens=7, temperature=0)
    assert (other.sampling.max_tokens, other.sampling.temperature) == (7, 0)
    assert cfg.sampling.max_tokens == SamplingConfig().max_tokens
    with pytest.raises(ValueError):
        cfg.with_sampling(max_tokens=-1)


def test_vllm_gpus_per_engine():
    cfg = LLMConfig(backend="vllm", vllm={"tensor_parallel_size": 2, "pipeline_parallel_size": 3})
    assert cfg.vllm.gpus_per_engine == 6


def test_import_guardray_llm_imports_no_heavy_library():
    code = ("import sys, guardray.llm, guardray.llm.stage, guardray.llm.config, "
            "guardray.serve, guardray.generate.config, guardray.generate.stage; "
            "print(sorted(m for m in ('ray', 'torch', 'vllm', 'transformers') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
