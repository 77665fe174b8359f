"""The serve stage's pure parts: request planning and limits, errors, configs, guard resolution."""

from __future__ import annotations

import pandas as pd
import pytest

from guardray.config.base import ConfigError
from guardray.errors import DataError, ModelError
from guardray.serve import ClassifyRequest, Limits, RequestError, config_from_args, plan_request
from guardray.serve.batch import assemble, expand_pairs, output_kind
from guardray.serve.guard import GuardInfo
from guardray.serve.schema import ModelInfo, build_response, validation_error

LIMITS = Limits(max_prompt_chars=10, max_prompts=3, max_policies=2)
SERVED = ("finance", "injection")


def _code(req: dict, served=SERVED) -> str:
    with pytest.raises(RequestError) as info:
        plan_request(ClassifyRequest(**req), LIMITS, served)
    return info.value.code


def test_plan_pairs_every_prompt_with_every_policy_in_order():
    pairs = plan_request(ClassifyRequest(prompts=["a", "b"]), LIMITS, SERVED)
    assert [(p.prompt_index, p.text, p.policy_id) for p in pairs] == [
        (0, "a", "finance"), (0, "a", "injection"), (1, "b", "finance"), (1, "b", "injection")]
    one = plan_request(ClassifyRequest(prompt="x", policies=["injection"]), LIMITS, SERVED)
    assert [(p.prompt_index, p.policy_id) for p in one] == [(0, "injection")]
    none = plan_request(ClassifyRequest(prompt="x"), LIMITS, ())
    assert [p.policy_id for p in none] == [None]


@pytest.mark.parametrize("req, code, status", [
    ({"prompts": []}, "empty_request", 422),
    ({}, "invalid_request", 422),
    ({"prompt": "a", "prompts": ["b"]}, "invalid_request", 422),
    ({"prompts": ["a"] * 4}, "too_many_prompts", 413),
    ({"prompts": ["a", "x" * 11]}, "prompt_too_long", 413),
    ({"prompt": "a", "policies": ["tax"]}, "unknown_policy", 422),
    ({"prompt": "a", "policies": []}, "empty_request", 422),
    ({"prompt": "a", "policies": ["finance"] * 3}, "too_many_policies", 413),
])
def test_refused_requests_have_a_code_and_a_4xx_status(req, code, status):
    assert _code(req) == code
    err = RequestError(code, "m")
    assert err.status == status and err.to_dict()["error"]["status"] == status


def test_error_messages_name_the_value_and_the_limit():
    with pytest.raises(RequestError, match=r"prompt 1 has 11 characters; at most 10"):
        plan_request(ClassifyRequest(prompts=["a", "x" * 11]), LIMITS, SERVED)
    with pytest.raises(RequestError, match=r"unknown policy 'tax'; served policies: finance, "
                       r"injection"):
        plan_request(ClassifyRequest(prompt="a", policies=["tax"]), LIMITS, SERVED)
    assert _code({"prompt": "a", "policies": ["finance"]}, served=()) == "unknown_policy"


def test_validation_errors_map_malformed_json_to_400():
    bad = validation_error([{"type": "json_invalid", "loc": ("body", 1), "msg": "JSON decode",
                             "ctx": {"error": "Expecting value"}}])
    assert (bad.code, bad.status) == ("malformed_json", 400)
    assert "Expecting value" in bad.message
    typed = validation_error([{"type": "list_type", "loc": ("body", "prompts"),
                               "msg": "Input should be a valid list"}])
    assert (typed.code, typed.status) == ("invalid_request", 422)
    assert typed.message.startswith("prompts: Input should be a valid list")


def test_build_response_labels_at_the_threshold():
    pairs = plan_request(ClassifyRequest(prompts=["a", "b"], policies=["finance"]), LIMITS,
                         SERVED)
    resp = build_response(pairs, [(0.3, False, 2), (0.3001, True, 2)], threshold=0.3,
                          model=ModelInfo(name="m", version="v", input_format="text"))
    assert [r.label for r in resp.results] == ["unsafe", "unsafe"]
    assert resp.flagged and resp.results[1].truncated and resp.results[0].batch_size == 2
    resp = build_response(pairs, [(0.2999, False, 1), (0.0, False, 1)], threshold=0.3,
                          model=ModelInfo(name="m", version="v", input_format="text"))
    assert not resp.flagged and [r.label for r in resp.results] == ["safe", "safe"]
    # a checkpoint with per-policy thresholds: each pair at its policy's own
    pairs = plan_request(ClassifyRequest(prompts=["a"], policies=["finance", "injection"]),
                         LIMITS, SERVED)
    resp = build_response(pairs, [(0.2, False, 2), (0.2, False, 2)], threshold=0.3,
                          model=ModelInfo(name="m", version="v", input_format="text"),
                          policy_thresholds={"injection": 0.1})
    assert [(r.policy_id, r.threshold, r.label) for r in resp.results] == [
        ("finance", 0.3, "safe"), ("injection", 0.1, "unsafe")]


def _info(policies=("finance",)) -> GuardInfo:
    return GuardInfo(path="/m", name="m", version="v", input_format="text",
                     policy_ids=tuple(policies), descriptions={}, threshold=0.5,
                     threshold_source="checkpoint")


def test_expand_pairs_from_a_column_a_list_or_the_default():
    frame = pd.DataFrame({"text": ["a", "b", "c"],
                          "policy_id": ["finance", None, ["finance", "injection"]]})
    info = _info(("finance", "injection"))
    pairs = expand_pairs(frame, "text", "policy_id", info)
    assert list(zip(pairs["row"], pairs["policy_id"])) == [
        (0, "finance"), (1, "finance"), (1, "injection"), (2, "finance"), (2, "injection")]
    forced = expand_pairs(frame, "text", "policy_id", info, forced=["injection"])
    assert list(forced["policy_id"]) == ["injection"] * 3
    with pytest.raises(DataError, match=r"row 0: unknown policy 'finance'"):
        expand_pairs(frame.iloc[:1], "text", "policy_id", _info(("tax",)))
    with pytest.raises(DataError, match=r"no text column 'prompt'"):
        expand_pairs(frame, "prompt", None, info)
    with pytest.raises(DataError, match=r"rows \[1\] have no text"):
        expand_pairs(pd.DataFrame({"text": ["a", None]}), "text", None, info)


def test_assemble_passes_columns_through_and_renames_collisions():
    import numpy as np

    frame = pd.DataFrame({"text": ["a", "b"], "label": [1, 0], "user": ["u1", "u2"]})
    pairs = expand_pairs(frame, "text", None, _info())
    out = assemble(frame, pairs, np.array([0.7, 0.2]), np.array([False, True]), 0.5)
    assert list(out.columns) == ["text", "input_label", "user", "row", "policy_id",
                                 "unsafe_probability", "label", "threshold", "truncated"]
    assert list(out["label"]) == ["unsafe", "safe"] and list(out["input_label"]) == [1, 0]
    assert output_kind("out/v.jsonl") == "jsonl" and output_kind("s3://b/out/") == "folder"
    pairs = expand_pairs(frame, "text", None, _info(("finance", "injection")))
    out = assemble(frame, pairs, np.array([0.2, 0.2, 0.2, 0.2]), np.zeros(4, bool), 0.3,
                   {"injection": 0.1})
    assert list(zip(out["policy_id"], out["threshold"], out["label"])) == [
        ("finance", 0.3, "safe"), ("injection", 0.1, "unsafe"),
        ("finance", 0.3, "safe"), ("injection", 0.1, "unsafe")]


def test_app_builder_args_merge_sections_and_dotted_overrides(tmp_path):
    base = tmp_path / "serve.yaml"
    base.write_text("job: serve\nmodel: {path: /a, threshold: 0.4}\nbatching: "
                    "{max_batch_size: 4}\n")
    cfg = config_from_args({"config": str(base), "model": {"path": "/b"},
                            "batching.batch_wait_timeout_s": "0.02", "limits.max_prompts": 5})
    assert (cfg.model.path, cfg.model.threshold) == ("/b", 0.4)
    assert (cfg.batching.max_batch_size, cfg.batching.batch_wait_timeout_s) == (4, 0.02)
    assert cfg.limits.max_prompts == 5
    with pytest.raises(ConfigError, match="batching"):
        config_from_args({"batching": {"max_size": 3}})
    with pytest.raises(ConfigError, match="max_ongoing_requests"):
        config_from_args({"batching.max_batch_size": 100})


def test_resolve_guard_reads_the_card_and_refuses_what_it_cannot_serve(tmp_path):
    import json

    from serve_testlib import make_guard

    from guardray.serve import GuardModelConfig, resolve_guard

    text = make_guard(tmp_path / "text", threshold=0.37)
    info = resolve_guard(GuardModelConfig(path=str(text), policies=[]))
    assert (info.input_format, info.policy_ids, info.threshold, info.threshold_source) == (
        "text", ("finance",), 0.37, "checkpoint")
    assert info.name == "tiny-text" and len(info.version) == 12
    with pytest.raises(ModelError, match=r"'tax'.*trained for \['finance'\]"):
        resolve_guard(GuardModelConfig(path=str(text), policy_ids=["tax"], policies=[]))
    inst = make_guard(tmp_path / "inst", input_format="instruction")
    info = resolve_guard(GuardModelConfig(path=str(inst), policy_ids=["injection"],
                                          policies=[]))
    assert info.policy_ids == ("injection",) and "prompt injection" in \
        info.descriptions["injection"]
    with pytest.raises(ModelError, match=r"policy 'tax': no description"):
        resolve_guard(GuardModelConfig(path=str(inst), policy_ids=["tax"], policies=[]))
    card = json.loads((text / "guardray_model.json").read_text())
    del card["threshold"]
    (text / "guardray_model.json").write_text(json.dumps(card))
    with pytest.raises(ModelError, match="stores no decision threshold"):
        resolve_guard(GuardModelConfig(path=str(text), policies=[]))
    assert resolve_guard(GuardModelConfig(path=str(text), threshold=0.6,
                                          policies=[])).threshold_source == "config"
    # a card with per-policy thresholds (a UniGuard searched with threshold_scope: policy)
    card["threshold"] = {"threshold": 0.4, "per_policy": {"finance": {"threshold": 0.2},
                                                          "tax": {"threshold": 0.9}}}
    (text / "guardray_model.json").write_text(json.dumps(card))
    info = resolve_guard(GuardModelConfig(path=str(text), policies=[]))
    assert info.policy_thresholds == {"finance": 0.2} and info.threshold == 0.4
    assert resolve_guard(GuardModelConfig(path=str(text), threshold=0.6,
                                          policies=[])).policy_thresholds == {}
