"""Seed rows: a policy's own example prompts as labelled samples (``source="seed"``).

These are the expert-written examples of each policy (GuardFormer 3.1, P_examples). They are
the few-shot seeds of generation and a first, tiny labelled set. Pure functions: no I/O.
"""

from __future__ import annotations

import hashlib

from guardray import schema as S
from guardray.policies.schema import Policy

SEED_GENERATOR = "policy-examples"


def assign_split(row_id: str, validation: float, test: float, seed: int = 0) -> str:
    """Deterministic split from a row id: the same id always lands in the same split.

    The id and seed are hashed to a number u in [0, 1); u < test gives "test",
    u < test + validation gives "validation", else "train".

    Args:
        row_id: the sample's stable id (`guardray.schema.sample_id`).
        validation: fraction of rows for validation, in [0, 1).
        test: fraction of rows for test, in [0, 1); validation + test < 1.
        seed: changes the assignment while keeping it deterministic.
    """
    if not (0 <= validation < 1 and 0 <= test < 1 and validation + test < 1):
        raise ValueError(
            f"split fractions validation={validation}, test={test}: each must be in [0, 1) "
            "and their sum below 1"
        )
    digest = hashlib.blake2b(f"{seed}:{row_id}".encode(), digest_size=8).digest()
    u = int.from_bytes(digest, "big") / 2**64
    if u < test:
        return "test"
    if u < test + validation:
        return "validation"
    return "train"


def seed_rows(
    policies: list[Policy], *, validation: float = 0.0, test: float = 0.0, seed: int = 0
) -> list[dict]:
    """Sample rows (`guardray.schema` columns) from each policy's example prompts.

    Labels are the expert's: safe examples 0, unsafe examples 1; ``label_initial`` equals
    ``label`` (no self-reflection happened); ``rationale`` is empty (experts gave none).

    Returns:
        One dict per example, policies in the given order, unsafe examples first.
    """
    rows = []
    for policy in policies:
        for label, texts in ((S.UNSAFE, policy.examples.unsafe), (S.SAFE, policy.examples.safe)):
            for text in texts:
                row_id = S.sample_id(policy.id, text)
                rows.append(
                    {
                        S.ID: row_id,
                        S.POLICY_ID: policy.id,
                        S.TEXT: text,
                        S.RATIONALE: "",
                        S.LABEL: label,
                        S.LABEL_INITIAL: label,
                        S.SOURCE: "seed",
                        S.GENERATOR: SEED_GENERATOR,
                        S.SPLIT: assign_split(row_id, validation, test, seed),
                    }
                )
    return rows
