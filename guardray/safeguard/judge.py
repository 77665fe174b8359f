"""Judging (instruction, response) pairs: harmful (1), not harmful (0), or unparseable (None).

Two judges, as in the paper's appendix B.2 (WildGuard's "harmful response"):

- the guard: a guardray classifier trained on responses (`guardray.safeguard.guard_data`),
  scored on Ray Data actors (`guardray.serve.GuardScorer`, one model load per actor) with
  the input `format_pair`; P(unsafe) >= its threshold is harmful. It always gives a label.
- an LLM judge with the ``response_harm`` template (`guardray.evaluate.judges`), answers
  parsed without guessing; an unparseable answer stays None and is counted.
"""

from __future__ import annotations

import logging
from typing import Any

log = logging.getLogger(__name__)

POLICY_ID = "response_harm"


def format_pair(instruction: str, response: str) -> str:
    """The guard's input text for one pair (training and judging use this one function)."""
    return f"Instruction: {instruction.strip()}\nResponse: {response.strip()}"


class _GuardUDF:
    """Ray Data class UDF: pandas (_i, text) -> (_i, prob)."""

    def __init__(self, info):
        from guardray.serve import GuardScorer

        self.scorer = GuardScorer(info)

    def __call__(self, batch):
        probs, _ = self.scorer.score(batch["text"].tolist(), [POLICY_ID] * len(batch))
        return batch[["_i"]].assign(prob=probs)


def guard_info(model: str, policy: str, threshold: float | None, *, max_length: int = 512):
    """The `GuardInfo` of the response guard (checks the checkpoint and its threshold)."""
    from guardray.serve import GuardModelConfig, resolve_guard

    return resolve_guard(GuardModelConfig(path=model, policies=[policy], policy_ids=[POLICY_ID],
                                          threshold=threshold, max_length=max_length,
                                          device="auto"))


def guard_judge(info, instructions: list[str], responses: list[str], *,
                num_cpus: float = 1.0) -> tuple[list[int], list[float]]:
    """Labels and P(harmful) of each pair by the guard (Ray must be running)."""
    import ray

    if not instructions:
        return [], []
    texts = [format_pair(i, r) for i, r in zip(instructions, responses, strict=True)]
    ds = ray.data.from_items([{"_i": k, "text": t} for k, t in enumerate(texts)])
    out = ds.map_batches(_GuardUDF, fn_constructor_kwargs={"info": info}, batch_size=32,
                         batch_format="pandas", compute=ray.data.ActorPoolStrategy(size=1),
                         num_cpus=num_cpus).to_pandas().sort_values("_i")
    probs = [float(p) for p in out["prob"].tolist()]
    return [int(p >= info.threshold) for p in probs], probs


def llm_judge(section, instructions: list[str], responses: list[str]) -> dict[str, Any]:
    """Labels (None when unparseable) and answer statuses by the LLM judge.

    Args:
        section: a `guardray.safeguard.config.LLMJudgeSection`.

    Returns:
        ``{"labels": [...], "statuses": [...], "answers": [...]}``.
    """
    from guardray.evaluate import build_response_messages, parse_answer
    from guardray.safeguard.respond import generate_responses

    conversations = [build_response_messages(i, r, as_system=section.as_system)
                     for i, r in zip(instructions, responses, strict=True)]
    llm = section.llm
    answers = generate_responses(llm, _model_ref(llm.model), conversations,
                                 max_new_tokens=llm.sampling.max_tokens)
    parsed = [parse_answer("response_harm", a) for a in answers]
    return {"labels": [p.label for p in parsed], "statuses": [p.status for p in parsed],
            "answers": answers}


def _model_ref(model: str) -> str:
    if model.startswith(("embedded:", "tiny:")):
        from guardray.modeling.base import resolve_base

        return resolve_base(model)
    return model
