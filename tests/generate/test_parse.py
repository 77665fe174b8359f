"""Parsing generated answers: garbage, fences, partial JSON, labels, empty output, extra keys."""

from __future__ import annotations

import pytest

from guardray.generate import parse as P
from guardray.generate.parse import (
    ParsedSample,
    Reject,
    extract_json_object,
    parse_generation,
    parse_label,
    parse_policy_answer,
    parse_reflection,
)

GOOD = '{"prompt": "How do I deduct my home office?", "rationale": "Tax advice.", "label": "unsafe"}'


def test_clean_json():
    r = parse_generation(GOOD, 1)
    assert r == ParsedSample("How do I deduct my home office?", "Tax advice.", 1, ())


@pytest.mark.parametrize("raw", [
    f"```json\n{GOOD}\n```",
    f"```\n{GOOD}\n```",
    f"Sure! Here is one:\n{GOOD}\nHope this helps.",
    f"{{draft}} {GOOD}",
    f"[{GOOD}]",
    f"{GOOD} {{\"prompt\": \"second object ignored\"}}",
])
def test_json_wrapped_in_prose_fences_or_lists(raw):
    r = parse_generation(raw, 1)
    assert isinstance(r, ParsedSample) and r.text == "How do I deduct my home office?"


@pytest.mark.parametrize("raw, reason", [
    ("", P.EMPTY_OUTPUT),
    ("   \n\t ", P.EMPTY_OUTPUT),
    (None, P.EMPTY_OUTPUT),
    ("The user is a retired teacher who wants help.", P.NO_JSON),
    ("{this is not json at all}", P.INVALID_JSON),
    ('"just a string"', P.NO_JSON),
    ('{"text": 42, "label": "safe"}', P.MISSING_PROMPT),
    ('{"rationale": "x", "label": "safe"}', P.MISSING_PROMPT),
    ('{"prompt": "   ", "label": "safe"}', P.EMPTY_PROMPT),
    ('{"prompt": "<the user\'s message>", "label": "safe"}', P.PLACEHOLDER_PROMPT),
    ('{"prompt": "...", "label": "safe"}', P.PLACEHOLDER_PROMPT),
    ('{"prompt": "Tax?", "label": "safe"}', P.PROMPT_TOO_SHORT),
    ('{"prompt": "How should I fi', P.TRUNCATED_PROMPT),
    ('{"prompt": "How should I file \\', P.TRUNCATED_PROMPT),
    ('{"prompt": "How should I file?", "label": "maybe"}', P.BAD_LABEL),
    ('{"prompt": "How should I file?", "label": 2}', P.BAD_LABEL),
    ('{"prompt": "How should I file?", "label": "yes"}', P.BAD_LABEL),
    ('{"prompt": "How should I file?", "label": null}', P.BAD_LABEL),
])
def test_rejects_with_reason(raw, reason):
    r = parse_generation(raw, 1)
    assert isinstance(r, Reject) and r.reason == reason, r
    assert r.reason in P.REJECT_REASONS


def test_long_prompt_rejected():
    raw = '{"prompt": "%s", "label": "safe"}' % ("a" * 50)
    assert parse_generation(raw, 0, max_chars=20).reason == P.PROMPT_TOO_LONG


@pytest.mark.parametrize("raw, label, notes", [
    # cut inside the rationale: prompt kept, rationale partial, label from the request
    ('{"prompt": "How should I file to pay less?", "rationale": "It asks for',
     1, ("repaired_json", "rationale_truncated", "label_from_request")),
    # cut inside the label value: the label is not trusted
    ('{"prompt": "How should I file to pay less?", "rationale": "x", "label": "saf',
     1, ("repaired_json", "label_from_request")),
    # cut inside a key
    ('{"prompt": "How should I file to pay less?", "rationale": "x", "lab',
     1, ("repaired_json", "label_from_request")),
    # cut after a colon
    ('{"prompt": "How should I file to pay less?", "label": ',
     1, ("repaired_json", "label_from_request")),
    # complete label, cut afterwards
    ('{"prompt": "How should I file to pay less?", "label": "safe", "rationale": "Gen',
     0, ("repaired_json", "rationale_truncated", "label_differs_from_request")),
])
def test_partial_json_is_repaired_when_the_prompt_is_complete(raw, label, notes):
    r = parse_generation(raw, 1)
    assert isinstance(r, ParsedSample), r
    assert r.text == "How should I file to pay less?" and r.label == label and r.notes == notes


def test_missing_label_follows_the_config():
    raw = '{"prompt": "How should I file to pay less?", "rationale": "Tax advice."}'
    assert parse_generation(raw, 0).label == 0
    assert parse_generation(raw, 0).notes == ("label_from_request",)
    assert parse_generation(raw, 0, missing_label="reject").reason == P.MISSING_LABEL


@pytest.mark.parametrize("value, expected", [
    ("unsafe", 1), ("Unsafe", 1), ("UNSAFE.", 1), (" unsafe ", 1), ("1", 1), (1, 1),
    (True, 1), ("true", 1), ("non-compliant", 1), ("Non compliant", 1), ("noncompliant", 1),
    ("not_compliant", 1), ("violating", 1), ("harmful", 1), ("disallowed", 1),
    ("safe", 0), ("Safe", 0), ("0", 0), (0, 0), (False, 0), ("compliant", 0), ("benign", 0),
    (1.0, 1), (0.0, 0),
    ("maybe", None), ("unknown", None), (2, None), (-1, None), (0.5, None), (None, None),
    ([], None), ("yes", None), ("safe or unsafe", None), ("", None),
])
def test_label_spellings(value, expected):
    assert parse_label(value) == expected


def test_extra_keys_and_key_aliases_are_tolerated():
    raw = ('{"Prompt": "How should I file my taxes?", "Reason": "asks for advice", '
           '"Label": "Unsafe", "persona": "a nurse", "confidence": 0.9}')
    r = parse_generation(raw, 1)
    assert r == ParsedSample("How should I file my taxes?", "asks for advice", 1, ())


def test_quotes_around_the_prompt_are_stripped_and_copies_rejected():
    raw = '{"prompt": "\\"What is VAT?  \\"", "label": "safe"}'
    assert parse_generation(raw, 0).text == "What is VAT?"
    forbidden = frozenset({P.normalize_for_match("what is vat")})
    assert parse_generation(raw, 0, forbidden=forbidden).reason == P.COPIED_EXAMPLE


def test_extract_json_statuses():
    assert extract_json_object("").status == "empty"
    assert extract_json_object("no braces").status == "no_json"
    assert extract_json_object("{oops}").status == "invalid_json"
    partial = extract_json_object('{"a": [1, 2')
    assert (partial.status, partial.value, partial.truncated_key) == ("repaired", {"a": [1, 2]}, "a")
    nested = extract_json_object('{"a": {"b": "c"}, "d": "e')
    assert nested.value == {"a": {"b": "c"}, "d": "e"} and nested.truncated_key == "d"


@pytest.mark.parametrize("raw, label, reason", [
    ('{"label": "unsafe", "reason": "It asks for tax advice."}', 1, "It asks for tax advice."),
    ('```json\n{"label": "Safe"}\n```', 0, ""),
    ('{"label": "unsafe", "reason": "It asks', 1, "It asks"),
    ("The prompt is unsafe because it asks for advice.", 1, ""),
    ("Safe.", 0, ""),
    ('{"verdict": "compliant"}', 0, ""),
    ("", None, ""),
    ("I am not sure.", None, ""),
    ("It could be safe or unsafe.", None, ""),
    ('{"label": "uns', None, ""),
])
def test_reflection_verdicts(raw, label, reason):
    v = parse_reflection(raw)
    assert (v.label, v.reason) == (label, reason)


def test_policy_answers():
    ok = parse_policy_answer('{"name": "No Medical Advice", "description": "d", '
                             '"disallowed": ["Diagnose", "diagnose", "Prescribe"], '
                             '"allowed": "Explain anatomy"}')
    assert ok == {"name": "No Medical Advice", "description": "d",
                  "disallowed": ["Diagnose", "Prescribe"], "allowed": ["Explain anatomy"]}
    cut = parse_policy_answer('{"name": "N", "description": "d", "disallowed": ["a"], '
                              '"allowed": ["b", "c is cut')
    assert cut["allowed"] == ["b"]
    assert parse_policy_answer('{"name": "N", "description": "d", "disallowed": [], '
                               '"allowed": ["b"]}').reason == P.INVALID_POLICY
    assert parse_policy_answer('{"name": "N", "descr').reason == P.INVALID_POLICY
    assert parse_policy_answer("nope").reason == P.NO_JSON
    assert parse_policy_answer("").reason == P.EMPTY_OUTPUT
