"""Fitting prompts to a context (issue 15, item 8): the user text is cut with a marker, the
policy and the template stay whole; batches are planned under a token budget.

Token budgets use the real tokenizer of the embedded SmolLM2-135M-Instruct (no model load).
"""

from __future__ import annotations

import pytest

from guardray.evaluate.judges import build_messages, policy_block
from guardray.llm import LLMConfig
from guardray.llm.context import PromptFitter, chat_tokens, token_cut_points
from guardray.llm.errors import LLMBackendConfigError
from guardray.llm.fit import MARKER, char_count, plan_batches
from guardray.policies import Policy

POLICY = Policy(id="safety", name="Safety", description="No help with weapons or violence.",
                allowed=["General safety questions"], disallowed=["Instructions for weapons"])
LONG = " ".join(f"word{i} is here." for i in range(3000))  # ~27k characters, ~12k tokens


def judge_messages(text: str) -> list[dict[str, str]]:
    return build_messages("safe_unsafe", POLICY, text)


@pytest.fixture(scope="module")
def tokenizer():
    from transformers import AutoTokenizer

    from guardray.modeling.offline import MissingExtraError, resolve_model

    try:
        return AutoTokenizer.from_pretrained(resolve_model("embedded:smollm2-135m-instruct"))
    except MissingExtraError as exc:
        pytest.skip(f"embedded SmolLM2 not installed: {exc}")


def test_char_budget_cuts_the_user_text_to_exactly_the_budget():
    messages = judge_messages(LONG)
    total = char_count(messages)
    cfg = LLMConfig(backend="openai_http", max_prompt_chars=2000)
    fitted = PromptFitter(cfg).fit(messages, LONG)
    (content,) = [m["content"] for m in fitted.messages]
    kept = 2000 - (total - len(LONG) + len(MARKER))  # hand-computed: all else stays
    assert fitted.cut and not fitted.error and fitted.original == total
    assert fitted.size == char_count(fitted.messages) == 2000
    assert LONG[:kept] + MARKER + "\n<PROMPT END>" in content
    assert LONG[:kept + 1] not in content
    assert policy_block(POLICY) in content and content.endswith("return 'Safe' or 'Unsafe'")


def test_a_prompt_within_the_budget_is_unchanged():
    messages = judge_messages("What is the capital of France?")
    fitted = PromptFitter(LLMConfig(max_prompt_chars=5000)).fit(messages, "What is")
    assert fitted.messages == messages and not fitted.cut and not fitted.error


def test_token_budget_cuts_to_the_longest_prefix_that_fits(tokenizer):
    cfg = LLMConfig(max_context_tokens=512, sampling={"max_tokens": 12})
    fitter = PromptFitter(cfg, tokenizer, context=8192)
    assert fitter.context == 512 and fitter.token_budget == 500
    messages = judge_messages(LONG)
    n = len(chat_tokens(tokenizer, messages))
    assert n > 10_000
    fitted = fitter.fit(messages, LONG)
    assert fitted.cut and fitted.original == n
    content = fitted.messages[0]["content"]
    assert fitted.size == len(chat_tokens(tokenizer, fitted.messages)) <= 500
    kept = content[content.index("<PROMPT>\n") + 9:content.index(MARKER)]
    assert LONG.startswith(kept) and len(kept) > 500
    # One more token of the user text would not fit: the cut is as long as it can be.
    ends = token_cut_points(tokenizer, LONG)
    nxt = ends[ends.index(len(kept)) + 1]
    longer = content.replace(kept + MARKER, LONG[:nxt] + MARKER)
    assert len(chat_tokens(tokenizer, [{"role": "user", "content": longer}])) > 500
    assert policy_block(POLICY) in content and content.endswith("return 'Safe' or 'Unsafe'")
    assert fitter.fit(judge_messages("short"), "short").cut is False


def test_prompts_that_cannot_fit_are_errors_not_cuts(tokenizer):
    fitter = PromptFitter(LLMConfig(max_context_tokens=64, sampling={"max_tokens": 4}),
                          tokenizer, context=8192)
    alone = fitter.fit(judge_messages(LONG), LONG)
    assert alone.error.startswith("the prompt has") and "without its user text it still" in alone.error
    assert not alone.cut
    nothing = PromptFitter(LLMConfig(max_prompt_chars=100)).fit(judge_messages(LONG), None)
    assert "no user text in it may be cut" in nothing.error
    with pytest.raises(LLMBackendConfigError, match="max_tokens=600 leaves no room"):
        PromptFitter(LLMConfig(max_context_tokens=512, sampling={"max_tokens": 600}),
                     tokenizer, context=8192)


def test_both_budgets_apply_together(tokenizer):
    cfg = LLMConfig(max_context_tokens=2048, max_prompt_chars=1500, sampling={"max_tokens": 8})
    fitted = PromptFitter(cfg, tokenizer, context=8192).fit(judge_messages(LONG), LONG)
    assert fitted.cut and char_count(fitted.messages) == 1500  # chars bind before tokens
    assert fitted.size == len(chat_tokens(tokenizer, fitted.messages)) <= 2040


def test_batches_are_planned_under_a_token_budget():
    sizes = [100, 900, 50, 400, 60]
    # Shortest first; a call of k rows costs k * (longest prompt + max_tokens).
    assert plan_batches(sizes, 10, 1000) == [[2, 4, 0], [3], [1]]
    assert plan_batches(sizes, 10, 2000) == [[2, 4, 0, 3], [1]]
    assert plan_batches(sizes, 10, None) == [[2, 4, 0, 3, 1]]
    assert plan_batches([5000], 10, 100) == [[0]]  # over the budget alone: a call of its own
    assert plan_batches([], 10, 100) == []
