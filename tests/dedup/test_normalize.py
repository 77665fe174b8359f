"""Text normalisation and hashes for exact dedup."""

from __future__ import annotations

import numpy as np
import pytest

from guardray.dedup.normalize import normalize_text, row_key, text_hash, text_hashes


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("  Hello\u00a0\tWORLD\n", "hello world"),
        ("Stra\u00dfe", "strasse"),  # casefold, not lower()
        ("\uff28\uff45\uff4c\uff4c\uff4f", "hello"),  # full-width letters (NFKC)
        ("a\u200bb  c", "a b c"),  # zero-width space counts as whitespace
        ("kill the process?", "kill the process?"),  # punctuation is kept
        ("", ""),
    ],
)
def test_normalize_text(text, expected):
    assert normalize_text(text) == expected


def test_hash_equal_iff_normalised_equal():
    assert text_hash("What is the DEADLINE\nfor taxes?") == text_hash("what is the deadline for taxes?")
    assert text_hash("kill the process") != text_hash("kill the process?")
    h = text_hashes(["a", " A ", "b"])
    assert h.dtype == np.uint64 and h[0] == h[1] != h[2]
    assert 0 <= text_hash("x") < 2**64


def test_row_key_is_length_prefixed():
    assert row_key(["ab", "c"]) != row_key(["a", "bc"])
    assert row_key(["x", 1]) == row_key(["x", "1"])  # values hash as their str
    assert row_key(["x", 1]) != row_key(["x", 0])


def test_normalize_rejects_non_text():
    with pytest.raises(TypeError, match="expected a str"):
        normalize_text(None)
