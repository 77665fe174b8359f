"""The pipeline's ledger of finished steps: reuse only an unchanged step after reused ones."""

from __future__ import annotations

import json

from guardray.pipeline.resume import LEDGER, Ledger, fingerprint


def _steps(tmp_path, configs: dict[str, dict], calls: list[str]) -> dict[str, dict]:
    """One pipeline run: each step writes its result file, then the ledger records it."""
    ledger = Ledger(str(tmp_path))
    out = {}
    for key, cfg in configs.items():
        result = tmp_path / f"{key}.json"

        def run(key=key, cfg=cfg, result=result):
            calls.append(key)
            value = {"key": key, "lr": cfg["lr"]}
            result.write_text(json.dumps(value))
            return value

        out[key] = ledger.step(key, cfg, str(result), run)
    return out


def test_a_rerun_reuses_finished_steps_and_reruns_from_the_first_change(tmp_path):
    configs = {"pretrain": {"lr": 1}, "finetune": {"lr": 2}, "merge": {"lr": 3}}
    calls: list[str] = []
    first = _steps(tmp_path, configs, calls)
    assert calls == ["pretrain", "finetune", "merge"]
    assert json.loads((tmp_path / LEDGER).read_text()) == {
        k: fingerprint(v) for k, v in configs.items()}

    calls.clear()
    assert _steps(tmp_path, configs, calls) == first and calls == []  # all reused

    changed = dict(configs, finetune={"lr": 20})
    _steps(tmp_path, changed, calls)
    assert calls == ["finetune", "merge"]  # merge's input changed with finetune: it reruns


def test_a_step_without_its_result_file_runs_again(tmp_path):
    configs = {"pretrain": {"lr": 1}, "finetune": {"lr": 2}}
    calls: list[str] = []
    _steps(tmp_path, configs, calls)
    (tmp_path / "pretrain.json").unlink()  # e.g. a driver killed between writes
    calls.clear()
    _steps(tmp_path, configs, calls)
    assert calls == ["pretrain", "finetune"]


def test_fingerprint_is_order_independent_and_value_sensitive():
    assert fingerprint({"a": 1, "b": [1, 2]}) == fingerprint({"b": [1, 2], "a": 1})
    assert fingerprint({"a": 1}) != fingerprint({"a": 2})


def test_a_step_run_in_a_thread_is_reused_like_any_other(tmp_path):
    """The judge's pattern: `reused` decided in the caller's thread, `record` from a worker
    thread once the step's result is written; every step recorded lands in the ledger."""
    from concurrent.futures import ThreadPoolExecutor

    configs = {f"judge/p{i}": {"i": i} for i in range(6)}

    def run(key):
        (tmp_path / f"{key.replace('/', '_')}.json").write_text(json.dumps({"key": key}))
        ledger.record(key, configs[key])

    ledger = Ledger(str(tmp_path))
    todo = [k for k in configs if ledger.reused(k, configs[k], str(tmp_path / "none")) is None]
    assert todo == list(configs)
    with ThreadPoolExecutor(max_workers=3) as pool:
        list(pool.map(run, todo))
    assert json.loads((tmp_path / LEDGER).read_text()) == {
        k: fingerprint(v) for k, v in configs.items()}

    again = Ledger(str(tmp_path))
    assert [again.reused(k, v, str(tmp_path / f"{k.replace('/', '_')}.json"))
            for k, v in configs.items()] == [{"key": k} for k in configs]
    assert again.reused_keys == list(configs)
