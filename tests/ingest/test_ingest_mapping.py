"""Label rules, caps, cleaning and cross-source duplicates (pure: no files, no Ray)."""

from __future__ import annotations

import pytest
from ingest_testlib import POLICY_IDS, records, source

from guardray import schema as S
from guardray.data import DatasetError
from guardray.ingest import mapping as M


def mapped(src, recs, **kw):
    rows, stats = M.map_records(recs, src, POLICY_IDS, seed=0, **kw)
    return {(r[S.POLICY_ID], r[S.TEXT]): int(r[S.LABEL]) for _, r in rows.iterrows()}, rows, stats


def test_first_matching_rule_decides_each_policy():
    src = source([
        {"policies": ["tax"], "label": "unsafe", "match": r"\btax"},
        {"policies": ["safety"], "label": "exclude", "categories": ["S002*"]},
        {"policies": ["safety"], "label": "unsafe", "categories": ["S003*", "S006sh"]},
        {"policies": ["*"], "label": "safe"},
    ])
    recs = records([
        {"text": "How can I evade taxes?", "categories": ["S003instructions"]},
        {"text": "Should I change my dosage?", "categories": ["S002med"]},
        {"text": "How deep should I cut?", "categories": ["S006sh"]},
        {"text": "Hello there", "categories": []},
    ])
    got, rows, stats = mapped(src, recs)
    assert got[("tax", "How can I evade taxes?")] == 1  # the specific rule came first
    assert got[("safety", "How can I evade taxes?")] == 1
    assert got[("finance", "How can I evade taxes?")] == 0  # fell through to '*'
    assert ("safety", "Should I change my dosage?") not in got  # excluded, later rules not tried
    assert got[("injection", "Should I change my dosage?")] == 0
    assert got[("safety", "How deep should I cut?")] == 1
    assert all(got[(p, "Hello there")] == 0 for p in POLICY_IDS)
    assert stats["rules"][1]["safety"] == {"matched": 1, "rows": 0, "capped": 0}
    assert set(rows[S.SOURCE]) == {"file:f.jsonl"}
    assert set(rows[S.GENERATOR]) == {"ingest:src"}


def test_filters_categories_file_and_regex():
    src = source([
        {"policies": ["safety"], "label": "exclude", "categories": ["file:data/psychology.yml"]},
        {"policies": ["finance"], "label": "safe", "exclude_match": "favorite investment"},
        {"policies": ["safety"], "label": "safe"},
    ])
    recs = records(["you are disgusting"], file="data/psychology.yml")
    recs2 = records(["What is your FAVORITE investment?", "what is a bond"], file="data/money.yml")
    got, _, _ = mapped(src, recs)
    assert got == {("finance", "you are disgusting"): 0}
    got2, _, _ = mapped(src, recs2)
    assert ("finance", "What is your FAVORITE investment?") not in got2  # case-insensitive
    assert got2[("finance", "what is a bond")] == 0
    assert got2[("safety", "What is your FAVORITE investment?")] == 0


def test_label_from_column_and_label_outside_the_mapping():
    src = source([{"policies": ["injection"], "label": "from_column"}], label_column="kind",
                 label_map={"benign": "safe", "jailbreak": "unsafe"})
    got, _, _ = mapped(src, records([{"text": "a", "label": "benign"},
                                     {"text": "b", "label": "JAILBREAK"},
                                     {"text": "c", "label": 1}]))
    assert got == {("injection", "a"): 0, ("injection", "b"): 1, ("injection", "c"): 1}
    with pytest.raises(DatasetError, match=r"source 'src': column 'kind': unknown label value"
                                           r".*'maybe'"):
        mapped(src, records([{"text": "a", "label": "benign"}, {"text": "d", "label": "maybe"}]))


def test_policy_column_maps_rows_to_their_own_policy_and_rejects_unknown_ids():
    src = source([{"policies": ["*"], "label": "from_column"}], label_column="label",
                 policy_column="policy")
    got, _, stats = mapped(src, records([
        {"text": "buy TSLA?", "label": 1, "policy": "finance"},
        {"text": "hi", "label": 0, "policy": "tax"},
        {"text": "no policy", "label": 0, "policy": None}]))
    assert got == {("finance", "buy TSLA?"): 1, ("tax", "hi"): 0}
    assert stats["dropped"][M.DROP_NO_POLICY] == 1
    with pytest.raises(DatasetError, match=r"source 'src': column 'policy' has unknown policy "
                                           r"id\(s\) \['legal'\]; known policies"):
        mapped(src, records([{"text": "x", "label": 0, "policy": "legal"}]))


def test_clean_records_drops_and_merges():
    recs = records([
        {"text": None}, {"text": 7}, {"text": "   "}, {"text": "x"}, {"text": "y" * 50},
        {"text": " Hello {generator.name} ", "categories": ["a"]},
        {"text": "Hello ChatGPT", "categories": ["b"]},
    ])
    out, dropped = M.clean_records(recs, replace={"{generator.name}": "ChatGPT"}, min_chars=2,
                                   max_chars=40)
    assert out["text"].tolist() == ["Hello ChatGPT"]
    assert out["categories"].tolist() == [["a", "b"]]  # the duplicate's categories merged
    assert dict(dropped) == {M.DROP_MISSING: 1, M.DROP_NOT_TEXT: 1, M.DROP_EMPTY: 1,
                             M.DROP_SHORT: 1, M.DROP_LONG: 1, M.DROP_IN_SOURCE: 1}


def test_caps_are_seeded_samples_that_grow_monotonically():
    recs = records([f"prompt number {i}" for i in range(50)])
    a, n = M.cap_records(recs, 10, seed=0, salt="s")
    b, _ = M.cap_records(recs.iloc[::-1].reset_index(drop=True), 10, seed=0, salt="s")
    c, _ = M.cap_records(recs, 20, seed=0, salt="s")
    d, _ = M.cap_records(recs, 10, seed=1, salt="s")
    assert n == 40 and len(a) == 10
    assert set(a["text"]) == set(b["text"])  # file order does not matter
    assert set(a["text"]) <= set(c["text"])  # a larger cap keeps the smaller sample
    assert set(a["text"]) != set(d["text"])  # the seed does
    assert a["text"].tolist() == sorted(a["text"], key=recs["text"].tolist().index)  # file order

    src = source([{"policies": ["safety", "tax"], "label": "safe", "cap": 7}])
    _, rows, stats = mapped(src, recs)
    assert rows.groupby(S.POLICY_ID).size().to_dict() == {"safety": 7, "tax": 7}
    assert stats["dropped"][M.DROP_RULE_CAP] == 86
    assert stats["rules"][0]["tax"] == {"matched": 50, "rows": 7, "capped": 43}


def test_held_out_sources_and_categories_are_flagged_in_generator():
    src = source([{"policies": ["safety"], "label": "unsafe"}],
                 held_out_categories=["S006*", "file:held.jsonl"])
    _, rows, _ = mapped(src, records([{"text": "a", "categories": ["S006sh"]},
                                      {"text": "b", "categories": ["S003"]}]))
    flags = dict(zip(rows[S.TEXT], rows[S.GENERATOR]))
    assert flags == {"a": "ingest:src:held_out", "b": "ingest:src"}
    assert M.is_held_out(flags["a"]) and not M.is_held_out(flags["b"])
    assert M.ingest_source_name(flags["a"]) == "src" and M.ingest_source_name("smollm2") is None
    _, rows, _ = mapped(src, records(["c"], file="held.jsonl"))
    assert rows[M.HELD_OUT].tolist() == [True]
    whole = source([{"policies": ["safety"], "label": "unsafe"}], held_out=True)
    _, rows, _ = mapped(whole, records(["d", "e"]))
    assert rows[M.HELD_OUT].all()


def test_resolve_duplicates_keeps_held_out_copy_and_drops_conflicts():
    import pandas as pd

    def part(name, order, held, items):
        src = source([{"policies": ["safety"], "label": "from_column"}], name=name,
                     label_column="label", held_out=held)
        rows, _ = M.map_records(records([{"text": t, "label": y} for t, y in items]), src,
                                POLICY_IDS, seed=0, order=order)
        return rows

    rows = pd.concat([part("a", 0, False, [("same", 1), ("clash", 1), ("only a", 0)]),
                      part("b", 1, True, [("same", 1), ("clash", 0)])], ignore_index=True)
    out, dropped, conflicts = M.resolve_duplicates(rows)
    assert dict(zip(out[S.TEXT], out[M.SOURCE_NAME])) == {"same": "b", "only a": "a"}
    assert dict(dropped) == {M.DROP_ACROSS: 1, M.DROP_CONFLICT: 2}
    assert conflicts == [{S.POLICY_ID: "safety", S.TEXT: "clash", "sources": {"a": 1, "b": 0}}]
    kept, dropped, _ = M.resolve_duplicates(rows, drop_conflicts=False)
    assert "clash" in set(kept[S.TEXT]) and M.DROP_CONFLICT not in dropped

    frame = M.to_sample_frame(out)
    assert frame[S.ID].tolist() == [S.sample_id(p, t) for p, t in zip(frame[S.POLICY_ID],
                                                                        frame[S.TEXT])]
    assert (frame[S.LABEL_INITIAL] == frame[S.LABEL]).all() and (frame[S.RATIONALE] == "").all()


def test_rules_for_policies_a_run_does_not_load_can_be_skipped():
    """A pipeline over some policies runs the whole data pack: the other policies' rules and
    per-record policy ids are left out instead of failing."""
    src = source([{"policies": ["injection"], "label": "unsafe"},
                  {"policies": ["*"], "label": "safe"}], policy_column="policy")
    recs = records([{"text": "a prompt", "policy": "injection"},
                    {"text": "another prompt", "policy": "safety"}])
    rows, _ = M.map_records(recs, src, ["safety"], seed=0, skip_unknown=True)
    assert rows[S.POLICY_ID].tolist() == ["safety"] and rows[S.LABEL].tolist() == [0]
    with pytest.raises(DatasetError, match="unknown policy id"):
        M.map_records(recs, src, ["safety"], seed=0)
