"""The vllm backend without a GPU: config translation, processor wiring, fail-fast error."""

from __future__ import annotations

import pytest

from guardray.llm import LLMBackendError, LLMConfig, generate_dataset
from guardray.llm.ray_llm import (build_vllm_processor, require_gpus, vllm_processor_config,
                                  vllm_sampling_params)

COLUMNS = dict(messages_column="messages", output_column="out", seed_column=None,
               tokens_column=None, error_column=None)


def vllm_cfg(**vllm) -> LLMConfig:
    return LLMConfig(
        backend="vllm", model="Qwen/Qwen2.5-7B-Instruct", batch_size=32, concurrency=2,
        sampling={"max_tokens": 100, "temperature": 0.5, "top_p": 0.9, "stop": ["\n\n"]},
        vllm={"tensor_parallel_size": 2, "max_model_len": 4096, "gpu_memory_utilization": 0.85,
              "accelerator_type": "H100", "engine_kwargs": {"enable_prefix_caching": True},
              **vllm},
    )


def test_processor_config_carries_every_setting():
    from ray.data.llm import vLLMEngineProcessorConfig

    config = vllm_processor_config(vllm_cfg(), capture_errors=True, model_path="/models/qwen")
    assert isinstance(config, vLLMEngineProcessorConfig)
    assert config.model_source == "/models/qwen"
    assert config.engine_kwargs == {
        "tensor_parallel_size": 2, "pipeline_parallel_size": 1, "dtype": "auto",
        "max_model_len": 4096, "gpu_memory_utilization": 0.85, "enable_prefix_caching": True,
        "task_type": "generate",
    }
    assert (config.batch_size, config.concurrency, config.accelerator_type) == (32, 2, "H100")
    assert config.should_continue_on_error is True


def test_hub_ids_pass_through_and_embedded_models_resolve_to_a_folder(tmp_path):
    assert vllm_processor_config(vllm_cfg()).model_source == "Qwen/Qwen2.5-7B-Instruct"
    embedded = vllm_processor_config(LLMConfig(backend="vllm"))
    assert embedded.model_source.endswith("smollm2-135m-instruct")


def test_sampling_params_per_row():
    cfg = vllm_cfg()
    assert vllm_sampling_params(5, cfg, skip=False) == {
        "max_tokens": 100, "temperature": 0.5, "top_p": 0.9, "seed": 5, "stop": ["\n\n"]}
    assert vllm_sampling_params(None, cfg, skip=True)["max_tokens"] == 1


def test_processor_builds_without_gpu_or_vllm(ray_session):
    processor, finalize = build_vllm_processor(LLMConfig(backend="vllm"), COLUMNS)
    assert processor.list_stage_names() == [
        "ChatTemplateStage", "TokenizeStage", "vLLMEngineStage", "DetokenizeStage"]
    assert finalize is None  # errors raise unless an error column is asked for
    _, finalize = build_vllm_processor(LLMConfig(backend="vllm"), {**COLUMNS, "error_column": "e"})
    assert callable(finalize)


def test_no_gpu_fails_fast_naming_the_config_keys(ray_session):
    assert ray_session.cluster_resources().get("GPU", 0) == 0
    with pytest.raises(LLMBackendError) as err:
        require_gpus(vllm_cfg())
    msg = str(err.value)
    assert "needs 2 GPU(s) per engine" in msg and "has 0 GPU(s)" in msg
    assert "llm.vllm.tensor_parallel_size=2" in msg and "llm.backend=transformers" in msg
    assert "llm.vllm.require_gpus=false" in msg
    require_gpus(vllm_cfg(require_gpus=False))  # autoscaling clusters opt out


def test_generate_dataset_with_vllm_raises_before_running_anything(ray_session):
    ds = ray_session.data.from_items([{"messages": [{"role": "user", "content": "hi"}]}])
    with pytest.raises(LLMBackendError, match="a vLLM processor would wait forever"):
        generate_dataset(ds, LLMConfig(backend="vllm"))
