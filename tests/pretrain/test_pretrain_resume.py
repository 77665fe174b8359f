"""Resume is exact (issue 15, item 4).

Reproductions: killed before Ray Train wrote its snapshot file, a rerun of ``pretrain``
started again at step 0, ignored the checkpoint already on disk, and ``history.jsonl``
repeated steps 1-4; two from-scratch runs with the same config and seed gave different step-1
losses (7.7797 vs 7.4767) because the row order followed Ray Data's scheduling.

Here a run is killed after a checkpoint (a worker process gets SIGKILL, ``max_failures=0``)
and Ray's snapshot file is deleted (a kill just before Ray writes it); the rerun must find
the checkpoint on disk, resume from it, keep each step once in ``history.jsonl``, and end
with the weights of an uninterrupted run of the same config (float tolerance, CPU), whose
per-step losses it matches too.
"""

from __future__ import annotations

import collections
import json
import os
import signal
import threading
import time
from pathlib import Path

import pytest
from pretrain_testlib import debug_config, write_gip_shards

from guardray.pretrain.engine import CONSOLIDATED
from guardray.pretrain.loop import HISTORY, truncate_history
from guardray.pretrain.resume import find_resume_checkpoint, is_complete, write_part_record

STEPS = ("train.max_steps=8", "train.checkpoint_every_steps=2", "train.zero_stage=2")


def _history(log_dir: str | Path) -> list[dict]:
    path = Path(log_dir) / HISTORY
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _weights(summary: dict):
    from safetensors.torch import load_file

    return load_file(os.path.join(summary["checkpoint"], CONSOLIDATED))


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory) -> Path:
    return write_gip_shards(tmp_path_factory.mktemp("gip-resume-data"), n=256, shards=2)


def test_part_records_tell_complete_checkpoints_from_cut_ones(tmp_path):
    """What `find_resume_checkpoint` trusts: every rank's record, every file at its size."""
    import pyarrow.fs as pafs

    fs = pafs.LocalFileSystem()
    run = tmp_path / "run"
    for step, world in ((2, 2), (4, 2), (6, 2)):
        folder = run / f"checkpoint_{step:09d}"
        for rank in range(world):
            part = tmp_path / f"part{step}-{rank}"
            (part / "gip").mkdir(parents=True)
            (part / "gip" / f"zero_pp_rank_{rank}_optim_states.pt").write_bytes(b"x" * 100)
            if rank == 0:
                (part / "loop_state.json").write_text(json.dumps({"global_step": step,
                                                                  "world_size": world}))
            write_part_record(str(part), rank)
            for f in part.rglob("*"):  # what Ray Train does: every part into one folder
                if f.is_file():
                    target = folder / f.relative_to(part)
                    target.parent.mkdir(parents=True, exist_ok=True)
                    target.write_bytes(f.read_bytes())
    assert find_resume_checkpoint(fs, str(run)) == (str(run / "checkpoint_000000006"), 6)
    (run / "checkpoint_000000006" / "gip" / "zero_pp_rank_1_optim_states.pt").write_bytes(b"x")
    assert not is_complete(fs, str(run / "checkpoint_000000006"))  # a copy cut short
    (run / "checkpoint_000000004" / "guardray_part_rank1.json").unlink()  # a rank missing
    assert find_resume_checkpoint(fs, str(run)) == (str(run / "checkpoint_000000002"), 2)
    assert find_resume_checkpoint(fs, str(tmp_path / "none")) is None


def test_history_keeps_the_steps_up_to_the_resumed_checkpoint(tmp_path):
    path = tmp_path / HISTORY
    path.write_text("".join(json.dumps({"step": s}) + "\n" for s in range(1, 7))
                    + '{"step": 7, "lo')  # the last line cut by the kill
    assert truncate_history(str(path), 4) == 3
    assert [json.loads(x)["step"] for x in path.read_text().splitlines()] == [1, 2, 3, 4]
    assert truncate_history(str(path), 4) == 0


@pytest.mark.slow
def test_killed_run_without_ray_snapshot_resumes_exactly(ray_session, data_dir, tmp_path):
    from guardray.pretrain.run import PretrainError, resolve_log_dir, run_pretrain

    reference = run_pretrain(debug_config(tmp_path / "a", data_dir, *STEPS))
    ref_hist = _history(reference["log_dir"])
    assert [h["step"] for h in ref_hist] == list(range(1, 9))

    cfg = debug_config(tmp_path / "b", data_dir, *STEPS, "failure.max_failures=0")
    run_dir = Path(resolve_log_dir(cfg))
    out: dict = {}

    def target():
        try:
            out["summary"] = run_pretrain(cfg)
        except BaseException as exc:  # noqa: BLE001 - checked below
            out["error"] = exc

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    import pyarrow.fs as pafs

    fs, deadline = pafs.LocalFileSystem(), time.time() + 600
    while not is_complete(fs, str(run_dir / "checkpoint_000000002")):
        assert time.time() < deadline and thread.is_alive(), f"no first checkpoint: {out}"
        time.sleep(0.1)
    os.kill(json.loads((run_dir / "workers" / "rank1.json").read_text())["pid"], signal.SIGKILL)
    thread.join(timeout=600)
    assert isinstance(out.get("error"), PretrainError), out  # max_failures=0: the run stops
    (run_dir / "checkpoint_manager_snapshot.json").unlink(missing_ok=True)  # killed before it
    newest = find_resume_checkpoint(fs, str(run_dir))
    assert newest is not None and newest[1] in (2, 4, 6), newest
    before = [h["step"] for h in _history(run_dir)]
    assert before[:newest[1]] == list(range(1, newest[1] + 1))

    resumed = run_pretrain(cfg)  # the same command again
    assert resumed["start_step"] == newest[1] and resumed["global_step"] == 8
    hist = _history(run_dir)
    counts = collections.Counter(h["step"] for h in hist)
    assert sorted(counts) == list(range(1, 9)) and set(counts.values()) == {1}, counts
    assert {h["attempt_start"] for h in hist} == {0, newest[1]}
    # the data order is a function of (seed, epoch): the same losses step by step ...
    for mine, ref in zip(hist, ref_hist):
        assert mine["loss"] == pytest.approx(ref["loss"], rel=1e-5, abs=1e-6), (mine, ref)
    # ... and the same weights as the uninterrupted run
    import torch

    got, want = _weights(resumed), _weights(reference)
    assert got.keys() == want.keys()
    for name in want:
        torch.testing.assert_close(got[name], want[name], atol=1e-5, rtol=1e-5, msg=name)
