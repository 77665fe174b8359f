"""Prefilled assistant turns: a conversation ending with an assistant message is continued,
and the output is the continuation only. A real tiny Llama with a word tokenizer and a small
chat template (set here), on every backend path that runs without a GPU."""

from __future__ import annotations

import asyncio

import pytest
import torch

from guardray.llm import LLMConfig, generate_dataset
from guardray.llm.context import PromptFitter
from guardray.llm.errors import LLMBackendError
from guardray.llm.hf import HFChatGenerator, RowSampling
from guardray.llm.messages import chat_template_flags, continues_final_message
from guardray.llm.openai_server import OpenAICompatServer
from guardray.llm.ray_llm import http_payload

# User turns open with w1, assistant turns with w2, every turn ends with </s> (id 3).
TEMPLATE = ("{% for m in messages %}{% if m['role'] == 'user' %}w1 {% else %}w2 {% endif %}"
            "{{ m['content'] }} </s> {% endfor %}{% if add_generation_prompt %}w2 {% endif %}")
ASK = [{"role": "user", "content": "w5 w6"}]
PREFILL = [*ASK, {"role": "assistant", "content": "w7 w8"}]
GREEDY = RowSampling(max_tokens=6, temperature=0.0)


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    from transformers import AutoTokenizer

    from guardray.modeling.tiny import build_llama_family

    path = build_llama_family(tmp_path_factory.mktemp("prefill"), 0)["base"]
    tokenizer = AutoTokenizer.from_pretrained(path)
    tokenizer.chat_template = TEMPLATE
    tokenizer.save_pretrained(path)
    return str(path)


@pytest.fixture(scope="module")
def gen(model_dir):
    return HFChatGenerator(model_dir, num_threads=1)


def ids(gen, words: str) -> list[int]:
    return gen.tokenizer(words, add_special_tokens=False)["input_ids"]


def plain_greedy(gen, prompt: list[int], max_tokens: int) -> tuple[str, int]:
    """(text, tokens) of plain ``model.generate`` on ``prompt``, cut at the first eos."""
    out = gen.model.generate(input_ids=torch.tensor([prompt]), max_new_tokens=max_tokens,
                             do_sample=False, eos_token_id=gen.eos_ids, pad_token_id=0)
    new = out[0, len(prompt):].tolist()
    for i, tok in enumerate(new):
        if tok in gen.eos_ids:
            new = new[:i]
            break
    return gen.tokenizer.decode(new, skip_special_tokens=True), len(new)


def test_flags_continue_only_a_final_assistant_message():
    assert chat_template_flags(ASK) == {"add_generation_prompt": True,
                                        "continue_final_message": False}
    assert chat_template_flags(PREFILL) == {"add_generation_prompt": False,
                                            "continue_final_message": True}
    assert continues_final_message(PREFILL) and not continues_final_message(ASK)
    assert not continues_final_message([]) and not continues_final_message(
        [*PREFILL, {"role": "user", "content": "w9"}])


def test_prompt_ends_with_the_prefix_and_no_end_of_turn(gen):
    fresh = ids(gen, "w1 w5 w6 </s> w2")
    assert fresh[-2:] == [3, ids(gen, "w2")[0]]  # </s> is id 3
    assert gen._encode_one(ASK) == fresh
    assert gen._encode_one(PREFILL) == fresh + ids(gen, "w7 w8")
    assert gen.count_tokens(PREFILL) == len(fresh) + 2


def test_greedy_continuation_matches_plain_generate(gen):
    prompt = ids(gen, "w1 w5 w6 </s> w2 w7 w8")
    text, n = plain_greedy(gen, prompt, 6)
    [ours] = gen.generate([PREFILL], [GREEDY])
    assert (ours.text, ours.completion_tokens, ours.prompt_tokens) == (text, n, len(prompt))
    assert not ours.text.startswith("w7 w8")  # the continuation only
    # Batched with a fresh turn (left padding), the prefilled row is unchanged.
    fresh, prefilled = gen.generate([ASK, PREFILL], [GREEDY, GREEDY])
    assert prefilled.text == ours.text
    assert fresh.text == plain_greedy(gen, ids(gen, "w1 w5 w6 </s> w2"), 6)[0]


def test_a_template_that_drops_the_final_message_is_a_clear_error(model_dir):
    gen = HFChatGenerator(model_dir, num_threads=1)
    gen.tokenizer.chat_template = ("{% for m in messages %}{% if m['role'] == 'user' %}"
                                   "w1 {{ m['content'] }} </s> {% endif %}{% endfor %}w2 ")
    with pytest.raises(LLMBackendError, match="transformers backend: the chat template of .* "
                                               "cannot continue a final assistant message"):
        gen.generate([PREFILL], [GREEDY])
    assert gen.generate([ASK], [GREEDY])[0].prompt_tokens == 5  # fresh turns still work


def test_http_payload_asks_vllm_to_continue_prefilled_rows_only():
    cfg = LLMConfig(backend="openai_http", model="m", sampling={"max_tokens": 5},
                    http={"url": "http://127.0.0.1:1/v1/chat/completions",
                          "extra_body": {"add_generation_prompt": True, "top_k": 3}})
    plain = http_payload(ASK, 7, cfg, skip=False)
    assert "continue_final_message" not in plain and plain["add_generation_prompt"] is True
    body = http_payload(PREFILL, 7, cfg, skip=False)
    assert body["messages"] == PREFILL and body["top_k"] == 3 and body["seed"] == 7
    assert (body["continue_final_message"], body["add_generation_prompt"]) == (True, False)


def test_vllm_chat_template_stage_renders_the_same_prompt(model_dir, gen):
    """ray.data.llm's chat-template stage (the vllm backend's first stage) continues a final
    assistant message by itself: guardray sends plain ``messages``."""
    from ray.llm._internal.batch.stages.chat_template_stage import ChatTemplateUDF

    udf = ChatTemplateUDF(data_column="__data", expected_input_keys=["messages"],
                          model=model_dir)
    rows = [{udf.IDX_IN_BATCH_COLUMN: i, "messages": m} for i, m in enumerate([ASK, PREFILL])]

    async def render():
        return [r["prompt"] async for r in udf.udf(rows)]

    prompts = asyncio.run(render())
    assert [ids(gen, p) for p in prompts] == [gen._encode_one(ASK), gen._encode_one(PREFILL)]


def test_transformers_backend_continues_and_fits_prefilled_rows(ray_session, model_dir, gen):
    long_text = " ".join(f"w{10 + i % 40}" for i in range(80))  # over the 64-token context
    rows = [{"key": 0, "span": "w5 w6", "messages": PREFILL},
            {"key": 1, "span": long_text, "messages": [
                {"role": "user", "content": long_text},
                {"role": "assistant", "content": "w7 w8"}]}]
    cfg = LLMConfig(model=model_dir, batch_size=2, sampling={"max_tokens": 6,
                                                              "temperature": 0.0})
    out = {r["key"]: r for r in generate_dataset(
        ray_session.data.from_items(rows), cfg, cut_text_column="span", cut_column="cut",
        error_column="err", tokens_column="n").take_all()}
    assert [out[k]["err"] for k in (0, 1)] == ["", ""]
    assert [out[k]["cut"] for k in (0, 1)] == [False, True]
    fitted = PromptFitter(cfg, gen.tokenizer, gen.context_length).fit(rows[1]["messages"],
                                                                     long_text)
    assert fitted.cut and fitted.messages[-1] == PREFILL[-1]  # the prefix survives the cut
    direct = gen.generate([PREFILL, fitted.messages], [GREEDY, GREEDY])
    assert [out[k]["generated_text"] for k in (0, 1)] == [g.text for g in direct]
    assert [out[k]["n"] for k in (0, 1)] == [g.completion_tokens for g in direct]


def test_http_backend_continues_prefilled_rows(ray_session, model_dir, gen):
    with OpenAICompatServer(gen, model_dir) as server:
        cfg = LLMConfig(backend="openai_http", model=model_dir, batch_size=2,
                        sampling={"max_tokens": 6, "temperature": 0.0},
                        http={"url": server.chat_url, "api_key_env": None, "max_retries": 0})
        rows = [{"key": 0, "messages": PREFILL}, {"key": 1, "messages": ASK}]
        out = {r["key"]: r["generated_text"] for r in generate_dataset(
            ray_session.data.from_items(rows), cfg).take_all()}
    direct = gen.generate([PREFILL, ASK], [GREEDY, GREEDY])
    assert [out[0], out[1]] == [g.text for g in direct]
    assert out[0] != out[1]
