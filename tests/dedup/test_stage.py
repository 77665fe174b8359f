"""The dedup stage end to end: real all-MiniLM-L6-v2 actors, real Ray Data, real Parquet.

Embedding runs are the slow part (an actor loads torch and the model): the tests share a few.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

from dedup_corpus import DISTINCT, EXACT_VARIANTS, NEAR_PAIRS, make_row
from guardray import schema as S
from guardray.config import ConfigError, load_config
from guardray.dedup import removed as R
from guardray.dedup.config import DedupConfig
from guardray.dedup.greedy import exact_greedy
from guardray.io import shards

REPO = Path(__file__).resolve().parents[2]
DEBUG_CONFIG = REPO / "configs" / "debug" / "dedup.yaml"


def corpus() -> list[dict]:
    """Tax rows: distinct prompts, 2 near pairs, 1 normalised-text duplicate, 1 identical copy;
    plus one finance row whose text equals a tax row (a duplicate only under global scope)."""
    rows = [make_row(t) for t in DISTINCT]
    rows += [make_row(t) for pair in NEAR_PAIRS + EXACT_VARIANTS for t in pair]
    rows.append(make_row(DISTINCT[0]))  # the very same row twice
    rows.append(make_row(DISTINCT[2], "finance", label=0))
    return rows


def config(tmp_path: Path, *overrides: str) -> DedupConfig:
    return load_config(DedupConfig, DEBUG_CONFIG, [f"input_dir={tmp_path / 'in'}",
                                                   f"output_dir={tmp_path / 'out'}", *overrides])


def write_input(folder: Path, rows: list[dict], n_shards: int, seed: int = 0) -> None:
    rows = list(rows)
    random.Random(seed).shuffle(rows)
    for k in range(n_shards):
        shards.write_shard(rows[k::n_shards], folder, index=k)


def sorted_rows(table) -> list[dict]:
    return sorted(table.to_pylist(), key=lambda r: (r[S.ID], json.dumps(r, sort_keys=True)))


def test_dedup_dataset_in_process(ray_session, tmp_path):
    from guardray.dedup.embed import Embedder
    from guardray.dedup.stage import dedup_dataset

    # plus a case/space variant of one near pair's text: an exact duplicate inside a near group
    variant = make_row("  " + NEAR_PAIRS[1][1].upper() + " ")
    rows = corpus() + [variant]
    cfg = config(tmp_path)  # scope policy, method global, clusters of 8 rows, 2 probes
    kept_ds, removed, counts = dedup_dataset(ray_session.data.from_items(rows), cfg)
    kept = kept_ds.take_all()

    assert counts == {"in": 17, "out": 12, "dropped": {"exact_duplicate": 3, "near_duplicate": 2}}
    assert len(kept) == 12 and set(kept[0]) == set(S.COLUMNS)
    assert removed.schema == R.removed_schema() and removed.num_rows == 5
    kept_ids = [r[S.ID] for r in kept]
    assert len(set(kept_ids)) == 12  # the identical copy appears once
    # the finance row with a tax row's text is kept: policy scope
    assert {(r[S.POLICY_ID], r[S.TEXT]) for r in kept} >= {("finance", DISTINCT[2]), ("tax", DISTINCT[2])}

    by_removed = {r[R.TEXT]: r for r in removed.to_pylist()}
    # exact: the normalised-text variant whose id sorts later is removed, pointing at the other
    a, b = (make_row(t) for t in EXACT_VARIANTS[0])
    first, second = sorted([a, b], key=lambda r: r[S.ID])
    rec = by_removed[second[S.TEXT]]
    assert (rec[R.KEPT_ID], rec[R.REASON], rec[R.METHOD], rec[R.SIMILARITY]) == (
        first[S.ID], "exact_duplicate", "exact", 1.0)
    # the identical copy: removed id == kept id
    copy = make_row(DISTINCT[0])
    assert [r for r in removed.to_pylist() if r[R.REMOVED_ID] == copy[S.ID]][0][R.KEPT_ID] == copy[S.ID]

    # near pairs: checked against the model run in this process and the exact reference rule
    model = Embedder("embedded:all-minilm-l6-v2", batch_size=16)
    group = [make_row(t) for t in NEAR_PAIRS[1]] + [variant]
    survivors_of_group = [r for r in group if r[S.ID] in kept_ids]
    assert len(survivors_of_group) == 1, "one representative for the whole group"
    records = [r for r in removed.to_pylist() if r[R.REMOVED_ID] in {g[S.ID] for g in group}]
    assert {r[R.KEPT_ID] for r in records} == {survivors_of_group[0][S.ID]}
    assert sorted(r[R.REASON] for r in records) == ["exact_duplicate", "near_duplicate"]
    for pair in NEAR_PAIRS[:1]:
        x, y = sorted((make_row(t) for t in pair), key=lambda r: r[S.ID])
        vx, vy = model.encode([x[S.TEXT], y[S.TEXT]])
        rec = by_removed[y[S.TEXT]]
        assert rec[R.KEPT_ID] == x[S.ID] and rec[R.REASON] == "near_duplicate"
        assert rec[R.METHOD] == "global" and rec[R.SCOPE] == "tax" and rec[R.KEPT_TEXT] == x[S.TEXT]
        assert rec[R.SIMILARITY] == pytest.approx(float(vx @ vy), abs=1e-3)
        assert rec[R.SIMILARITY] >= cfg.threshold
    assert set(removed.column(R.KEPT_ID).to_pylist()) <= set(kept_ids)

    # the stage's decisions equal exact all-pairs greedy on the same embeddings (per policy)
    exact_removed = {rr[R.REMOVED_ID] for rr in removed.to_pylist() if rr[R.REASON] == "exact_duplicate"}
    tax = sorted({r[S.ID]: r for r in rows if r[S.POLICY_ID] == "tax"}.values(), key=lambda r: r[S.ID])
    survivors = [r for r in tax if r[S.ID] not in exact_removed or r[S.ID] in kept_ids]
    ref = exact_greedy(model.encode([r[S.TEXT] for r in survivors]), cfg.threshold)
    expected_kept = {r[S.ID] for r, k in zip(survivors, ref.keep) if k}
    assert expected_kept == {i for i, r in zip(kept_ids, kept) if r[S.POLICY_ID] == "tax"}


def test_job_global_scope_files_manifest_and_determinism(ray_session, tmp_path):
    from jobs.dedup import main

    rows = corpus()
    write_input(tmp_path / "in", rows, n_shards=1)
    cfg = config(tmp_path, "scope=global")
    main(cfg)
    out = tmp_path / "out"
    kept = shards.read_shards(out)
    # global scope: the finance row duplicates a tax row's text exactly -> removed too
    assert kept.num_rows == 11
    removed = R.read_removed(out)
    assert removed.num_rows == 5 and set(removed.column(R.SCOPE).to_pylist()) == {"*"}
    cross = [r for r in removed.to_pylist() if r[R.POLICY_ID] != r[R.KEPT_POLICY_ID]]
    assert len(cross) == 1 and cross[0][R.TEXT] == DISTINCT[2]
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["stage"] == "dedup" and manifest["inputs"] == [str(tmp_path / "in")]
    assert manifest["counts"] == {"in": 16, "out": 11,
                                  "dropped": {"exact_duplicate": 3, "near_duplicate": 2}}
    assert manifest["config"]["scope"] == "global"
    assert manifest["extra"]["per_scope"]["*"]["out"] == 11

    # same rows, shuffled into 3 shards: the same rows are kept and the same ones removed
    write_input(tmp_path / "in2", rows, n_shards=3, seed=1)
    main(load_config(DedupConfig, DEBUG_CONFIG, [f"input_dir={tmp_path / 'in2'}",
                                                 f"output_dir={tmp_path / 'out2'}", "scope=global"]))
    assert sorted_rows(shards.read_shards(tmp_path / "out2")) == sorted_rows(kept)
    assert R.read_removed(tmp_path / "out2").equals(removed)


def test_exact_only_scopes_overwrite_and_errors(ray_session, tmp_path):
    from guardray.dedup.stage import run_dedup

    write_input(tmp_path / "in", corpus(), n_shards=2)
    result = run_dedup(config(tmp_path, "method=exact_only"))
    assert result["counts"] == {"in": 16, "out": 14, "dropped": {"exact_duplicate": 2, "near_duplicate": 0}}
    with pytest.raises(ConfigError, match="already holds 2 shard.*overwrite=true"):
        run_dedup(config(tmp_path, "method=exact_only", "scope=global"))
    assert shards.read_shards(tmp_path / "out").num_rows == 14  # untouched by the refused run
    result = run_dedup(config(tmp_path, "method=exact_only", "scope=global", "overwrite=true"))
    assert result["counts"]["out"] == 13  # the cross-policy copy goes too
    assert shards.read_shards(tmp_path / "out").num_rows == 13  # no stale shard left behind
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == sorted(
        [Path(p).name for p in result["shards"]] + ["manifest.json", "removed"])

    with pytest.raises(ConfigError, match="must differ"):
        run_dedup(config(tmp_path, f"output_dir={tmp_path / 'in'}"))
    (tmp_path / "nothing").mkdir()
    with pytest.raises(ConfigError, match="input_dir: no shards .* in '.*nothing'"):
        run_dedup(config(tmp_path, f"input_dir={tmp_path / 'nothing'}", f"output_dir={tmp_path / 'o2'}"))
    with pytest.raises(ConfigError, match="input_dir: folder '.*missing' does not exist"):
        run_dedup(config(tmp_path, f"input_dir={tmp_path / 'missing'}", f"output_dir={tmp_path / 'o2'}"))


@pytest.mark.parametrize("n_rows", [0, 1])
def test_empty_input_and_single_row(ray_session, tmp_path, n_rows):
    from guardray.dedup.stage import run_dedup

    rows = [make_row("the only prompt")][:n_rows]
    shards.write_shard(rows, tmp_path / "in", index=0)  # an empty shard is a valid input
    result = run_dedup(config(tmp_path))
    assert result["counts"] == {"in": n_rows, "out": n_rows,
                                "dropped": {"exact_duplicate": 0, "near_duplicate": 0}}
    assert shards.read_shards(tmp_path / "out").to_pylist() == rows
    assert len(result["shards"]) == 1  # an empty output still has one (empty) shard
    assert R.read_removed(tmp_path / "out").num_rows == 0


def test_missing_columns_are_an_error(ray_session, tmp_path):
    from guardray.dedup.stage import dedup_dataset

    ds = ray_session.data.from_items([{"id": "a", "text": "x"}])
    with pytest.raises(ValueError, match=r"lacks sample column\(s\) \['policy_id'"):
        dedup_dataset(ds, config(tmp_path))


@pytest.mark.slow
def test_per_batch_method_float16(ray_session, tmp_path):
    from guardray.dedup.stage import dedup_dataset

    rows = corpus()
    cfg = config(tmp_path, "method=per_batch", "per_batch_size=1000", "embedder.dtype=float16")
    _, removed, counts = dedup_dataset(ray_session.data.from_items(rows), cfg)
    assert counts["dropped"] == {"exact_duplicate": 2, "near_duplicate": 2}
    assert set(removed.column(R.METHOD).to_pylist()) == {"exact", "per_batch"}
    # batches of one row: nothing to compare, only exact duplicates go
    cfg = config(tmp_path, "method=per_batch", "per_batch_size=1")
    assert dedup_dataset(ray_session.data.from_items(rows), cfg)[2]["dropped"]["near_duplicate"] == 0


@pytest.mark.slow
def test_distributed_global_method_in_the_stage(ray_session, tmp_path):
    from guardray.dedup.stage import dedup_dataset

    rows = corpus()
    base = dedup_dataset(ray_session.data.from_items(rows), config(tmp_path))
    dist = dedup_dataset(ray_session.data.from_items(rows),
                         config(tmp_path, "global_method.distributed=true"))
    assert dist[2] == base[2]
    assert dist[1].equals(base[1])
    assert sorted(r[S.ID] for r in dist[0].take_all()) == sorted(r[S.ID] for r in base[0].take_all())
