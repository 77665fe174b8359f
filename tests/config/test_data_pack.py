"""The hand-written prompt files under configs/data/ keep training and measurement apart.

The alarming-but-safe sets (configs/data/alarming_safe/) measure the false-positive rate; the
training files (ordinary requests, alarming-safe training prompts) must hold no near-copy of
them, or that rate would be measured on memorised prompts. Near-copy: cosine >= 0.7 between
all-MiniLM-L6-v2 embeddings (the ingest stage groups texts at 0.75).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[2]
DATA = REPO / "configs" / "data"
MEASURE = sorted((DATA / "alarming_safe").glob("*.jsonl"))
TRAIN = sorted((DATA / "alarming_safe_train").glob("*.jsonl")) + [
    DATA / "ordinary" / "requests.jsonl"] + sorted((DATA / "advice_requests").glob("*.jsonl"))
HELD_OUT = DATA / "ordinary" / "requests_heldout.jsonl"


def _texts(files) -> list[str]:
    return [json.loads(line)["text"] for f in files for line in f.read_text().splitlines()
            if line.strip()]


@pytest.fixture(scope="module")
def embed():
    from sentence_transformers import SentenceTransformer

    from guardray.modeling.offline import resolve_model

    model = SentenceTransformer(resolve_model("embedded:all-minilm-l6-v2"), device="cpu")
    return lambda texts: model.encode(texts, normalize_embeddings=True, batch_size=64)


def test_files_hold_unique_nonempty_prompts():
    for f in [*MEASURE, *TRAIN, HELD_OUT]:
        texts = _texts([f])
        assert texts and all(t.strip() for t in texts), f
        assert len(set(texts)) == len(texts), f"{f}: repeated prompts"


@pytest.mark.parametrize("other", ["train", "held_out"])
def test_no_training_prompt_is_a_near_copy_of_a_measured_one(embed, other):
    measured = _texts(MEASURE)
    texts = _texts(TRAIN) if other == "train" else _texts([HELD_OUT])
    sim = embed(texts) @ embed(measured).T
    worst = np.unravel_index(int(sim.argmax()), sim.shape)
    assert sim.max() < 0.7, (texts[worst[0]], measured[worst[1]], float(sim.max()))


def test_held_out_requests_are_not_near_copies_of_training_requests(embed):
    sim = embed(_texts([HELD_OUT])) @ embed(_texts([DATA / "ordinary" / "requests.jsonl"])).T
    assert sim.max() < 0.75
