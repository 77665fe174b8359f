"""``model.quantize: int8`` and ``model.torchscript`` reach the scorer that ``serve`` and
``classify`` run, and their flags."""

from __future__ import annotations

import numpy as np
from serve_testlib import PROMPTS, make_guard

from guardray.modeling.quantize import float_linears


def test_the_guard_scorer_and_the_cli_flags_carry_quantize(tmp_path):
    from guardray.cli import build_parser
    from guardray.cli.serve_cmd import build_config
    from guardray.serve import GuardModelConfig
    from guardray.serve.guard import GuardScorer, resolve_guard

    guard = make_guard(tmp_path / "g")
    probs = {}
    for mode in ("none", "int8"):
        info = resolve_guard(GuardModelConfig(path=str(guard), policies=[], quantize=mode,
                                              device="cpu", torchscript=False))
        assert info.quantize == mode and info.to_spec().quantize == mode
        scorer = GuardScorer(info)
        probs[mode] = scorer.score(PROMPTS, ["finance"] * len(PROMPTS))[0]
    assert float_linears(scorer.predictor.model) == 0
    # a random tiny model: looser than a trained guard (docs/BENCHMARKS.md, bench_quantize)
    np.testing.assert_allclose(probs["int8"], probs["none"], atol=3e-2)
    assert not np.array_equal(probs["int8"], probs["none"])
    args = build_parser().parse_args(["serve", "--model", str(guard), "--quantize", "int8"])
    assert build_config(args).model.quantize == "int8"


def test_torchscript_scores_equal_eager_ones_and_the_flag_turns_it_off(tmp_path):
    from guardray.cli import build_parser
    from guardray.cli.serve_cmd import build_config
    from guardray.modeling.torchscript import TracedClassifier
    from guardray.serve import GuardModelConfig
    from guardray.serve.guard import GuardScorer, resolve_guard

    guard = make_guard(tmp_path / "g", input_format="instruction")
    probs, models = {}, {}
    for on in (False, True):
        info = resolve_guard(GuardModelConfig(path=str(guard), torchscript=on, device="cpu"))
        assert info.to_spec().torchscript is on
        scorer = GuardScorer(info)
        models[on] = scorer.predictor.model
        policies = [info.policy_ids[i % len(info.policy_ids)] for i in range(len(PROMPTS))]
        probs[on] = scorer.score(PROMPTS, policies)[0]
    assert isinstance(models[True], TracedClassifier)
    assert not isinstance(models[False], TracedClassifier)
    np.testing.assert_allclose(probs[True], probs[False], rtol=0, atol=1e-6)
    parse = build_parser().parse_args
    assert build_config(parse(["serve", "--model", str(guard)])).model.torchscript is True
    off = build_config(parse(["serve", "--model", str(guard), "--no-torchscript"]))
    assert off.model.torchscript is False
