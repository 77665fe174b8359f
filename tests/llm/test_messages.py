"""Chat message normalisation and per-row seeds."""

from __future__ import annotations

import numpy as np
import pytest

from guardray.llm.messages import MessagesError, normalize_messages, row_seed


def test_normalize_accepts_lists_and_numpy_arrays():
    msgs = [{"role": "system", "content": "s"}, {"role": "user", "content": "u", "extra": 1}]
    assert normalize_messages(msgs) == [{"role": "system", "content": "s"},
                                        {"role": "user", "content": "u"}]
    assert normalize_messages(np.array(msgs, dtype=object)) == normalize_messages(msgs)
    assert normalize_messages([]) == [] and normalize_messages(None) == []


@pytest.mark.parametrize("value, match", [
    ("hello", "must be a list"),
    ({"role": "user", "content": "x"}, "must be a list"),
    ([{"role": "user"}], "message 0 must be a dict with 'role' and 'content'"),
    ([{"role": "robot", "content": "x"}], r"role 'robot' is not one of \['system', 'user', 'assistant'\]"),
    ([{"role": "user", "content": 3}], "content must be a string, got int"),
])
def test_normalize_rejects_bad_shapes(value, match):
    with pytest.raises(MessagesError, match=match):
        normalize_messages(value)


def test_row_seed_is_deterministic_and_sensitive():
    a = row_seed(0, [{"role": "user", "content": "x"}])
    assert a == row_seed(0, [{"role": "user", "content": "x"}])
    assert a != row_seed(1, [{"role": "user", "content": "x"}])
    assert a != row_seed(0, [{"role": "user", "content": "y"}])
    assert 0 <= a < 2**31 - 1
