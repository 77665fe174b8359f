"""Expand policies into generation requests (GuardFormer 3.1): pure and reproducible.

For each policy, ``unsafe_per_policy`` requests for non-compliant prompts and
``safe_per_policy`` for compliant ones. Each request draws its variety knobs (persona, style,
length, language, clear vs borderline case, which policy examples are shown as few-shot
turns) from its own RNG, seeded by (job seed, source, policy id, label, index): the request
list is a pure function of (policies, config, templates), and adding a policy never changes
the requests of another. Policies without example prompts (synthetic ones, 3.3) get few-shot
prompts made from their own behaviours (`fallback_examples`). Requests are numbered into
tasks of ``task_size``; a task is the unit of work whose output is one shard
(`guardray.generate.stage`).

A request row holds the sample columns it already knows (``policy_id``, ``source``) and
the columns named below.
"""

from __future__ import annotations

import json
import random
from typing import Any

from guardray import schema as S
from guardray.generate.templates import Templates
from guardray.llm.messages import row_seed
from guardray.policies import Policy, render_policy

# Columns of a request row (besides guardray.schema.POLICY_ID and SOURCE).
REQUEST_ID = "request_id"
TASK = "task"
REQUESTED_LABEL = "requested_label"
PERSONA, STYLE, LENGTH, LANGUAGE, CASE = "persona", "style", "length", "language", "case"
MESSAGES = "messages"
SEED = "seed"
KNOBS: tuple[str, ...] = (PERSONA, STYLE, LENGTH, LANGUAGE, CASE)
CASES: tuple[str, ...] = ("clear", "borderline")


def draw_knobs(rng: random.Random, expand) -> dict[str, str]:
    """One persona, style, length, language and case from the ``expand`` config lists."""
    return {
        PERSONA: rng.choice(expand.personas),
        STYLE: rng.choice(expand.styles),
        LENGTH: rng.choice(expand.lengths),
        LANGUAGE: rng.choice(expand.languages),
        CASE: "borderline" if rng.random() < expand.borderline_fraction else "clear",
    }


def request_text(label: int, knobs: dict[str, str], templates: Templates) -> str:
    """The user turn asking for one prompt with ``label`` and ``knobs``."""
    name = S.LABEL_NAMES[label]
    return templates.render(
        "generate_user", label=name,
        label_meaning=templates.render(f"label_meaning_{name}"),
        case_instruction=templates.render(f"case_{knobs[CASE]}", label=name),
        persona=knobs[PERSONA], style=knobs[STYLE], length=knobs[LENGTH],
        language=knobs[LANGUAGE],
    )


def example_answer(text: str, label: int, templates: Templates) -> str:
    """The assistant turn of a few-shot pair: a policy example as the JSON answer."""
    name = S.LABEL_NAMES[label]
    return json.dumps({"prompt": text, "rationale": templates.render(f"example_rationale_{name}"),
                       "label": name}, ensure_ascii=False)


def fallback_examples(policy: Policy, label: int, templates: Templates) -> list[str]:
    """Example prompts made from the policy's behaviours (for policies without examples).

    Asking for a disallowed behaviour is an unsafe prompt by construction, asking for an
    allowed one a safe prompt: ``"Can you diagnose a person's symptoms for me? ..."``.
    """
    items = policy.disallowed if label == S.UNSAFE else policy.allowed
    name = S.LABEL_NAMES[label]
    return [templates.render(f"fallback_example_{name}", behaviour=item[:1].lower() + item[1:])
            for item in items]


def example_pool(policy: Policy, label: int, templates: Templates) -> list[str]:
    """The policy's example prompts of ``label``, or `fallback_examples` if it has none."""
    examples = policy.examples.unsafe if label == S.UNSAFE else policy.examples.safe
    return list(examples) or fallback_examples(policy, label, templates)


def generation_messages(policy: Policy, label: int, knobs: dict[str, str],
                        few_shot: list[tuple[str, dict[str, str]]],
                        templates: Templates) -> list[dict[str, str]]:
    """Chat messages of one request: system (task + policy), few-shot pairs, the request.

    Args:
        policy: the policy the prompt is for.
        label: 0 safe / 1 unsafe: the kind of prompt asked for.
        knobs: the request's persona, style, length, language and case.
        few_shot: (example text, knobs of its request turn) pairs, shown as earlier turns.
        templates: the prompt templates.
    """
    messages = [{"role": "system",
                 "content": templates.render("generate_system", policy=render_policy(policy))}]
    for text, example_knobs in few_shot:
        messages.append({"role": "user", "content": request_text(label, example_knobs, templates)})
        messages.append({"role": "assistant", "content": example_answer(text, label, templates)})
    messages.append({"role": "user", "content": request_text(label, knobs, templates)})
    return messages


def expand_requests(policies: list[Policy], expand, templates: Templates, *, seed: int,
                    source: str = "seed", unsafe: int | None = None,
                    safe: int | None = None) -> list[dict[str, Any]]:
    """Generation requests for ``policies`` (without task numbers: see `assign_tasks`).

    Args:
        policies: the policies, in order.
        expand: an `guardray.generate.config.ExpandConfig` (knob lists, few-shot count).
        templates: the prompt templates.
        seed: the job seed.
        source: ``seed`` (human policies) or ``diverse`` (synthetic policies, 3.3).
        unsafe, safe: requests per policy and label (default: from ``expand``).

    Returns:
        Request rows, policy by policy, unsafe first, each with a unique ``request_id``
        ``"{source}:{policy_id}:{label}:{index:05d}"``.
    """
    counts = {S.UNSAFE: expand.unsafe_per_policy if unsafe is None else unsafe,
              S.SAFE: expand.safe_per_policy if safe is None else safe}
    rows = []
    for policy in policies:
        for label in (S.UNSAFE, S.SAFE):
            examples = example_pool(policy, label, templates)
            for i in range(counts[label]):
                rid = f"{source}:{policy.id}:{S.LABEL_NAMES[label]}:{i:05d}"
                rng = random.Random(row_seed(seed, "expand", rid))
                knobs = draw_knobs(rng, expand)
                shown = rng.sample(examples, min(expand.few_shot, len(examples)))
                few_shot = [(text, draw_knobs(rng, expand)) for text in shown]
                rows.append({
                    REQUEST_ID: rid, S.POLICY_ID: policy.id, S.SOURCE: source,
                    REQUESTED_LABEL: label, **knobs,
                    MESSAGES: generation_messages(policy, label, knobs, few_shot, templates),
                    SEED: row_seed(seed, "generate", rid),
                })
    return rows


def assign_tasks(rows: list[dict[str, Any]], task_size: int) -> dict[int, list[dict[str, Any]]]:
    """Number rows into tasks of ``task_size`` in order; sets each row's ``task``.

    Returns:
        ``{task index: rows}`` with indices 0..n-1.
    """
    if task_size < 1:
        raise ValueError(f"task_size must be >= 1, got {task_size}")
    tasks: dict[int, list[dict[str, Any]]] = {}
    for i, row in enumerate(rows):
        row[TASK] = i // task_size
        tasks.setdefault(row[TASK], []).append(row)
    return tasks


def reflection_messages(policy: Policy, text: str, label: int, rationale: str,
                        templates: Templates, *, examples: int = 1) -> list[dict[str, str]]:
    """Self-reflection chat (3.1): the policy, the prompt, and the generator's own label.

    Before the question, up to ``examples`` of the policy's own example prompts per label
    are shown as answered reflection turns (their expert labels confirmed), which teaches
    small generators the answer format without biasing towards either label.
    """
    messages = [{"role": "system", "content": templates.render(
        "reflect_system", policy=render_policy(policy))}]
    for example_label, pool in ((S.UNSAFE, policy.examples.unsafe), (S.SAFE, policy.examples.safe)):
        for example in pool[:examples]:
            name = S.LABEL_NAMES[example_label]
            reason = templates.render(f"example_rationale_{name}")
            messages.append({"role": "user", "content": templates.render(
                "reflect_user", prompt=example, label=name, rationale=reason)})
            messages.append({"role": "assistant", "content": json.dumps(
                {"label": name, "reason": reason}, ensure_ascii=False)})
    messages.append({"role": "user", "content": templates.render(
        "reflect_user", prompt=text, label=S.LABEL_NAMES[label], rationale=rationale or "(none)")})
    return messages
