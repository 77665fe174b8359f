"""Policy diversification (GuardFormer 3.3): synthetic policies from the unified data.

The unified dataset D_unified (the generated samples of every human policy) seeds requests
for new policies P': each request shows a few labelled rows of D_unified and a topic hint,
after a one-shot pair in which a human policy is written from its own example prompts (so a
small generator sees the JSON shape). Answers that validate as a `guardray.policies.Policy`
become synthetic policies (ids ``syn-...``); their prompts are then generated like any
policy's, with ``source="diverse"``. Pure functions: no I/O, no Ray.
"""

from __future__ import annotations

import hashlib
import json
import random
import re
from typing import Any

from pydantic import ValidationError

from guardray import schema as S
from guardray.generate import parse as P
from guardray.generate.expand import MESSAGES, REQUEST_ID, SEED
from guardray.generate.templates import Templates
from guardray.llm.messages import row_seed
from guardray.policies import Policy

TOPIC = "topic"
MAX_EXAMPLE_CHARS = 300


def format_examples(rows: list[dict[str, Any]]) -> str:
    """Sample rows as ``- [unsafe] text (why: rationale)`` lines."""
    lines = []
    for row in rows:
        text = str(row[S.TEXT])[:MAX_EXAMPLE_CHARS]
        line = f"- [{S.LABEL_NAMES[int(row[S.LABEL])]}] {text}"
        if row.get(S.RATIONALE):
            line += f" (why: {str(row[S.RATIONALE])[:MAX_EXAMPLE_CHARS]})"
        lines.append(line)
    return "\n".join(lines)


def policy_json(policy: Policy, max_items: int = 4) -> str:
    """A policy as the JSON answer shape of the diversify template."""
    return json.dumps({"name": policy.name, "description": policy.description,
                       "disallowed": policy.disallowed[:max_items],
                       "allowed": policy.allowed[:max_items]}, ensure_ascii=False)


def _example_rows(policy: Policy, k: int) -> list[dict[str, Any]]:
    rows = [{S.TEXT: t, S.LABEL: S.UNSAFE} for t in policy.examples.unsafe[:k]]
    rows += [{S.TEXT: t, S.LABEL: S.SAFE} for t in policy.examples.safe[:k]]
    return rows


def diversify_requests(unified: list[dict[str, Any]], policies: list[Policy], cfg,
                       templates: Templates, *, seed: int) -> list[dict[str, Any]]:
    """Requests for ``cfg.num_policies`` synthetic policies.

    Args:
        unified: sample rows of D_unified (needs text, label, rationale); sorted by id
            here so the draw does not depend on the order rows were read in. When empty,
            the human policies' own examples are used instead.
        policies: the human policies (for the one-shot pair and the names to avoid).
        cfg: a `guardray.generate.config.DiversifyConfig`.
        templates: the prompt templates.
        seed: the job seed.

    Returns:
        Request rows with ``request_id`` ``"policy:{j:04d}"``, ``topic``, ``messages``
        and ``seed``.
    """
    pool = sorted(unified, key=lambda r: r.get(S.ID) or S.sample_id(r[S.POLICY_ID], r[S.TEXT]))
    if not pool:
        pool = [row for p in policies for row in _example_rows(p, 10)]
    names = ", ".join(p.name for p in policies)
    system = templates.render("diversify_system")
    rows = []
    for j in range(cfg.num_policies):
        rid = f"policy:{j:04d}"
        rng = random.Random(row_seed(seed, "diversify", rid))
        topic = rng.choice(cfg.topics)
        shown = rng.sample(pool, min(cfg.examples_per_request, len(pool)))
        demo = rng.choice(policies)
        messages = [
            {"role": "system", "content": system},
            {"role": "user", "content": templates.render(
                "diversify_example_user", examples=format_examples(_example_rows(demo, 2)))},
            {"role": "assistant", "content": policy_json(demo)},
            {"role": "user", "content": templates.render(
                "diversify_user", examples=format_examples(shown), policy_names=names,
                topic=topic)},
        ]
        rows.append({REQUEST_ID: rid, TOPIC: topic, MESSAGES: messages,
                     SEED: row_seed(seed, "diversify-generate", rid)})
    return rows


def policy_id_for(name: str) -> str:
    """A valid, stable policy id for a synthetic policy name: ``syn-<slug>-<hash>``."""
    slug = re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")[:40].strip("-") or "policy"
    digest = hashlib.blake2b(name.strip().lower().encode(), digest_size=3).hexdigest()
    return f"syn-{slug}-{digest}"


def policy_from_answer(raw: str, taken_names: set[str]) -> Policy | P.Reject:
    """A synthetic `Policy` from a generated answer, or a `guardray.generate.parse.Reject`.

    Args:
        raw: the model's answer.
        taken_names: lowercased names already used (human and earlier synthetic policies);
            a repeat is rejected as ``duplicate_policy``.
    """
    fields = P.parse_policy_answer(raw)
    if isinstance(fields, P.Reject):
        return fields
    both = {i.lower() for i in fields["allowed"]} & {i.lower() for i in fields["disallowed"]}
    if both:
        return P.Reject(P.INVALID_POLICY, f"behaviours both allowed and disallowed: {sorted(both)}")
    if fields["name"].lower() in taken_names:
        return P.Reject(P.DUPLICATE_POLICY, f"a policy named {fields['name']!r} exists")
    try:
        return Policy(id=policy_id_for(fields["name"]), **fields)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        return P.Reject(P.INVALID_POLICY, problems[:300])
