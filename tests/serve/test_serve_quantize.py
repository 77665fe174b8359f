"""``model.quantize: int8`` reaches the scorer that ``serve`` and ``classify`` run, and the flag."""

from __future__ import annotations

import numpy as np
import torch
from serve_testlib import PROMPTS, make_guard


def _linears(model) -> int:
    return sum(isinstance(m, torch.nn.Linear) for m in model.modules())


def test_the_guard_scorer_and_the_cli_flags_carry_quantize(tmp_path):
    from guardray.cli import build_parser
    from guardray.cli.serve_cmd import build_config
    from guardray.serve import GuardModelConfig
    from guardray.serve.guard import GuardScorer, resolve_guard

    guard = make_guard(tmp_path / "g")
    probs = {}
    for mode in ("none", "int8"):
        info = resolve_guard(GuardModelConfig(path=str(guard), policies=[], quantize=mode,
                                              device="cpu"))
        assert info.quantize == mode and info.to_spec().quantize == mode
        scorer = GuardScorer(info)
        probs[mode] = scorer.score(PROMPTS, ["finance"] * len(PROMPTS))[0]
    assert _linears(scorer.predictor.model) == 0
    # a random tiny model: looser than a trained guard (docs/BENCHMARKS.md, bench_quantize)
    np.testing.assert_allclose(probs["int8"], probs["none"], atol=3e-2)
    assert not np.array_equal(probs["int8"], probs["none"])
    args = build_parser().parse_args(["serve", "--model", str(guard), "--quantize", "int8"])
    assert build_config(args).model.quantize == "int8"
