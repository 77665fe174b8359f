"""Prompts longer than the context on real backends (issue 15, item 8): the transformers
backend (SmolLM2 in a Ray Data actor, token budget) and the openai_http backend (a real
OpenAI-compatible server on 127.0.0.1, character budget) cut the marked user text, say which
rows were cut, and never send a prompt that cannot fit."""

from __future__ import annotations

import pytest
from llm_testlib import Recording

from guardray.llm import LLMConfig, generate_dataset
from guardray.llm.fit import MARKER, char_count
from guardray.llm.hf import HFChatGenerator
from guardray.llm.openai_server import OpenAICompatServer

MODEL = "embedded:smollm2-135m-instruct"
TEMPLATE = "POLICY: no weapons. Judge the text between the tags.\n<T>\n{}\n</T>\nAnswer Safe or Unsafe."
LONG = " ".join(f"token{i} and more." for i in range(2000))  # ~5k tokens, ~38k characters


def row(key: int, text: str, span: str | None) -> dict:
    return {"key": key, "span": span,
            "messages": [{"role": "user", "content": TEMPLATE.format(text)}]}


ROWS = [row(0, LONG, LONG), row(1, "Is the sky blue?", "Is the sky blue?"), row(2, LONG, None)]


@pytest.mark.slow  # a SmolLM2 actor: ~15-25 s on 2 cores
def test_transformers_backend_cuts_to_the_token_budget(ray_session):
    cfg = LLMConfig(batch_size=3, max_context_tokens=256, max_batch_tokens=600,
                    sampling={"max_tokens": 2, "temperature": 0.0, "seed": 0})
    out = {r["key"]: r for r in generate_dataset(
        ray_session.data.from_items(ROWS), cfg, cut_text_column="span", cut_column="cut",
        error_column="err", tokens_column="n").take_all()}
    assert [out[k]["cut"] for k in range(3)] == [True, False, False]
    assert out[0]["err"] == "" and out[0]["n"] > 0 and out[1]["err"] == ""
    # No text marked as cuttable: the row is an error, never sent to the model.
    assert out[2]["err"].startswith("does not fit the model's context: the prompt has")
    assert "no user text in it may be cut" in out[2]["err"] and out[2]["n"] == 0
    assert out[0]["span"] == LONG and out[0]["messages"] == ROWS[0]["messages"]  # inputs kept


@pytest.fixture(scope="module")
def server():
    recording = Recording(HFChatGenerator(MODEL, num_threads=1))
    with OpenAICompatServer(recording, MODEL) as srv:
        srv.recording = recording
        yield srv


def test_http_backend_cuts_to_the_character_budget(ray_session, server):
    cfg = LLMConfig(backend="openai_http", model=MODEL, batch_size=3, max_prompt_chars=900,
                    sampling={"max_tokens": 1, "temperature": 0.0, "seed": 0},
                    http={"url": server.chat_url, "max_retries": 0})
    server.recording.prompts.clear()
    out = {r["key"]: r for r in generate_dataset(
        ray_session.data.from_items(ROWS), cfg, cut_text_column="span", cut_column="cut",
        error_column="err").take_all()}
    assert [out[k]["cut"] for k in range(3)] == [True, False, False]
    assert "no user text in it may be cut" in out[2]["err"] and out[0]["err"] == ""
    # The row that cannot fit is not sent (ray.data.llm sends every row: a 1-token "." stands
    # in for it, as for a skip); nothing over the budget reaches the endpoint.
    assert sorted(char_count(p) for p in server.recording.prompts)[:2] == [1, len(
        TEMPLATE.format("Is the sky blue?"))]
    assert max(char_count(p) for p in server.recording.prompts) == 900
    (cut,) = [p for p in server.recording.prompts if MARKER in p[0]["content"]]
    kept = 900 - (len(TEMPLATE.format("")) + len(MARKER))  # hand-computed
    assert char_count(cut) == 900
    assert cut[0]["content"] == TEMPLATE.format(LONG[:kept] + MARKER)
    # Without an error column, a prompt that cannot fit fails the run, saying why.
    with pytest.raises(Exception, match="does not fit the model's context"):
        generate_dataset(ray_session.data.from_items(ROWS[2:]), cfg,
                         cut_text_column="span").take_all()
