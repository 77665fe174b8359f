"""The openai_http backend through ray.data.llm against a real OpenAI-compatible server on
127.0.0.1 serving SmolLM2 (guardray.llm.openai_server)."""

from __future__ import annotations

import pytest

from guardray.llm import LLMBackendError, LLMConfig, generate_dataset
from guardray.llm.hf import HFChatGenerator, RowSampling
from guardray.llm.messages import row_seed
from guardray.llm.openai_server import OpenAICompatServer
from guardray.llm.ray_llm import http_processor_config

KEY_ENV = "GUARDRAY_TEST_API_KEY"
MODEL = "embedded:smollm2-135m-instruct"


@pytest.fixture(scope="module")
def smol():
    return HFChatGenerator(MODEL, num_threads=1)


@pytest.fixture(scope="module")
def server(smol):
    with OpenAICompatServer(smol, MODEL, api_key="s3cret") as srv:
        yield srv


def http_cfg(server, **changes) -> LLMConfig:
    data = {"backend": "openai_http", "model": MODEL, "batch_size": 2,
            "sampling": {"max_tokens": 6, "temperature": 0.8, "seed": 5},
            "http": {"url": server.chat_url, "api_key_env": KEY_ENV, "max_retries": 1,
                     "retry_wait_s": 0.1, "qps": 50}}
    for key, value in changes.items():
        data[key] = {**data[key], **value} if isinstance(value, dict) else value
    return LLMConfig.model_validate(data)


def test_rows_are_generated_over_http_like_direct_generation(ray_session, server, smol,
                                                             monkeypatch):
    monkeypatch.setenv(KEY_ENV, "s3cret")
    rows = [{"key": i, "messages": [{"role": "user", "content": f"Say hi to {name}."}]}
            for i, name in enumerate(["Ann", "Bob", "Cem"])] + [{"key": 3, "messages": []}]
    ds = ray_session.data.from_items(rows)
    out = sorted(generate_dataset(ds, http_cfg(server), tokens_column="n").take_all(),
                 key=lambda r: r["key"])
    assert set(out[0]) == {"key", "messages", "generated_text", "n"}
    direct = smol.generate([r["messages"] for r in rows[:3]], [
        RowSampling(max_tokens=6, temperature=0.8, seed=row_seed(5, r["messages"]))
        for r in rows[:3]])
    assert [r["generated_text"] for r in out[:3]] == [g.text for g in direct]
    assert [r["n"] for r in out[:3]] == [g.completion_tokens for g in direct]
    assert out[3]["generated_text"] == "" and out[3]["n"] == 0


def test_endpoint_errors_are_captured_or_raised(ray_session, server, monkeypatch):
    rows = [{"key": 0, "messages": [{"role": "user", "content": "hi"}]}]
    monkeypatch.setenv(KEY_ENV, "wrong-key")
    out = generate_dataset(ray_session.data.from_items(rows), http_cfg(server),
                           error_column="err").take_all()
    assert out[0]["generated_text"] == "" and "invalid or missing API key" in out[0]["err"]
    monkeypatch.setenv(KEY_ENV, "s3cret")
    with pytest.raises(Exception, match="model 'no-such-model' does not exist"):
        generate_dataset(ray_session.data.from_items(rows),
                         http_cfg(server, model="no-such-model")).take_all()


def test_missing_api_key_variable_is_a_clear_error(server, monkeypatch):
    monkeypatch.delenv(KEY_ENV, raising=False)
    with pytest.raises(LLMBackendError, match=f"environment variable {KEY_ENV} is not set"):
        http_processor_config(http_cfg(server))


def test_processor_config_carries_rate_limit_retries_and_auth(server, monkeypatch):
    monkeypatch.setenv(KEY_ENV, "s3cret")
    config = http_processor_config(http_cfg(server, concurrency=3, http={"extra_body": {"x": 1}}))
    assert config.url == server.chat_url and config.qps == 50 and config.max_retries == 1
    assert config.headers == {"Authorization": "Bearer s3cret"} and config.concurrency == 3
    assert config.base_retry_wait_time_in_s == 0.1 and config.batch_size == 2
