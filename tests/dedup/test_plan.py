"""Driver-side decisions: processing order, exact duplicates, per-scope near dedup."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

from guardray.dedup import plan
from guardray.dedup.normalize import text_hashes


def test_scope_codes_follow_sorted_policy_names():
    codes, names = plan.scope_codes(pa.array(["tax", "finance", "tax", "safety"]), "policy")
    assert names == ["finance", "safety", "tax"] and codes.tolist() == [2, 0, 2, 1]
    codes, names = plan.scope_codes(pa.array(["tax", "finance"]), "global")
    assert names == ["*"] and codes.tolist() == [0, 0]
    with pytest.raises(ValueError, match="'policy' or 'global'"):
        plan.scope_codes(pa.array(["x"]), "everything")


def test_row_order_is_scope_then_id_then_key():
    ids = pa.array(["b", "a", "c", "a"])
    keys = np.array([5, 9, 1, 3], np.uint64)
    scopes = np.array([0, 1, 0, 1], np.int32)
    assert plan.row_order(ids, keys, scopes).tolist() == [0, 2, 3, 1]


def test_exact_dedup_keeps_first_in_order_per_scope():
    texts = ["Hello", "hello ", "other", "HELLO", "hello"]
    scopes = np.array([0, 0, 0, 0, 1], np.int32)
    order = np.array([3, 1, 0, 2, 4])  # row 3 comes first
    rep = plan.exact_dedup(order, scopes, text_hashes(texts))
    # rows 0, 1, 3 are the same normalised text in scope 0: row 3 (first in order) represents
    # them; row 4 is the same text in another scope: kept.
    assert rep.tolist() == [3, 3, -1, -1, -1]


def test_exact_dedup_empty_and_single():
    assert plan.exact_dedup(np.zeros(0, np.int64), np.zeros(0, np.int32), np.zeros(0, np.uint64)).tolist() == []
    assert plan.exact_dedup(np.zeros(1, np.int64), np.zeros(1, np.int32), np.ones(1, np.uint64)).tolist() == [-1]


def test_row_key_collision_is_detected():
    plan.check_row_keys(pa.array(["a", "a", "b"]), np.array([1, 1, 2], np.uint64))  # same row twice
    with pytest.raises(plan.RowKeyCollisionError, match="'a' and 'b'"):
        plan.check_row_keys(pa.array(["a", "b"]), np.array([7, 7], np.uint64))


def test_near_dedup_never_crosses_scopes():
    v = np.array([[1, 0], [1, 0], [1, 0], [0, 1]], np.float32)
    scopes = np.array([0, 0, 1, 1], np.int32)
    for method in ("global", "per_batch", "exact"):
        out = plan.near_dedup(v, scopes, ["finance", "tax"], method=method, threshold=0.9)
        assert out.result.keep.tolist() == [True, False, True, True], method
        assert out.result.rep.tolist() == [-1, 0, -1, -1]
        assert out.stats["finance"]["near_removed"] == 1 and out.stats["tax"]["near_removed"] == 0
    with pytest.raises(ValueError, match="method must be"):
        plan.near_dedup(v, scopes, ["a", "b"], method="fuzzy", threshold=0.9)
