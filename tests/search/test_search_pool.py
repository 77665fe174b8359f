"""Pool, objective and export without Tune: a real tiny instruction-input pool (TaskGuards per
policy + a MultiTaskGuard), refused pools and configs, and the exported recipe reproduced by
``guardray merge``."""

from __future__ import annotations

import json
import shutil

import pytest
import torch
from search_testlib import read_weights, search_config

from guardray.config import ConfigError
from guardray.search import PoolError, build_pool
from guardray.search.space import Point


@pytest.fixture(scope="module")
def prep(ipool, tmp_path_factory):
    from guardray.search.inputs import prepare

    cfg = search_config(ipool, tmp_path_factory.mktemp("unused"))
    return prepare(cfg)


def test_pool_ranks_taskguards_and_the_multitaskguard_from_one_base(prep):
    pool = prep.pool
    assert sorted(c.kind for c in pool.candidates) == ["MultiTaskGuard", "TaskGuard", "TaskGuard"]
    assert [c.f1 for c in pool.candidates] == sorted((c.f1 for c in pool.candidates),
                                                      reverse=True)
    assert pool.base_ref == "tiny:xlmr" and pool.input_format == "instruction"
    assert pool.policy_ids == ["finance", "tax"]
    # A.5.1: the descriptions the models were trained with, then the policies' instructions
    names = [o["name"] for o in prep.options]
    assert names[0] == "description" and "instructions[0]" in names
    finance = prep.policies["finance"]
    option = prep.options[names.index("instructions[0]")]
    assert option["texts"]["finance"] == finance.instructions[0]
    tax = prep.policies["tax"]
    assert option["texts"]["tax"] == (tax.instructions or [tax.description])[0]
    assert prep.space.n_instructions == len(prep.options) >= 2
    assert len(prep.validation.ids) == len(prep.options)
    assert set(prep.rows.policy_ids) == {"finance", "tax"} and len(prep.rows) == 48


def test_objective_is_per_policy_macro_f1_of_the_merged_model(prep):
    from guardray.search.trainable import evaluate_point

    seed = prep.space.seed_point()
    res = evaluate_point(seed, prep.weights, prep.validation)
    assert set(res["policies"]) == {"finance", "tax"}
    per = [m["macro_f1"] for m in res["policies"].values()]
    assert res["mean"] == pytest.approx(sum(per) / 2) and res["worst"] == min(per)
    assert res["objective"] == res["mean"] and 0 <= res["threshold"] <= 1
    other = Point(seed.members, seed.weights, "ties", (("density", 0.5), ("lambda", 1.0)), 1)
    assert 0 <= evaluate_point(other, prep.weights, prep.validation)["mean"] <= 1


def test_exported_recipe_reproduces_the_exported_weights(prep, ipool, tmp_path):
    from guardray.merge import load_merge_config
    from guardray.search.export import export_search
    from jobs.merge import main as merge_main

    cfg = search_config(ipool, tmp_path / "out")
    point = Point((0, 1, 2), (0.5, 0.3, 0.2), "dare_ties", (("drop_rate", 0.3), ("lambda", 1.1)),
                  1)
    records = [{"trial_id": "t0", "point": prep.space.seed_point().to_dict(), "value": 0.5,
                "error": False, "metrics": {}},
               {"trial_id": "t1", "point": point.to_dict(), "value": 0.9, "error": False,
                "metrics": {}},
               {"trial_id": "t2", "point": point.to_dict(), "value": None, "error": True,
                "metrics": {}}]
    summary = export_search(cfg, prep, records, experiments=[], tune_dir=None, seconds=1.0)
    model = tmp_path / "out" / "uniguard"
    card = json.loads((model / "guardray_model.json").read_text())
    assert card["method"] == "uniguard" and card["policy_ids"] == ["finance", "tax"]
    assert card["threshold"]["source"] in ("validation", "default")
    assert card["policies"]["finance"]["description"] == \
        prep.policies["finance"].instructions[0] == card["instruction"]["texts"]["finance"]
    assert summary["trials"] == 3 and summary["failed"] == 1 and summary["method"] == "dare_ties"
    assert summary["best_so_far"] == [0.5, 0.9, 0.9]
    rows = {r["policy"]: r for r in summary["per_policy"]}
    assert rows["tax"]["taskguard"] == "tax/seed0"
    assert rows["tax"]["multitaskguard"] == "multi/seed0"
    assert rows["tax"]["uniguard_test"] is not None and summary["test"]["rows"] == 32
    report = (tmp_path / "out" / "report.md").read_text()
    assert "| tax |" in report and "merge_method: dare_ties" in report
    assert (tmp_path / "out" / "convergence.png").stat().st_size > 1000
    # guardray merge RECIPE OUT rebuilds the same weights
    recipe = tmp_path / "out" / "recipe.yaml"
    assert recipe.read_text().startswith("# guardray merge ")
    merge_main(load_merge_config(recipe, [f"output_dir={tmp_path / 'again'}", "progress=false"]))
    ours, theirs = read_weights(model), read_weights(tmp_path / "again")
    assert ours.keys() == theirs.keys()
    for name in ours:
        torch.testing.assert_close(ours[name], theirs[name], rtol=0, atol=1e-6)


def test_per_policy_thresholds_are_searched_exported_and_used_on_the_test_rows(prep, ipool,
                                                                            tmp_path):
    import dataclasses

    import numpy as np

    from guardray.metrics.threshold import choose_threshold
    from guardray.search.export import export_search
    from guardray.search.trainable import evaluate_point

    cfg = search_config(ipool, tmp_path / "out", "objective.threshold_scope=policy")
    per = dataclasses.replace(prep, validation=dataclasses.replace(prep.validation,
                                                                   threshold_scope="policy"))
    seed = prep.space.seed_point()
    res = evaluate_point(seed, per.weights, per.validation)
    pids = np.asarray(prep.rows.policy_ids)
    for pid in ("finance", "tax"):  # each cut chosen on that policy's validation rows alone
        m = pids == pid
        own = choose_threshold(res["scores"][m], prep.rows.labels[m], rule="max_f1")
        assert res["policies"][pid]["threshold"] == own.threshold
    records = [{"trial_id": "t0", "point": seed.to_dict(), "value": res["objective"],
                "error": False, "metrics": {}}]
    summary = export_search(cfg, per, records, experiments=[], tune_dir=None, seconds=1.0)
    card = json.loads((tmp_path / "out" / "uniguard" / "guardray_model.json").read_text())
    t = card["threshold"]
    assert t["scope"] == "policy" and t["threshold"] == res["threshold"]
    assert {pid: v["threshold"] for pid, v in t["per_policy"].items()} == \
        summary["policy_thresholds"] == summary["test"]["policy_thresholds"] == \
        {pid: m["threshold"] for pid, m in res["policies"].items()}
    assert summary["test"]["policies"]["tax"]["threshold"] == t["per_policy"]["tax"]["threshold"]
    assert "each policy's, chosen on its validation rows" in \
        (tmp_path / "out" / "report.md").read_text()


def test_pools_that_mix_bases_or_architectures_are_refused(ipool, tmp_path):
    bad = tmp_path / "other"
    shutil.copytree(ipool["ft"] / "tax" / "seed0", bad / "tax" / "seed0")
    card_file = bad / "tax" / "seed0" / "guardray_model.json"
    card = json.loads(card_file.read_text())
    card_file.write_text(json.dumps({**card, "base_model": "embedded:all-minilm-l6-v2"}))
    with pytest.raises(PoolError, match="mixes base_models: .* has 'tiny:xlmr' but .* has "
                                        "'embedded:all-minilm-l6-v2'"):
        build_pool([str(ipool["ft"]), str(bad)])
    card_file.write_text(json.dumps(card))
    cfg_file = bad / "tax" / "seed0" / "config.json"
    cfg_file.write_text(json.dumps({**json.loads(cfg_file.read_text()), "hidden_size": 64}))
    with pytest.raises(PoolError, match="mixes architectures: .* hidden_size=32 but .*=64"):
        build_pool([str(ipool["ft"]), str(bad)])
    with pytest.raises(ConfigError, match="does not exist"):
        build_pool([str(tmp_path / "missing")])


def test_an_objective_on_the_test_split_is_refused(ipool, tmp_path):
    with pytest.raises(ConfigError, match="objective.split 'test': the merge search scores "
                                          "validation rows only"):
        search_config(ipool, tmp_path, "objective.split=test")
    with pytest.raises(ConfigError, match="both 'test'"):
        search_config(ipool, tmp_path, "data.validation_split=test", "objective.split=test")
    with pytest.raises(ConfigError, match="unknown merge method"):
        search_config(ipool, tmp_path, "space.methods=[soup2]")


def test_resuming_a_different_search_is_refused(ipool, tmp_path):
    from guardray.search.run import _decide

    cfg = search_config(ipool, tmp_path)
    plan = {"fingerprint": {"data": "elsewhere", "searcher": {"budget": 3}}, "experiments": []}
    with pytest.raises(ConfigError, match="different setup \\(changed: data"):
        _decide(cfg, plan, {"data": "here", "searcher": {"budget": 9}}, "out")
    assert _decide(cfg, {**plan, "fingerprint": {"data": "here", "searcher": {"budget": 3}}},
                   {"data": "here", "searcher": {"budget": 9}}, "out") == "fresh"  # no ledger
    never = search_config(ipool, tmp_path, "resume=never")
    with pytest.raises(FileExistsError, match="set resume=json to continue it"):
        _decide(never, plan, {}, "out")


def test_the_command_ends_bad_input_with_one_line_before_ray_starts(tmp_path):
    import os
    import subprocess
    import sys

    from search_testlib import DEBUG_SEARCH, REPO

    r = subprocess.run([sys.executable, "-m", "guardray", "search", "--config", str(DEBUG_SEARCH),
                        f"pool.finetune_dirs=[{tmp_path / 'none'}]"], cwd=REPO,
                       capture_output=True, text=True, timeout=120, check=False,
                       env={**os.environ, "PYTHONUNBUFFERED": "1"})
    assert r.returncode == 2 and "does not exist (run guardray finetune first" in r.stderr
    assert "Traceback" not in r.stderr and "starting a local Ray" not in r.stderr


def test_a_base_without_the_head_gets_a_zero_head_and_an_exported_merge_base(tmp_path):
    """PolicyGuard from a plain encoder: the head is created at fine-tuning, so the task
    vectors of its tensors are taken from zero, and the recipe names the base the search
    merged with (written to merge_base/), which ``guardray merge`` reproduces."""
    from sample_testlib import write_sample_shards
    from search_testlib import finetune

    from guardray.merge import load_merge_config
    from guardray.modeling.tiny import build_tiny_xlmr
    from guardray.search import prepare
    from guardray.search.export import export_search
    from jobs.merge import main as merge_main

    encoder = build_tiny_xlmr(tmp_path / "encoder", task="base", seed=0)
    data = write_sample_shards(tmp_path / "data")
    finetune(data, tmp_path / "ft", f"model.base={encoder}", "train.epochs=1",
             "data.max_train_rows=32", "model.max_length=64")
    cfg = search_config({"data": data, "ft": tmp_path / "ft"}, tmp_path / "out",
                        "space.methods=[ties]", "data.test_metrics=false")
    prep = prepare(cfg)
    assert prep.weights.zero_base and all(n.startswith("classifier.")
                                          for n in prep.weights.zero_base)
    assert not prep.weights.base["classifier.out_proj.weight"].any()
    point = Point((0, 1), (0.6, 0.4), "ties", (("density", 0.7), ("lambda", 1.0)), 0)
    export_search(cfg, prep, [{"trial_id": "t", "point": point.to_dict(), "value": 0.7,
                               "error": False, "metrics": {}}],
                  experiments=[], tune_dir=None, seconds=0.0)
    recipe = tmp_path / "out" / "recipe.yaml"
    assert f"base_model: {tmp_path / 'out' / 'merge_base'}" in recipe.read_text()
    merge_main(load_merge_config(recipe, [f"output_dir={tmp_path / 'again'}", "progress=false"]))
    ours = read_weights(tmp_path / "out" / "uniguard")
    theirs = read_weights(tmp_path / "again")
    for name in ours:
        torch.testing.assert_close(ours[name], theirs[name], rtol=0, atol=1e-6)
