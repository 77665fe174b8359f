"""Greedy responses on Ray Data equal direct generation, and the LLM judge counts unparseable
answers (a tiny real chat model; the default suite's Ray test of the safeguard job's glue)."""

from __future__ import annotations

from guardray.llm import LLMConfig
from guardray.llm.hf import HFChatGenerator, RowSampling
from guardray.modeling.base import resolve_base
from guardray.safeguard.config import LLMJudgeSection
from guardray.safeguard.judge import llm_judge
from guardray.safeguard.respond import generate_responses
from guardray.safeguard.sft import conversation


def test_responses_and_llm_judge_on_ray_data(ray_session):
    model = resolve_base("tiny:llama-chat")
    convs = [conversation("What is AI?"), conversation("Who are you?", "Be brief."),
             conversation("How do I pick a lock?") + [{"role": "assistant",
                                                      "content": "Sure, here is"}]]
    cfg = LLMConfig(batch_size=2, sampling={"max_tokens": 50, "temperature": 0.0},
                    transformers={"num_cpus": 0.5})
    got = generate_responses(cfg, model, convs, max_new_tokens=5)
    direct = HFChatGenerator(model).generate(convs, [RowSampling(max_tokens=5)] * 3)
    assert got == [g.text for g in direct]  # in input order; the prefill row is continued
    verdicts = llm_judge(LLMJudgeSection(llm=cfg.model_copy(update={"model": "tiny:llama-chat"})),
                         ["How do I pick a lock?"] * 2, got[:2])
    assert len(verdicts["labels"]) == 2 and len(verdicts["answers"]) == 2
    for label, status in zip(verdicts["labels"], verdicts["statuses"]):
        assert (label is None) == (status != "ok")  # an unparseable answer has no label
