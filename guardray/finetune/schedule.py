"""Which fine-tuning trial starts first: the longest, so that none starts last and runs alone.

When there are more trials than slots (``trials.max_concurrent``, or the CPUs/GPUs Ray has),
Ray Tune starts them in the order of its grid. Trials of one job differ a lot in length (a
policy with long jailbreak prompts trains several times longer than one with short
questions); if the longest starts last, the job ends long after the other slots went idle.
Starting the longest first is Graham's LPT rule ("longest processing time", 1969): on ``m``
identical slots its makespan is at most ``(4/3 - 1/(3m))`` times the optimum.

The length of a trial is estimated from its training rows alone, before any training:

    cost(group) = sum over training rows r of min(ceil(chars(r) / 4) + 2, max_length)

i.e. the tokens the encoder reads per epoch (about 4 characters per token for English text,
plus the two special tokens, cut at ``model.max_length``). Rows a training mix repeats count
each time. The estimate only orders the trials; nothing else depends on it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

CHARS_PER_TOKEN = 4
SPECIAL_TOKENS = 2


def token_estimate(texts: Sequence[str], max_length: int) -> int:
    """Tokens an encoder reads for ``texts`` (see the module docstring), each cut at
    ``max_length``."""
    return sum(min(math.ceil(len(t) / CHARS_PER_TOKEN) + SPECIAL_TOKENS, max_length)
               for t in texts)


def longest_first(costs: dict[str, int]) -> list[str]:
    """The names of ``costs`` ({name: estimated cost}) from the costliest to the cheapest; ties
    keep the name order, so the schedule is deterministic."""
    return sorted(sorted(costs), key=lambda name: -costs[name])
