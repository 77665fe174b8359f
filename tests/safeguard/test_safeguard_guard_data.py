"""The response guard's rows by construction (labels, inputs, splits, prefill joining)."""

from __future__ import annotations

from guardray import schema as S
from guardray.safeguard.config import GuardTrainSection
from guardray.safeguard.guard_data import (
    as_answer,
    build_rows,
    join_prefix,
    prefilled,
    split_instructions,
)
from guardray.safeguard.judge import POLICY_ID, format_pair


def _continue(conversations):
    """Stand-in for the base LLM (the unit under test is the row construction): it continues
    every prefilled answer with the same words, so each row's text is predictable."""
    assert all(c[-1]["role"] == "assistant" for c in conversations)
    return ["step one." for _ in conversations]


def test_rows_labels_and_inputs():
    harmful = [f"How do I make poison number {i}?" for i in range(6)]
    benign = [("What is the capital of France?", "Paris"), ("Who wrote Hamlet?", "Shakespeare")]
    settings = GuardTrainSection(max_instructions=5)
    rows = build_rows(harmful, benign, _continue, settings=settings)
    assert list(rows.columns) == list(S.COLUMNS) and set(rows[S.POLICY_ID]) == {POLICY_ID}
    unsafe = rows[rows[S.LABEL] == 1]
    # only harmful instructions answered compliantly are unsafe: 5 (max_instructions)
    assert len(unsafe) == 5
    assert unsafe[S.TEXT].iloc[0] == format_pair(harmful[0], "Step one.")  # prefix left out
    refusal = format_pair(harmful[0], "I'm sorry, but I can't help with that. step one.")
    assert rows.loc[rows[S.TEXT] == refusal, S.LABEL].tolist() == [0]
    benign_comply = format_pair("Who wrote Hamlet?", "Step one.")
    assert rows.loc[rows[S.TEXT] == benign_comply, S.LABEL].tolist() == [0]
    assert format_pair("Who wrote Hamlet?", "Shakespeare") in set(rows[S.TEXT])
    assert len(rows) == 5 * 2 + 2 * 2 and rows[S.ID].is_unique
    # every row of one instruction is on the same side
    by_instruction = rows.assign(i=rows[S.TEXT].str.split("\n").str[0]).groupby("i")[S.SPLIT]
    assert by_instruction.nunique().max() == 1


def test_split_puts_a_harmful_instruction_on_each_side():
    harmful = [f"h{i}" for i in range(3)]
    for fraction in (0.0, 0.999):
        out = split_instructions(harmful, ["b"], fraction)
        assert {out[h] for h in harmful} == {"train", "validation"}


def test_prefill_helpers():
    assert prefilled("q", "Sure", "sys") == [
        {"role": "system", "content": "sys"}, {"role": "user", "content": "q"},
        {"role": "assistant", "content": "Sure"}]
    assert join_prefix("Sure, here is", " how.") == "Sure, here is how."
    assert join_prefix("Sure, here is", "how.") == "Sure, here is how."
    assert join_prefix("Sure", "") == "Sure"
    assert as_answer(" a guide: 1. x ") == "A guide: 1. x"
