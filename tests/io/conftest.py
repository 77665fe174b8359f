"""Fixtures for the I/O tests: sample rows (the S3 server fixtures are in tests/conftest.py)."""

from __future__ import annotations

import pytest

from guardray import schema


def make_rows(n: int, *, policy_id: str = "safety", start: int = 0) -> list[dict]:
    """``n`` valid sample rows with distinct texts, both labels, sources and splits."""
    rows = []
    for i in range(start, start + n):
        text = f"prompt number {i} about the policy \u00e9\u4e2d"  # non-ASCII on purpose
        rows.append(
            {
                schema.ID: schema.sample_id(policy_id, text),
                schema.POLICY_ID: policy_id,
                schema.TEXT: text,
                schema.RATIONALE: f"because {i}" if i % 3 else "",
                schema.LABEL: i % 2,
                schema.LABEL_INITIAL: (i // 2) % 2,
                schema.SOURCE: schema.SOURCES[i % len(schema.SOURCES)],
                schema.GENERATOR: "test-generator",
                schema.SPLIT: schema.SPLITS[i % len(schema.SPLITS)],
            }
        )
    return rows


@pytest.fixture
def row_factory():
    """The `make_rows` function, for tests that need several batches of rows."""
    return make_rows


@pytest.fixture
def rows():
    """Seven valid sample rows."""
    return make_rows(7)
