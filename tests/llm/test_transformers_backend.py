"""generate_dataset with the transformers backend: real SmolLM2 in Ray Data actors."""

from __future__ import annotations

import pytest

from guardray.llm import LLMConfig, generate_dataset
from guardray.llm.hf import HFChatGenerator, RowSampling
from guardray.llm.messages import row_seed

CFG = LLMConfig(batch_size=2, sampling={"max_tokens": 6, "temperature": 0.8, "seed": 3})
ROWS = [
    {"key": 0, "meta": {"a": [1, 2]}, "messages": [{"role": "user", "content": "Say hi to Ann."}]},
    {"key": 1, "meta": {"a": [3]}, "messages": [
        {"role": "system", "content": "Answer in French."},
        {"role": "user", "content": "What colour is the sky?"}]},
    {"key": 2, "meta": {"a": []}, "messages": []},
]


def test_rows_keep_their_columns_and_match_direct_generation(ray_session):
    ds = ray_session.data.from_items(ROWS)
    out = sorted(generate_dataset(ds, CFG, output_column="reply", tokens_column="n",
                                  error_column="err").take_all(), key=lambda r: r["key"])
    assert [r["key"] for r in out] == [0, 1, 2]
    assert set(out[0]) == {"key", "meta", "messages", "reply", "n", "err"}
    assert out[1]["meta"] == {"a": [3]} and out[1]["messages"][0]["content"] == "Answer in French."
    assert out[2]["reply"] == "" and out[2]["n"] == 0  # empty messages: a skip
    assert all(r["err"] == "" for r in out)

    # The same rows generated directly, with the documented per-row seeds, give the same text.
    smol = HFChatGenerator(CFG.model, num_threads=1)
    direct = smol.generate([r["messages"] for r in ROWS[:2]], [
        RowSampling(max_tokens=6, temperature=0.8, seed=row_seed(3, r["messages"]))
        for r in ROWS[:2]])
    assert [r["reply"] for r in out[:2]] == [g.text for g in direct]
    assert [r["n"] for r in out[:2]] == [g.completion_tokens for g in direct]
    assert all(r["reply"] for r in out[:2])


def test_bad_messages_are_captured_or_raised(ray_session):
    rows = [{"key": 0, "messages": [{"role": "robot", "content": "beep"}]},
            {"key": 1, "messages": []}]
    out = generate_dataset(ray_session.data.from_items(rows), CFG,
                           error_column="err").take_all()
    errors = {r["key"]: r["err"] for r in out}
    assert "role 'robot' is not one of" in errors[0] and errors[1] == ""
    with pytest.raises(Exception, match="role 'robot' is not one of"):
        generate_dataset(ray_session.data.from_items(rows), CFG).take_all()
