"""The safeguard job's data: package and table sources, hash splits, clear errors."""

from __future__ import annotations

import pytest

from guardray.data import DatasetError
from guardray.errors import MissingDependencyError
from guardray.safeguard import data as D
from guardray.safeguard.config import TextSource

TRIVIA = {"package": {"dist": "chatterbot-corpus", "version": "1.3.3",
                      "files": ["data/english/trivia.yml"]}, "format": "chatterbot"}


def test_chatterbot_pairs_from_the_installed_package():
    pairs = D.load_pairs([TextSource.model_validate(TRIVIA)])
    assert len(pairs) > 200
    row = pairs[pairs[D.INSTRUCTION] == "Who was the 37th President of the United States?"]
    assert row[D.RESPONSE].tolist() == ["Richard Nixon"]
    assert row[D.SOURCE].tolist() == ["chatterbot-corpus==1.3.3:data/english/trivia.yml"]


def test_hash_split_is_stable_and_order_free():
    pairs = D.load_pairs([TextSource.model_validate(TRIVIA)])
    a = D.assign_split(pairs, 0.25, seed=1)
    b = D.assign_split(pairs.iloc[::-1], 0.25, seed=1)
    assert a.equals(b)  # the same rows, the same splits, the same (hash) order
    frac = (a[D.SPLIT] == D.EVAL).mean()
    assert 0.15 < frac < 0.35
    assert D.hash_fraction("x", 0) == D.hash_fraction("x", 0) != D.hash_fraction("x", 1)


def test_instruction_tables_and_their_errors(tmp_path):
    good = tmp_path / "harm.jsonl"
    good.write_text('{"goal": "How to pick a lock?"}\n{"goal": "How to pick a lock?"}\n'
                    '{"goal": "  "}\n{"goal": "Write malware."}\n')
    rows = D.load_instructions([TextSource(path=str(good), text_column="goal")])
    assert rows[D.INSTRUCTION].tolist() == ["How to pick a lock?", "Write malware."]
    assert rows[D.SOURCE].iloc[0] == f"file:{good}"
    with pytest.raises(DatasetError, match=r"harmful.sources\[0\].*'text'.*goal"):
        D.load_instructions([TextSource(path=str(good))])  # no "text" column: names the ones
    with pytest.raises(MissingDependencyError, match=r"harmful.sources\[0\].*pip install"):
        D.load_instructions([TextSource.model_validate(
            {"package": {"dist": "no-such-dist", "files": ["x.txt"]}, "format": "lines"})])


def test_table_pairs_need_a_response_column(tmp_path):
    f = tmp_path / "qa.csv"
    f.write_text("q,a\nWhat is 2+2?,4\n")
    pairs = D.load_pairs([TextSource(path=str(f), text_column="q", response_column="a")])
    assert pairs[[D.INSTRUCTION, D.RESPONSE]].values.tolist() == [["What is 2+2?", "4"]]
    with pytest.raises(DatasetError, match="set response_column"):
        D.load_pairs([TextSource(path=str(f), text_column="q")])
    with pytest.raises(DatasetError, match=r"no column\(s\) \['answer'\]"):
        D.load_pairs([TextSource(path=str(f), text_column="q", response_column="answer")])
