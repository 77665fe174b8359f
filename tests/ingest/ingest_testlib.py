"""Helpers of the ingest tests: sources built from small dicts, records frames from lists."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from guardray.ingest.config import SourceConfig
from guardray.ingest.readers import records_of

REPO = Path(__file__).resolve().parents[2]
POLICY_IDS = ["finance", "injection", "safety", "tax"]


def source(rules: list[dict], **fields: Any) -> SourceConfig:
    """A path source (never read) with ``rules``."""
    data = {"name": "src", "path": "unused.jsonl", "rules": rules, **fields}
    return SourceConfig.model_validate(data)


def records(items: list[dict | str], *, file: str = "f.jsonl", provenance: str = "file:f.jsonl"):
    """A records frame from ``{"text", "label", "categories", "policy"}`` dicts or strings."""
    frame = records_of([{"text": i} if isinstance(i, str) else i for i in items])
    frame["file"] = file
    frame["source"] = provenance
    return frame
