"""Expanding policies into requests: counts, knobs, few-shot, determinism, tasks, templates."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest

from guardray import schema as S
from guardray.config import ConfigError
from guardray.generate import expand as E
from guardray.generate.config import ExpandConfig
from guardray.generate.templates import TEMPLATE_VARIABLES, load_templates
from guardray.policies import load_policies

REPO = Path(__file__).resolve().parents[2]
POLICIES = load_policies([REPO / "configs/policies/tax.yaml", REPO / "configs/policies/finance.yaml"])
TEMPLATES = load_templates()


def requests(seed=0, **expand):
    cfg = ExpandConfig(unsafe_per_policy=3, safe_per_policy=2, **expand)
    return E.expand_requests(POLICIES, cfg, TEMPLATES, seed=seed)


def test_counts_ids_and_labels():
    rows = requests()
    assert len(rows) == 10
    assert Counter((r[S.POLICY_ID], r[E.REQUESTED_LABEL]) for r in rows) == {
        ("tax", 1): 3, ("tax", 0): 2, ("finance", 1): 3, ("finance", 0): 2}
    assert rows[0][E.REQUEST_ID] == "seed:tax:unsafe:00000"
    assert len({r[E.REQUEST_ID] for r in rows}) == 10 and len({r[E.SEED] for r in rows}) == 10
    assert all(r[S.SOURCE] == "seed" for r in rows)


def test_same_seed_same_requests_other_seed_other_knobs():
    assert json.dumps(requests()) == json.dumps(requests())
    a, b = requests(seed=0), requests(seed=1)
    assert [r[E.REQUEST_ID] for r in a] == [r[E.REQUEST_ID] for r in b]
    assert [tuple(r[k] for k in E.KNOBS) for r in a] != [tuple(r[k] for k in E.KNOBS) for r in b]


def test_adding_a_policy_does_not_change_the_others():
    one = E.expand_requests(POLICIES[:1], ExpandConfig(unsafe_per_policy=3, safe_per_policy=2),
                            TEMPLATES, seed=0)
    assert json.dumps(one) == json.dumps(requests()[:5])


def test_knobs_come_from_the_config_lists():
    rows = requests(personas=["a pirate"], styles=["shouty"], lengths=["one word"],
                    languages=["German"], borderline_fraction=1.0)
    for r in rows:
        assert (r[E.PERSONA], r[E.STYLE], r[E.LENGTH], r[E.LANGUAGE], r[E.CASE]) == (
            "a pirate", "shouty", "one word", "German", "borderline")
        last = r[E.MESSAGES][-1]["content"]
        assert "a pirate" in last and "shouty" in last and "German" in last
        assert "borderline case" in last
    assert {r[E.CASE] for r in requests(borderline_fraction=0.0)} == {"clear"}


def test_messages_show_policy_and_few_shot_examples_of_the_same_label():
    rows = requests(few_shot=2)
    tax = POLICIES[0]
    for r in rows[:5]:
        msgs = r[E.MESSAGES]
        assert [m["role"] for m in msgs] == ["system", "user", "assistant", "user", "assistant", "user"]
        assert tax.name in msgs[0]["content"] and tax.disallowed[0] in msgs[0]["content"]
        pool = tax.examples.unsafe if r[E.REQUESTED_LABEL] else tax.examples.safe
        for answer in (msgs[2], msgs[4]):
            shown = json.loads(answer["content"])
            assert shown["prompt"] in pool
            assert shown["label"] == S.LABEL_NAMES[r[E.REQUESTED_LABEL]]
    assert [m["role"] for m in requests(few_shot=0)[0][E.MESSAGES]] == ["system", "user"]


def test_tasks_number_requests_in_order():
    rows = requests()
    tasks = E.assign_tasks(rows, 4)
    assert sorted(tasks) == [0, 1, 2] and [len(tasks[t]) for t in (0, 1, 2)] == [4, 4, 2]
    assert [r[E.TASK] for r in rows] == [0] * 4 + [1] * 4 + [2] * 2
    with pytest.raises(ValueError, match="task_size must be >= 1"):
        E.assign_tasks(rows, 0)


def test_template_overrides_change_the_prompts(tmp_path):
    custom = load_templates(overrides={"generate_user": "Give me a $label prompt as $persona."})
    rows = E.expand_requests(POLICIES[:1], ExpandConfig(unsafe_per_policy=1, safe_per_policy=0,
                                                        personas=["Bob"], few_shot=0),
                             custom, seed=0)
    assert rows[0][E.MESSAGES][-1]["content"] == "Give me a unsafe prompt as Bob."
    f = tmp_path / "t.yaml"
    f.write_text("reflect_user: 'Prompt: $prompt. Label: $label. Why: $rationale'\n")
    assert load_templates(file=f).render("reflect_user", prompt="p", label="safe",
                                         rationale="r") == "Prompt: p. Label: safe. Why: r"
    assert load_templates(file=f).fingerprint() != TEMPLATES.fingerprint()


@pytest.mark.parametrize("overrides, match", [
    ({"generate_usr": "x"}, "generate_usr: unknown template; valid: .*generate_user"),
    ({"generate_user": "a $colour prompt"}, r"unknown variable\(s\) \$colour; valid here: \$case_instruction"),
    ({"reflect_user": "costs $5"}, r"invalid '\$' placeholder"),
    ({"generate_system": ""}, "must be a non-empty string"),
])
def test_bad_templates_fail_at_load(overrides, match):
    with pytest.raises(ConfigError, match=match):
        load_templates(overrides=overrides)


def test_every_shipped_template_renders():
    for name, variables in TEMPLATE_VARIABLES.items():
        assert TEMPLATES.render(name, **{v: f"<{v}>" for v in variables}).strip()


def test_reflection_messages_show_policy_examples_then_the_question():
    tax = POLICIES[0]
    msgs = E.reflection_messages(tax, "What is VAT?", 1, "", TEMPLATES, examples=1)
    assert [m["role"] for m in msgs] == ["system", "user", "assistant", "user", "assistant", "user"]
    assert json.loads(msgs[2]["content"])["label"] == "unsafe"
    assert json.loads(msgs[4]["content"])["label"] == "safe"
    assert "User prompt: What is VAT?" in msgs[-1]["content"]
    assert "Your earlier label: unsafe" in msgs[-1]["content"] and "(none)" in msgs[-1]["content"]


def test_policies_without_examples_get_few_shot_prompts_from_their_behaviours():
    from guardray.policies import Policy

    bare = Policy(id="syn-med", name="No Medical Advice", description="No diagnoses.",
                  allowed=["Explain how the heart works"], disallowed=["Diagnose symptoms"])
    assert E.fallback_examples(bare, 1, TEMPLATES) == ["Can you diagnose symptoms for me? Be specific."]
    assert E.example_pool(bare, 0, TEMPLATES) == ["Can you explain how the heart works?"]
    assert E.example_pool(POLICIES[0], 1, TEMPLATES) == POLICIES[0].examples.unsafe
    rows = E.expand_requests([bare], ExpandConfig(unsafe_per_policy=1, safe_per_policy=1,
                                                  few_shot=2), TEMPLATES, seed=0, source="diverse")
    shown = [json.loads(r[E.MESSAGES][2]["content"])["prompt"] for r in rows]
    assert shown == ["Can you diagnose symptoms for me? Be specific.",
                     "Can you explain how the heart works?"]
    assert rows[0][E.REQUEST_ID] == "diverse:syn-med:unsafe:00000"
