"""The GIP pretraining job end to end: Ray Train + DeepSpeed on CPU, tiny XLM-R, 2 workers.

Every run uses the shared ``ray_session`` (4 logical CPUs), 2 workers of half a CPU each and a
few hundred separable rows written as sample shards. Checked: the loss falls; ZeRO 2 and ZeRO 3
both run; the exported Hugging Face checkpoint loads with transformers and gives the trained
model's logits (computed inside the workers at the end); metrics reach TensorBoard; a worker
killed from outside resumes from its checkpoint and finishes; a finished run is not retrained.
"""

from __future__ import annotations

import collections
import json
import os
import signal
import struct
import threading
import time
from pathlib import Path

import pytest
from pretrain_testlib import debug_config, write_gip_shards

from guardray.pretrain.engine import CONSOLIDATED
from guardray.pretrain.loop import HISTORY

TERMS = ("loss", "mlm", "alice", "ce", "accuracy", "lr", "tokens_per_s", "samples_per_s",
         "data_wait_fraction")


def _history(run: dict) -> list[dict]:
    path = Path(run["log_dir"]) / HISTORY
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _tensorboard_tags(folder: Path) -> set[str]:
    """Scalar tags in the TFRecord event files of ``folder`` (tensorboardX's protobufs)."""
    from tensorboardX.proto.event_pb2 import Event

    tags = set()
    for f in folder.glob("events.out.tfevents.*"):
        data = f.read_bytes()
        pos = 0
        while pos + 12 <= len(data):
            (length,) = struct.unpack("<Q", data[pos:pos + 8])
            event = Event.FromString(data[pos + 12:pos + 12 + length])
            tags.update(v.tag for v in event.summary.value)
            pos += 12 + length + 4
    return tags


def _export_logits(folder: str, texts: list[str], max_length: int):
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(folder)
    model = AutoModelForSequenceClassification.from_pretrained(folder).eval()
    enc = tok(texts, padding=True, truncation=True, max_length=max_length, return_tensors="pt")
    with torch.no_grad():
        return model(**enc).logits


def _check_export(summary: dict, cfg, consolidated: str | None = None) -> None:
    """The export loads with transformers and reproduces the trained model's logits.

    ``consolidated``: a local copy of the final checkpoint's consolidated weights (default:
    inside ``summary["checkpoint"]``, a local folder)."""
    import torch
    from safetensors.torch import load_file

    from guardray.finetune.run import resolve_base
    from guardray.pretrain.model import GIPModel

    trained = torch.tensor(summary["probe_logits"])
    exported = _export_logits(summary["export"], summary["probe_texts"], cfg.model.max_length)
    assert exported.shape == (3, 2)
    torch.testing.assert_close(exported, trained, atol=1e-4, rtol=1e-4)
    # ... and the consolidated state dict is what was exported
    gip = GIPModel.from_pretrained(resolve_base(cfg.model.base))
    gip.load_state_dict(load_file(consolidated
                                  or os.path.join(summary["checkpoint"], CONSOLIDATED)))
    gip.eval()
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(summary["export"])
    enc = tok(summary["probe_texts"], padding=True, truncation=True,
              max_length=cfg.model.max_length, return_tensors="pt")
    with torch.no_grad():
        again = gip(enc["input_ids"], enc["attention_mask"], head="cls")
    torch.testing.assert_close(again, trained, atol=1e-4, rtol=1e-4)
    with open(os.path.join(summary["export"], "config.json")) as fh:
        assert json.load(fh)["id2label"] == {"0": "safe", "1": "unsafe"}


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory) -> Path:
    return write_gip_shards(tmp_path_factory.mktemp("gip-data"), n=256, shards=2)


def test_zero2_loss_falls_exports_and_logs(ray_session, data_dir, tmp_path):
    from guardray.pretrain.run import run_pretrain

    cfg = debug_config(tmp_path, data_dir, "train.max_steps=12", "train.zero_stage=2",
                       "train.checkpoint_every_steps=6")
    summary = run_pretrain(cfg)
    assert summary["global_step"] == 12 and summary["start_step"] == 0
    assert summary["rows"] == 256 and summary["plan"]["total_steps"] == 12
    hist = _history(summary)
    assert [h["step"] for h in hist] == list(range(1, 13))
    first = sum(h["loss"] for h in hist[:3]) / 3
    last = sum(h["loss"] for h in hist[-3:]) / 3
    assert last < first, f"loss did not fall: first 3 steps {first:.4f}, last 3 {last:.4f}"
    for h in hist:  # eq. 1 with weights (1, 1, 1): the total is the sum of the terms
        assert h["loss"] == pytest.approx(h["mlm"] + h["alice"] + h["ce"], rel=1e-4)
        assert h["alice"] == pytest.approx(h["alice_label"] + h["alice_virtual"], rel=1e-4)
    metrics = summary["metrics"]
    assert all(k in metrics for k in TERMS) and metrics["step"] == 12
    assert metrics["tokens_per_s"] > 0 and 0 <= metrics["accuracy"] <= 1
    assert 0 <= metrics["data_wait_fraction"] <= 1
    spans = [b["time"] - a["time"] for a, b in zip(hist, hist[1:])]
    assert all(0 <= h["data_wait_s"] <= span + 1e-3 for h, span in zip(hist[1:], spans))
    tags = _tensorboard_tags(Path(summary["log_dir"]) / "tensorboard")
    assert {f"train/{k}" for k in TERMS} <= tags
    _check_export(summary, cfg)
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert manifest["stage"] == "pretrain" and manifest["counts"]["in"] == 256
    assert manifest["extra"]["global_step"] == 12
    kept = sorted(p.name for p in Path(summary["run_path"]).glob("checkpoint_0*"))
    assert kept == ["checkpoint_000000006", "checkpoint_000000012"]


def test_zero3_runs_to_the_end_and_exports(ray_session, data_dir, tmp_path):
    from guardray.pretrain.run import run_pretrain

    cfg = debug_config(tmp_path, data_dir, "train.max_steps=4", "train.zero_stage=3",
                       "train.checkpoint_every_steps=4", "train.grad_accum=2",
                       "loss.alice.steps=2")
    summary = run_pretrain(cfg)
    assert summary["global_step"] == 4
    hist = _history(summary)
    assert [h["step"] for h in hist] == [1, 2, 3, 4]
    assert all(len(h["layers"]) == 2 for h in hist)  # 2 micro-batches per optimizer step
    _check_export(summary, cfg)


def test_zero0_checkpoints_to_s3_and_exports(ray_session, data_dir, tmp_path, s3_bucket,
                                             s3_client):
    """storage_path=s3://: Ray Train writes every checkpoint to a real S3 API (moto over
    HTTP, from the worker processes); the driver exports from the final one."""
    from guardray.pretrain.run import run_pretrain

    cfg = debug_config(tmp_path, data_dir, "train.max_steps=4", "train.zero_stage=0",
                       "train.checkpoint_every_steps=2", f"storage_path=s3://{s3_bucket}/gip",
                       f"log_dir={tmp_path / 'logs'}")
    summary = run_pretrain(cfg)
    assert summary["global_step"] == 4
    assert [h["step"] for h in _history(summary)] == [1, 2, 3, 4]
    listing = s3_client.list_objects_v2(Bucket=s3_bucket, Prefix="gip/")
    keys = [obj["Key"] for obj in listing.get("Contents", [])]
    run = f"gip/{cfg.run_name}"
    for step in (2, 4):
        folder = f"{run}/checkpoint_{step:09d}/"
        assert f"{folder}loop_state.json" in keys, keys
        assert any(k.startswith(f"{folder}gip/") for k in keys), keys  # DeepSpeed's files
    assert f"{run}/checkpoint_000000004/{CONSOLIDATED}" in keys
    assert f"{run}/checkpoint_000000002/{CONSOLIDATED}" not in keys  # only the final one
    local = tmp_path / CONSOLIDATED
    s3_client.download_file(s3_bucket, f"{run}/checkpoint_000000004/{CONSOLIDATED}", str(local))
    _check_export(summary, cfg, consolidated=str(local))


class _Payload:
    """Planted in a checkpoint: unpickling it would create ``path`` (any code could run)."""

    def __init__(self, path: str):
        self.path = path

    def __reduce__(self):
        return (os.makedirs, (self.path,))


def test_resume_refuses_a_checkpoint_with_a_pickled_payload(ray_session, data_dir, tmp_path):
    """A ``__reduce__`` payload added to DeepSpeed's model-states file of the latest
    checkpoint: the resumed run refuses the file by name and never runs the payload."""
    import torch

    from guardray.pretrain.run import PretrainError, run_pretrain

    cfg = debug_config(tmp_path, data_dir, "train.max_steps=2", "train.zero_stage=0",
                       "train.checkpoint_every_steps=2", "failure.max_failures=0")
    summary = run_pretrain(cfg)
    states = Path(summary["checkpoint"]) / "gip" / "mp_rank_00_model_states.pt"
    marker = tmp_path / "payload-ran"
    state = torch.load(states, weights_only=False)  # our own file, written just now
    state["planted"] = _Payload(str(marker))
    torch.save(state, states)
    with pytest.raises(PretrainError, match="mp_rank_00_model_states.pt: refused to load") as err:
        run_pretrain(cfg)
    assert not marker.exists()
    assert "os.makedirs" in str(err.value) and "\n" not in str(err.value)


@pytest.mark.slow
def test_bf16_on_cpu_runs(ray_session, data_dir, tmp_path):
    from guardray.pretrain.run import run_pretrain

    cfg = debug_config(tmp_path, data_dir, "train.max_steps=3", "train.precision=bf16",
                       "train.zero_stage=1")
    summary = run_pretrain(cfg)
    assert summary["global_step"] == 3
    assert all(h["loss"] == h["loss"] for h in _history(summary))  # no NaN


@pytest.mark.slow
def test_killed_worker_resumes_from_checkpoint(ray_session, data_dir, tmp_path):
    """SIGKILL a worker process after the first checkpoint: the group restarts from it."""
    from guardray.pretrain.run import resolve_log_dir, run_pretrain

    cfg = debug_config(tmp_path, data_dir, "train.max_steps=12",
                       "train.checkpoint_every_steps=4", "failure.max_failures=1")
    run_dir = Path(resolve_log_dir(cfg))
    out: dict = {}

    def target():
        try:
            out["summary"] = run_pretrain(cfg)
        except BaseException as exc:  # noqa: BLE001 - reported below
            out["error"] = exc

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    deadline = time.time() + 400
    record = run_dir / "workers" / "rank1.json"
    snapshot = run_dir / "checkpoint_manager_snapshot.json"
    # wait until Ray Train has *registered* the first checkpoint (its folder appears earlier,
    # while the ranks upload their parts; a kill then restarts from scratch, correctly)
    while not (snapshot.is_file() and "checkpoint_000000004" in snapshot.read_text()):
        assert time.time() < deadline and thread.is_alive(), f"no first checkpoint: {out}"
        time.sleep(0.2)
    worker = json.loads(record.read_text())
    assert worker["start_step"] == 0
    os.kill(worker["pid"], signal.SIGKILL)
    thread.join(timeout=500)
    assert not thread.is_alive(), "the run did not finish after the restart"
    assert "error" not in out, out.get("error")
    summary = out["summary"]
    assert summary["global_step"] == 12
    resumed = summary["start_step"]
    assert resumed in (4, 8), resumed  # the restarted attempt began at a checkpoint
    hist = _history(summary)
    assert {h["attempt_start"] for h in hist} == {0, resumed}
    counts = collections.Counter(h["step"] for h in hist)
    assert set(counts) == set(range(1, 13))
    # each step once (issue 15, item 4): the restarted attempt drops the lines the killed
    # one wrote after the checkpoint it resumes from
    assert set(counts.values()) == {1}, counts
    assert [h["step"] for h in hist if h["attempt_start"] == resumed] == list(
        range(resumed + 1, 13))
    _check_export(summary, cfg)

    # rerunning the finished run trains nothing and exports the same weights
    again = run_pretrain(cfg)
    assert again["start_step"] == 12 and again["global_step"] == 12
    assert len(_history(again)) == len(hist)
    assert again["probe_logits"] == summary["probe_logits"]


def test_too_few_rows_fail_before_training(ray_session, tmp_path):
    from guardray.pretrain.data import GIPDataError
    from guardray.pretrain.run import run_pretrain

    data = write_gip_shards(tmp_path / "small", n=12, shards=1)  # 6 rows per rank < batch 8
    with pytest.raises(GIPDataError, match="no training step: 12 row"):
        run_pretrain(debug_config(tmp_path, data))
    assert not (tmp_path / "ray" / "gip-debug").exists()  # no Ray Train run was started


def test_unknown_policy_ids_fail_before_training(ray_session, tmp_path):
    from guardray.pretrain.data import GIPDataError
    from guardray.pretrain.run import run_pretrain

    data = write_gip_shards(tmp_path / "odd", n=32, shards=1, policy_ids=("tax", "nope"))
    with pytest.raises(GIPDataError, match=r"unknown policy_id\(s\) \['nope'\].*'tax'"):
        run_pretrain(debug_config(tmp_path, data))
    assert not (tmp_path / "ray" / "gip-debug").exists()
