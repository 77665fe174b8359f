"""Row steps between the LLM passes and the per-task finish (pure functions)."""

from __future__ import annotations

from pathlib import Path

from guardray import schema as S
from guardray.generate import parse as P
from guardray.generate import rejects as R
from guardray.generate import steps as T
from guardray.generate.config import GenerateConfig
from guardray.generate.expand import MESSAGES, REQUEST_ID, REQUESTED_LABEL, TASK
from guardray.generate.seed import assign_split
from guardray.generate.templates import load_templates
from guardray.policies import load_policies

REPO = Path(__file__).resolve().parents[2]
TAX = load_policies([REPO / "configs/policies/tax.yaml"])[0]
CFG = GenerateConfig()
MSGS = [{"role": "user", "content": "write one"}]


def request(i=0, label=1):
    return {REQUEST_ID: f"seed:tax:x:{i:05d}", TASK: 0, S.POLICY_ID: "tax", S.SOURCE: "seed",
            REQUESTED_LABEL: label, MESSAGES: MSGS}


def answer(text, label="unsafe"):
    return f'{{"prompt": "{text}", "rationale": "why", "label": "{label}"}}'


def parsed(raw, i=0, label=1, error=""):
    return T.apply_parse(request(i, label), raw, error, CFG.parse, frozenset())


def test_parse_then_retry_only_rejected_rows():
    ok = parsed(answer("How do I cut my taxes?"))
    assert (ok[T.REASON], ok[S.TEXT], ok[S.LABEL_INITIAL], ok[T.ATTEMPTS]) == (
        "", "How do I cut my taxes?", 1, 1)
    bad = parsed("garbage")
    assert bad[T.REASON] == P.NO_JSON and bad[S.LABEL_INITIAL] == -1
    assert T.make_retry(ok, 1, 0)[T.RETRY_MESSAGES] == []
    retry = T.make_retry(bad, 1, 0)
    assert retry[T.RETRY_MESSAGES] == MSGS
    assert retry[T.RETRY_SEED] != T.make_retry(parsed("garbage", i=1), 1, 0)[T.RETRY_SEED]
    assert T.make_retry(bad, 0, 0)[T.RETRY_MESSAGES] == []  # no retries left
    fixed = T.merge_retry({**retry, T.RETRY_RAW: answer("Second try works?"), T.RETRY_ERROR: "",
                           T.RETRY_TOKENS: 7, T.GEN_TOKENS: 5}, CFG.parse, frozenset())
    assert (fixed[T.REASON], fixed[S.TEXT], fixed[T.ATTEMPTS], fixed[T.GEN_TOKENS]) == (
        "", "Second try works?", 2, 12)
    assert T.RETRY_MESSAGES not in fixed
    untouched = T.merge_retry({**T.make_retry(ok, 1, 0), T.RETRY_RAW: "", T.RETRY_ERROR: "",
                               T.RETRY_TOKENS: 0}, CFG.parse, frozenset())
    assert untouched[S.TEXT] == ok[S.TEXT] and untouched[T.ATTEMPTS] == 1


def test_backend_errors_become_rejects():
    row = parsed("", error="endpoint error: boom")
    assert row[T.REASON] == P.BACKEND_ERROR and "boom" in row[T.DETAIL]


def test_reflection_confirms_changes_or_keeps():
    templates = load_templates()
    ok = parsed(answer("How do I cut my taxes?"))
    with_msgs = T.make_reflection(ok, {"tax": TAX}, templates, True)
    assert with_msgs[T.REFLECT_MESSAGES][-1]["content"].startswith("User prompt: How do I cut")
    assert T.make_reflection(parsed("junk"), {"tax": TAX}, templates, True)[T.REFLECT_MESSAGES] == []

    def reflect(raw, **cfg):
        return T.apply_reflection({**with_msgs, T.REFLECT_RAW: raw, T.REFLECT_ERROR: ""},
                                  CFG.reflect.model_copy(update=cfg))

    same = reflect('{"label": "unsafe", "reason": "advice"}')
    assert (same[S.LABEL], same[S.LABEL_INITIAL], same[T.REFLECTION]) == (1, 1, "confirmed")
    flip = reflect('{"label": "safe", "reason": "only general facts"}')
    assert (flip[S.LABEL], flip[S.LABEL_INITIAL], flip[T.REFLECTION]) == (0, 1, "changed")
    assert flip[S.RATIONALE] == "only general facts"
    assert reflect('{"label": "safe", "reason": "x"}', update_rationale=False)[S.RATIONALE] == "why"
    kept = reflect("no idea")
    assert (kept[S.LABEL], kept[T.REFLECTION], kept[T.REASON]) == (1, "unparsed", "")
    dropped = reflect("no idea", on_unparsed="reject")
    assert dropped[T.REASON] == P.REFLECTION_UNPARSED
    off = T.apply_reflection(ok, CFG.reflect.model_copy(update={"enabled": False}))
    assert (off[S.LABEL], off[T.REFLECTION]) == (1, "disabled")


def finished(row):
    return T.apply_reflection({**row, T.REFLECT_RAW: '{"label": "unsafe"}', T.REFLECT_ERROR: "",
                               T.REFLECT_MESSAGES: []}, CFG.reflect)


def test_finish_task_splits_samples_rejects_and_counts():
    rows = [finished(parsed(answer("How do I cut my taxes?"), i=2)),
            finished(parsed("garbage", i=1)),
            finished(parsed(answer("How do I cut my taxes?"), i=3)),   # same text: duplicate
            finished(parsed(answer("What is VAT exactly?", "safe"), i=0, label=0))]
    samples, rejects, stats = T.finish_task(rows, generator="gen-x", splits=CFG.splits, seed=4)
    assert [s[S.TEXT] for s in samples] == ["What is VAT exactly?", "How do I cut my taxes?"]
    for s in samples:
        assert tuple(s) == S.COLUMNS
        assert s[S.ID] == S.sample_id("tax", s[S.TEXT]) and s[S.GENERATOR] == "gen-x"
        assert s[S.SPLIT] == assign_split(s[S.ID], 0.1, 0.1, 4)
    assert samples[0][S.LABEL] == 1 and samples[0][S.LABEL_INITIAL] == 0  # reflection flipped
    assert sorted(r[R.REASON] for r in rejects) == [P.DUPLICATE, P.NO_JSON]
    dup = next(r for r in rejects if r[R.REASON] == P.DUPLICATE)
    assert dup[R.REQUEST_ID] == "seed:tax:x:00003" and set(dup) == set(R.REJECT_COLUMNS)
    assert stats["requests"] == 4 and stats["samples"] == 2
    assert stats["rejected"] == {"duplicate": 1, "no_json": 1}
    assert stats["labels"] == {"unsafe": 2} and stats["reflection"] == {"changed": 1, "confirmed": 1}


def test_rejects_files_round_trip(tmp_path):
    rows = [T.reject_row(parsed("garbage"), P.NO_JSON, "g")]
    R.write_rejects(rows, str(tmp_path / "rejects" / "gen-00000.parquet"))
    R.write_rejects([], str(tmp_path / "rejects" / "gen-00001.parquet"))
    table = R.read_rejects(str(tmp_path / "rejects"))
    assert table.num_rows == 1 and table.to_pylist()[0][R.RAW_OUTPUT] == "garbage"
    assert R.read_rejects(str(tmp_path / "none")).num_rows == 0
