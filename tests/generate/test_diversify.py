"""Policy diversification (3.3): requests from the unified data, policies from answers."""

from __future__ import annotations

import json
from pathlib import Path

from guardray import schema as S
from guardray.generate import parse as P
from guardray.generate.config import DiversifyConfig
from guardray.generate.diversify import diversify_requests, policy_from_answer, policy_id_for
from guardray.generate.expand import MESSAGES, REQUEST_ID, SEED
from guardray.generate.templates import load_templates
from guardray.policies import Policy, load_policies

REPO = Path(__file__).resolve().parents[2]
POLICIES = load_policies([REPO / "configs/policies/tax.yaml", REPO / "configs/policies/finance.yaml"])
UNIFIED = [{S.ID: S.sample_id("tax", f"q{i}"), S.POLICY_ID: "tax", S.TEXT: f"question {i}",
            S.LABEL: i % 2, S.RATIONALE: f"because {i}"} for i in range(20)]


def test_requests_show_unified_rows_topic_and_a_one_shot_policy():
    cfg = DiversifyConfig(num_policies=3, examples_per_request=4, topics=["gambling"])
    rows = diversify_requests(UNIFIED, POLICIES, cfg, load_templates(), seed=0)
    assert [r[REQUEST_ID] for r in rows] == ["policy:0000", "policy:0001", "policy:0002"]
    for r in rows:
        msgs = r[MESSAGES]
        assert [m["role"] for m in msgs] == ["system", "user", "assistant", "user"]
        demo = json.loads(msgs[2]["content"])
        assert demo["name"] in {p.name for p in POLICIES}
        assert "about gambling" in msgs[3]["content"]
        assert msgs[3]["content"].count("- [") == 4 and "(why: because" in msgs[3]["content"]
    # reproducible, and independent of the order the unified rows were read in
    again = diversify_requests(list(reversed(UNIFIED)), POLICIES, cfg, load_templates(), seed=0)
    assert json.dumps(rows) == json.dumps(again)
    assert len({r[SEED] for r in rows}) == 3


def test_without_unified_rows_the_policy_examples_seed_the_requests():
    rows = diversify_requests([], POLICIES, DiversifyConfig(num_policies=1), load_templates(), seed=0)
    shown = rows[0][MESSAGES][3]["content"]
    examples = {*POLICIES[0].examples.safe, *POLICIES[0].examples.unsafe,
                *POLICIES[1].examples.safe, *POLICIES[1].examples.unsafe}
    assert any(e in shown for e in examples)


def test_policy_from_answer():
    raw = ('{"name": "No Medical Advice", "description": "No diagnoses or prescriptions.", '
           '"disallowed": ["Diagnose a condition", "Recommend a dose"], '
           '"allowed": ["Explain how the heart works"]}')
    policy = policy_from_answer(raw, {"avoid tax advice"})
    assert isinstance(policy, Policy)
    assert policy.id == policy_id_for("No Medical Advice") and policy.id.startswith("syn-no-medical-advice-")
    assert policy.disallowed == ["Diagnose a condition", "Recommend a dose"]
    assert policy_from_answer(raw, {"no medical advice"}).reason == P.DUPLICATE_POLICY
    blank = raw.replace('"No diagnoses or prescriptions."', '"   "')
    assert policy_from_answer(blank, set()).reason == P.INVALID_POLICY
    assert policy_from_answer("I cannot do that", set()).reason == P.NO_JSON
    contradictory = raw.replace('"Explain how the heart works"', '"recommend a dose"')
    assert policy_from_answer(contradictory, set()).reason == P.INVALID_POLICY
    assert policy_id_for("!!!") .startswith("syn-policy-")
