"""Parsing LLM outputs into samples, reflection verdicts and policies: pure functions.

Generators, small ones especially, wrap JSON in prose or code fences, stop mid-object at the
token limit, spell labels many ways or forget them. Everything here is total: any string in,
a result or a `Reject` (a reason from `REJECT_REASONS` plus a detail) out, never an exception.

Truncated JSON is repaired when the cut falls after the prompt: ``{"prompt": "How do I
...?", "rationale": "It asks for`` gives the prompt and the partial rationale; a cut inside
the prompt itself is rejected as ``truncated_prompt`` (half a prompt is not a sample).

Labels: 0 safe (compliant), 1 unsafe (non-compliant). Accepted spellings, case-insensitive:
``unsafe``/``safe``, ``1``/``0``, ``true``/``false`` (true = unsafe, i.e. "violates"),
``non-compliant``/``compliant``, ``violating``/``not violating``, ``harmful``/``harmless``,
``disallowed``/``allowed``, ``harmless``, ``benign``. ``yes``/``no`` are not accepted: they
answer an unknown question.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

from guardray import schema as S

# Reasons a generated sample or policy is rejected (the keys of the manifest's dropped counts).
EMPTY_OUTPUT = "empty_output"
BACKEND_ERROR = "backend_error"
NO_JSON = "no_json"
INVALID_JSON = "invalid_json"
NOT_AN_OBJECT = "not_an_object"
MISSING_PROMPT = "missing_prompt"
TRUNCATED_PROMPT = "truncated_prompt"
EMPTY_PROMPT = "empty_prompt"
PLACEHOLDER_PROMPT = "placeholder_prompt"
PROMPT_TOO_SHORT = "prompt_too_short"
PROMPT_TOO_LONG = "prompt_too_long"
COPIED_EXAMPLE = "copied_example"
MISSING_LABEL = "missing_label"
BAD_LABEL = "bad_label"
DUPLICATE = "duplicate"
REFLECTION_UNPARSED = "reflection_unparsed"
INVALID_POLICY = "invalid_policy"
DUPLICATE_POLICY = "duplicate_policy"

REJECT_REASONS: tuple[str, ...] = (
    EMPTY_OUTPUT, BACKEND_ERROR, NO_JSON, INVALID_JSON, NOT_AN_OBJECT, MISSING_PROMPT,
    TRUNCATED_PROMPT, EMPTY_PROMPT, PLACEHOLDER_PROMPT, PROMPT_TOO_SHORT, PROMPT_TOO_LONG,
    COPIED_EXAMPLE, MISSING_LABEL, BAD_LABEL, DUPLICATE, REFLECTION_UNPARSED, INVALID_POLICY,
    DUPLICATE_POLICY,
)
# Reasons worth another generation attempt (a new sample of the same request may succeed).
RETRYABLE: frozenset[str] = frozenset(REJECT_REASONS) - {DUPLICATE, REFLECTION_UNPARSED,
                                                         DUPLICATE_POLICY}

_PROMPT_KEYS = ("prompt", "user_prompt", "text", "query", "question", "input")
_RATIONALE_KEYS = ("rationale", "reason", "reasoning", "explanation", "why")
_LABEL_KEYS = ("label", "final_label", "correct_label", "verdict", "classification")
_UNSAFE_WORDS = {"unsafe", "1", "true", "non-compliant", "noncompliant", "not compliant",
                 "violating", "violation", "violates", "harmful", "disallowed", "not allowed"}
_SAFE_WORDS = {"safe", "0", "false", "compliant", "not violating", "harmless", "allowed",
               "benign"}
_PLACEHOLDER = re.compile(r"^(\.\.\.|…|<[^<>]*>|\[[^\[\]]*\]|\{[^{}]*\}|the user prompt|"
                          r"your prompt here|prompt)$", re.IGNORECASE)
_FENCE = re.compile(r"```(?:json|JSON)?\s*(.*?)(?:```|$)", re.DOTALL)


@dataclass(frozen=True)
class Reject:
    """Why an output was not kept: ``reason`` from `REJECT_REASONS`, ``detail`` for people."""

    reason: str
    detail: str = ""


@dataclass(frozen=True)
class ParsedSample:
    """A generated (prompt, rationale, label) triple.

    Attributes:
        text: the user prompt.
        rationale: why it is (un)safe; may be cut short (``notes`` says so).
        label: the generator's label, 0 safe / 1 unsafe.
        notes: facts worth counting: ``repaired_json``, ``rationale_truncated``,
            ``label_from_request``, ``label_differs_from_request``.
    """

    text: str
    rationale: str
    label: int
    notes: tuple[str, ...] = field(default_factory=tuple)


# --------------------------------------------------------------------------- JSON


@dataclass(frozen=True)
class JsonResult:
    """`extract_json_object` result: ``value`` (None if nothing parsed), ``status`` one of
    ``ok``/``repaired``/``empty``/``no_json``/``invalid_json``, and ``truncated_key``: the
    top-level key whose value was cut off by truncation (None if none or unknown)."""

    value: Any
    status: str
    truncated_key: str | None = None


def extract_json_object(raw: str) -> JsonResult:
    """Find the first JSON object in ``raw`` (prose, code fences and truncation tolerated)."""
    text = (raw or "").strip()
    if not text:
        return JsonResult(None, "empty")
    fenced = _FENCE.search(text)
    candidates = [fenced.group(1).strip(), text] if fenced else [text]
    decoder = json.JSONDecoder()
    for candidate in candidates:
        if candidate.startswith("["):  # a top-level list of objects: take the first
            try:
                value, _ = decoder.raw_decode(candidate)
            except json.JSONDecodeError:
                value = None
            if isinstance(value, list) and value and isinstance(value[0], dict):
                return JsonResult(value[0], "ok")
        starts = [m.start() for m in re.finditer(r"\{", candidate)]
        for n, start in enumerate(starts):
            try:
                value, _ = decoder.raw_decode(candidate, start)
            except json.JSONDecodeError:
                if n == 0:  # the outermost object may be cut off at the end
                    repaired = _repair_truncated(candidate[start:])
                    if repaired is not None:
                        return repaired
                continue
            if isinstance(value, dict):
                return JsonResult(value, "ok")
    if "{" in text:
        return JsonResult(None, "invalid_json")
    return JsonResult(None, "no_json")


def _scan(s: str) -> tuple[list[tuple[int, str]], bool, bool]:
    """The JSON structure of ``s``, which may be cut off anywhere.

    Returns:
        ``(events, in_string, escaped)``: ``(index, char)`` of each ``{ } [ ] : ,`` outside
        strings and of each string's opening and closing ``"``; whether ``s`` ends inside a
        string, and right after a backslash there.
    """
    events: list[tuple[int, str]] = []
    in_str = esc = False
    for i, ch in enumerate(s):
        if in_str:
            if esc:
                esc = False
            elif ch == "\\":
                esc = True
            elif ch == '"':
                in_str = False
                events.append((i, ch))
        elif ch == '"':
            in_str = True
            events.append((i, ch))
        elif ch in "{}[]:,":
            events.append((i, ch))
    return events, in_str, esc


def _repair_truncated(s: str) -> JsonResult | None:
    """Close a JSON object cut off at the end of ``s`` (which starts with ``{``)."""
    events, in_str, esc = _scan(s)
    stack: list[str] = []
    depth1_key: str | None = None
    in_value = opening = False
    str_start = 0
    last_str = ""
    last_comma = -1
    for i, ch in events:
        if ch == '"':
            opening = not opening
            if opening:
                str_start = i
            else:
                last_str = s[str_start:i + 1]
        elif ch in "{[":
            stack.append("}" if ch == "{" else "]")
        elif ch in "}]":
            if not stack or stack.pop() != ch:
                return None
            if not stack:
                return None  # a complete object that failed to parse: not a truncation
        elif ch == ":" and len(stack) == 1:
            try:
                depth1_key, in_value = json.loads(last_str), True
            except json.JSONDecodeError:
                return None
        elif ch == "," and len(stack) == 1:
            in_value, last_comma = False, i
    if not stack:
        return None
    truncated_key = depth1_key if in_value else None
    body = s[:-1] if (in_str and esc) else s  # drop a dangling backslash
    tails = []
    if in_str:
        tails.append(body + '"')
    base = body.rstrip()
    tails.append(base)
    trimmed = re.sub(r'(,\s*"(?:[^"\\]|\\.)*"\s*:?\s*|,\s*|:\s*)$', "", base)
    tails.append(trimmed)
    if last_comma > 0 and not in_value:
        tails.append(s[:last_comma])  # a key cut off before its value: drop it
    for tail in tails:
        closed = tail + "".join(reversed(_closers(tail)))
        try:
            value = json.loads(closed)
        except json.JSONDecodeError:
            continue
        if isinstance(value, dict):
            return JsonResult(value, "repaired", truncated_key)
    return None


def _closers(s: str) -> list[str]:
    """The brackets still open at the end of ``s`` (outermost first)."""
    stack: list[str] = []
    for _, ch in _scan(s)[0]:
        if ch in "{[":
            stack.append("}" if ch == "{" else "]")
        elif ch in "}]" and stack:
            stack.pop()
    return stack


# --------------------------------------------------------------------------- labels


def parse_label(value: Any) -> int | None:
    """0 (safe), 1 (unsafe) or None for anything else (see the module docstring)."""
    if isinstance(value, bool):
        return S.UNSAFE if value else S.SAFE
    if isinstance(value, int):
        return value if value in (S.SAFE, S.UNSAFE) else None
    if isinstance(value, float):
        return int(value) if value in (0.0, 1.0) else None
    if not isinstance(value, str):
        return None
    word = re.sub(r"[\s_]+", " ", value.strip().strip(".!\"'`*").lower()).replace(" -", "-")
    word = word.replace("non compliant", "non-compliant")
    if word in _UNSAFE_WORDS:
        return S.UNSAFE
    if word in _SAFE_WORDS:
        return S.SAFE
    return None


def _get(obj: dict, keys: tuple[str, ...]) -> tuple[str | None, Any]:
    lowered = {str(k).strip().lower(): k for k in obj}
    for key in keys:
        if key in lowered:
            return lowered[key], obj[lowered[key]]
    return None, None


def _clean_text(value: str) -> str:
    text = value.strip()
    if len(text) >= 2 and text[0] == text[-1] and text[0] in "\"'“”":
        text = text[1:-1].strip()
    return text


def normalize_for_match(text: str) -> str:
    """Lowercase, collapse whitespace and strip punctuation at the ends (copy detection)."""
    return re.sub(r"\s+", " ", text.lower()).strip(" .?!\"'")


# --------------------------------------------------------------------------- samples


def parse_generation(
    raw: str,
    requested_label: int,
    *,
    missing_label: str = "requested",
    min_chars: int = 8,
    max_chars: int = 2000,
    forbidden: frozenset[str] = frozenset(),
) -> ParsedSample | Reject:
    """Parse a generation answer ``{"prompt", "rationale", "label"}``.

    Args:
        raw: the model's output.
        requested_label: the label the request asked for (0/1).
        missing_label: ``"requested"`` uses ``requested_label`` when the answer has no
            label (or it was cut off); ``"reject"`` rejects such answers.
        min_chars, max_chars: bounds on the prompt's length.
        forbidden: `normalize_for_match` forms of texts that must not be copied (the
            few-shot examples shown to the generator).

    Returns:
        A `ParsedSample`, or a `Reject` naming the reason.
    """
    if not raw or not raw.strip():
        return Reject(EMPTY_OUTPUT, "the model returned nothing")
    found = extract_json_object(raw)
    if found.value is None:
        reason = {"empty": EMPTY_OUTPUT, "no_json": NO_JSON}.get(found.status, INVALID_JSON)
        return Reject(reason, f"{found.status}: {raw.strip()[:120]!r}")
    obj = found.value
    if isinstance(obj, list):
        obj = obj[0]
    if not isinstance(obj, dict):
        return Reject(NOT_AN_OBJECT, f"expected a JSON object, got {type(obj).__name__}")
    notes = ["repaired_json"] if found.status == "repaired" else []
    prompt_key, prompt = _get(obj, _PROMPT_KEYS)
    if prompt_key is not None and prompt_key == found.truncated_key:
        return Reject(TRUNCATED_PROMPT, "the output ended inside the prompt")
    if prompt_key is None or not isinstance(prompt, str):
        return Reject(MISSING_PROMPT, f"no string 'prompt' among keys {sorted(map(str, obj))}")
    text = _clean_text(prompt)
    if not text:
        return Reject(EMPTY_PROMPT, "the prompt is empty")
    if _PLACEHOLDER.match(text):
        return Reject(PLACEHOLDER_PROMPT, f"the prompt is a placeholder: {text!r}")
    if len(text) < min_chars:
        return Reject(PROMPT_TOO_SHORT, f"{len(text)} characters < {min_chars}")
    if len(text) > max_chars:
        return Reject(PROMPT_TOO_LONG, f"{len(text)} characters > {max_chars}")
    if normalize_for_match(text) in forbidden:
        return Reject(COPIED_EXAMPLE, "the prompt repeats an example it was shown")
    rationale_key, rationale = _get(obj, _RATIONALE_KEYS)
    rationale = _clean_text(rationale) if isinstance(rationale, str) else ""
    if rationale_key is not None and rationale_key == found.truncated_key:
        notes.append("rationale_truncated")
    label_key, label_value = _get(obj, _LABEL_KEYS)
    if label_key is None or label_key == found.truncated_key:
        if missing_label != "requested":
            return Reject(MISSING_LABEL, "the answer has no (complete) label")
        label = requested_label
        notes.append("label_from_request")
    else:
        label = parse_label(label_value)
        if label is None:
            return Reject(BAD_LABEL, f"label {label_value!r} is not safe/unsafe")
    if label != requested_label:
        notes.append("label_differs_from_request")
    return ParsedSample(text=text, rationale=rationale, label=label, notes=tuple(notes))


# --------------------------------------------------------------------------- reflection


@dataclass(frozen=True)
class Verdict:
    """A self-reflection answer: the label (None if unreadable) and its reason text."""

    label: int | None
    reason: str = ""


def parse_reflection(raw: str) -> Verdict:
    """Read the label of a self-reflection answer.

    Accepts a JSON object with a label (``label``/``final_label``/``verdict``...) and an
    optional ``reason``; else text in which exactly one of the words ``safe``/``unsafe``
    occurs (an answer naming both is unreadable).
    """
    if not raw or not raw.strip():
        return Verdict(None)
    found = extract_json_object(raw)
    if isinstance(found.value, dict):
        key, value = _get(found.value, _LABEL_KEYS)
        if key is not None and key != found.truncated_key:
            label = parse_label(value)
            if label is not None:
                _, reason = _get(found.value, _RATIONALE_KEYS)
                return Verdict(label, _clean_text(reason) if isinstance(reason, str) else "")
    text = raw.strip().lower()
    has_unsafe = re.search(r"\bunsafe\b", text) is not None
    has_safe = re.search(r"\bsafe\b", text) is not None
    if has_unsafe != has_safe:
        return Verdict(S.UNSAFE if has_unsafe else S.SAFE)
    return Verdict(None)


# --------------------------------------------------------------------------- policies


def parse_policy_answer(raw: str) -> dict[str, Any] | Reject:
    """Read a generated policy ``{"name", "description", "disallowed", "allowed"}``.

    Returns the fields as a dict (lists of strings; a single string becomes a one-item list),
    or a `Reject`. Full validation (`guardray.policies.Policy`) is the caller's.
    """
    if not raw or not raw.strip():
        return Reject(EMPTY_OUTPUT, "the model returned nothing")
    found = extract_json_object(raw)
    if found.value is None:
        reason = {"empty": EMPTY_OUTPUT, "no_json": NO_JSON}.get(found.status, INVALID_JSON)
        return Reject(reason, f"{found.status}: {raw.strip()[:120]!r}")
    obj = found.value[0] if isinstance(found.value, list) else found.value
    if not isinstance(obj, dict):
        return Reject(NOT_AN_OBJECT, f"expected a JSON object, got {type(obj).__name__}")
    fields: dict[str, Any] = {}
    for name in ("name", "description"):
        key, value = _get(obj, (name,))
        if key is None or key == found.truncated_key or not isinstance(value, str):
            return Reject(INVALID_POLICY, f"no complete string {name!r}")
        fields[name] = value.strip()
    for name in ("disallowed", "allowed"):
        key, value = _get(obj, (name, f"{name}_behaviors", f"{name}_behaviours"))
        if isinstance(value, str):
            value = [value]
        if not isinstance(value, list):
            return Reject(INVALID_POLICY, f"no list {name!r}")
        items = [v.strip() for v in value if isinstance(v, str) and v.strip()]
        if key == found.truncated_key and items:
            items = items[:-1]  # the last item was cut off
        if not items:
            return Reject(INVALID_POLICY, f"{name!r} has no complete items")
        unique: dict[str, str] = {}
        for item in items:
            unique.setdefault(item.lower(), item)
        fields[name] = list(unique.values())
    return fields
