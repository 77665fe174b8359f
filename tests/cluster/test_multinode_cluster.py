"""The pipeline on a real multi-node Ray cluster, submitted through the Ray Jobs API.

`cluster/local_cluster.sh` starts a head and a worker node (separate raylets, temp dirs and
custom resources) on this machine; the debug pipeline is submitted with ``ray job submit``
and ``cluster/runtime_env.yaml``, exactly as cluster/README.md tells a team, with its output
on a real S3 API (the tests' moto server on 127.0.0.1; the nodes get the standard AWS
variables, as cloud nodes get them from their role). Checked: the job succeeds, every stage's
outputs and manifest are in the bucket, and the stages' Ray work ran on both nodes.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "cluster" / "local_cluster.sh"
BIN = Path(sys.executable).parent


@pytest.fixture(scope="module")
def cluster(s3_server):
    """A head + 1 worker node; yields ``(jobs address, environment for ray commands)``."""
    from conftest import S3_ACCESS_KEY, S3_REGION, S3_SECRET_KEY, _free_port

    env = {**os.environ,
           "GR_CLUSTER_DIR": f"/tmp/gr-mn-{uuid.uuid4().hex[:6]}",
           "GR_CLUSTER_PORT": str(_free_port()), "GR_DASHBOARD_PORT": str(_free_port()),
           "GR_CLIENT_PORT": str(_free_port()), "GR_NODE_CPUS": "2", "PYTHON_BIN": str(BIN),
           "AWS_ENDPOINT_URL_S3": s3_server, "AWS_ACCESS_KEY_ID": S3_ACCESS_KEY,
           "AWS_SECRET_ACCESS_KEY": S3_SECRET_KEY, "AWS_DEFAULT_REGION": S3_REGION}
    for name in ("RAY_ADDRESS", "AWS_ENDPOINT_URL", "AWS_PROFILE", "AWS_SESSION_TOKEN"):
        env.pop(name, None)
    started = subprocess.run(["bash", str(SCRIPT), "start", "1"], env=env, cwd=REPO,
                             capture_output=True, text=True, timeout=300, check=False)
    try:
        assert started.returncode == 0, started.stdout + started.stderr
        yield f"http://127.0.0.1:{env['GR_DASHBOARD_PORT']}", env
    finally:
        stopped = subprocess.run(["bash", str(SCRIPT), "stop"], env=env, cwd=REPO,
                                 capture_output=True, text=True, timeout=120, check=False)
        assert stopped.returncode == 0, stopped.stderr
        left = subprocess.run(["pgrep", "-f", env["GR_CLUSTER_DIR"]], capture_output=True,
                              text=True, check=False).stdout
        assert left == "", f"cluster processes left after stop: {left}"


def _submit(address: str, env: dict, *pipeline_args: str, submit_args: tuple[str, ...] = (),
            timeout: float = 1500) -> subprocess.CompletedProcess:
    """``ray job submit`` of the debug pipeline, as cluster/README.md shows."""
    return subprocess.run(
        [str(BIN / "ray"), "job", "submit", "--address", address, "--working-dir", ".",
         "--runtime-env", "cluster/runtime_env.yaml", *submit_args, "--",
         "python", "jobs/pipeline.py", "--config", "configs/debug/pipeline.yaml",
         *pipeline_args],
        env=env, cwd=REPO, capture_output=True, text=True, timeout=timeout, check=False)


def _nodes(address: str, env: dict) -> set[str]:
    out = subprocess.run([str(BIN / "ray"), "list", "nodes", "--format", "json",
                          "--address", address], env=env, capture_output=True, text=True,
                         timeout=60, check=True).stdout
    return {n["node_id"] for n in json.loads(out) if n["state"] == "ALIVE"}


def test_pipeline_job_runs_on_two_nodes_with_s3_storage(cluster, s3_client):
    address, env = cluster
    nodes = _nodes(address, env)
    assert len(nodes) == 2
    bucket = f"guardray-mn-{uuid.uuid4().hex[:8]}"
    s3_client.create_bucket(Bucket=bucket)

    job = _submit(address, env, f"output_dir=s3://{bucket}/run1")
    assert job.returncode == 0, job.stdout[-4000:] + job.stderr[-2000:]

    keys = {o["Key"] for page in s3_client.get_paginator("list_objects_v2").paginate(
        Bucket=bucket, Prefix="run1/") for o in page.get("Contents", [])}
    assert "run1/report.md" in keys
    manifests = sorted(k for k in keys if k.endswith("/manifest.json"))
    stages = {json.loads(s3_client.get_object(Bucket=bucket, Key=k)["Body"].read())["stage"]: k
              for k in manifests}
    assert {"seed", "pretrain", "finetune", "search", "evaluate"} <= set(stages), manifests
    assert any(k.startswith("run1/pretrain/model/") and k.endswith(".safetensors") for k in keys)
    assert any(k.startswith("run1/search/uniguard/") and k.endswith(".safetensors") for k in keys)

    used: set[str] = set()
    for stage, key in stages.items():
        manifest = json.loads(s3_client.get_object(Bucket=bucket, Key=key)["Body"].read())
        ran = set(manifest.get("ray_nodes") or {})
        assert ran <= nodes, (stage, ran)
        used |= ran
    assert used == nodes  # the stages' tasks, actors and Train workers ran on both nodes


def test_a_local_output_dir_is_refused_on_two_nodes(cluster, tmp_path):
    """The driver's disk is not the workers': the job ends at once with the fix in its log."""
    address, env = cluster
    job = _submit(address, env, f"output_dir={tmp_path / 'run'}", timeout=600)
    assert job.returncode != 0
    assert "output_dir" in job.stdout and "the Ray cluster has 2 nodes" in job.stdout
    assert "s3://bucket/prefix" in job.stdout
    assert not (tmp_path / "run" / "seed").exists()  # refused before any stage wrote


def _wait_for_ledger_step(s3_client, bucket: str, key: str, step: str, client, job_id: str,
                          deadline: float) -> None:
    """Until the pipeline's ledger (``key``) records ``step`` as finished."""
    import time

    from ray.job_submission import JobStatus

    while time.time() < deadline:
        try:
            body = s3_client.get_object(Bucket=bucket, Key=key)["Body"].read()
            if step in json.loads(body):
                return
        except s3_client.exceptions.NoSuchKey:
            pass
        assert client.get_job_status(job_id) in (JobStatus.PENDING, JobStatus.RUNNING), \
            client.get_job_logs(job_id)[-4000:]
        time.sleep(2)
    pytest.fail(f"{step} not finished within the time limit")


def test_a_killed_driver_resubmitted_resumes_without_redoing_finished_stages(cluster, s3_client):
    """The job's driver is stopped once fine-tuning has finished; the same job resubmitted
    reuses pretraining and fine-tuning (their files are not written again) and completes."""
    import time

    from ray.job_submission import JobStatus, JobSubmissionClient

    address, env = cluster
    client = JobSubmissionClient(address)
    bucket = f"guardray-kill-{uuid.uuid4().hex[:8]}"
    s3_client.create_bucket(Bucket=bucket)
    job_id = f"pipeline-kill-{uuid.uuid4().hex[:6]}"
    first = _submit(address, env, f"output_dir=s3://{bucket}/run",
                    submit_args=("--submission-id", job_id, "--no-wait"), timeout=300)
    assert first.returncode == 0, first.stderr
    _wait_for_ledger_step(s3_client, bucket, "run/_stages.json", "finetune", client, job_id,
                          time.time() + 900)
    assert client.stop_job(job_id)
    while client.get_job_status(job_id) in (JobStatus.PENDING, JobStatus.RUNNING):
        time.sleep(1)

    def stamps(prefix: str) -> dict[str, object]:
        return {o["Key"]: o["LastModified"] for o in s3_client.list_objects_v2(
            Bucket=bucket, Prefix=prefix).get("Contents", [])}

    before = {**stamps("run/pretrain/model/"), **stamps("run/finetune/")}
    again = _submit(address, env, f"output_dir=s3://{bucket}/run")
    assert again.returncode == 0, again.stdout[-4000:]
    after = {**stamps("run/pretrain/model/"), **stamps("run/finetune/")}
    assert after == before  # nothing of the finished stages written again, nothing added
    report = s3_client.get_object(Bucket=bucket, Key="run/report.md")["Body"].read().decode()
    for stage in ("pretrain", "finetune"):
        line = next(ln for ln in report.splitlines() if ln.startswith(f"| {stage} | done |"))
        assert "reused" in line, line
    assert "| evaluate | done |" in report
    seed = [k for k in stamps("run/seed/") if k.endswith(".parquet")]
    assert len(seed) == 1  # the rerun rewrote the seed shard in place, not a second one


def test_gip_pretraining_survives_losing_a_worker_node(cluster, s3_client):
    """Last in this module (it takes the worker node down): GIP pretraining spread over both
    nodes, checkpointing to S3; the worker node's processes are killed after the first
    checkpoint. Ray Train restarts the worker group on the remaining node from the newest
    checkpoint (``failure.max_failures``) and the run finishes all its steps and exports."""
    import time

    from ray.job_submission import JobStatus, JobSubmissionClient

    address, env = cluster
    client = JobSubmissionClient(address)
    bucket = f"guardray-gip-{uuid.uuid4().hex[:8]}"
    s3_client.create_bucket(Bucket=bucket)
    steps = 24
    job_id = f"gip-node-loss-{uuid.uuid4().hex[:6]}"
    submit = _submit(
        address, env, f"output_dir=s3://{bucket}/run", "stages.finetune.enabled=false",
        "stages.merge.enabled=false", "stages.evaluate.enabled=false",
        f"stages.pretrain.overrides=[train.batch_size=2,train.max_steps={steps},"
        "train.checkpoint_every_steps=2,workers.placement_strategy=SPREAD,"
        "failure.max_failures=3]",
        submit_args=("--submission-id", job_id, "--no-wait"), timeout=300)
    assert submit.returncode == 0, submit.stdout + submit.stderr

    deadline = time.time() + 900
    while time.time() < deadline:  # the first checkpoint on S3
        page = s3_client.list_objects_v2(Bucket=bucket, Prefix="run/pretrain/ray/")
        if any("checkpoint_" in o["Key"] for o in page.get("Contents", [])):
            break
        assert client.get_job_status(job_id) in (JobStatus.PENDING, JobStatus.RUNNING), \
            client.get_job_logs(job_id)[-4000:]
        time.sleep(2)
    else:
        pytest.fail("no checkpoint within 15 minutes")
    subprocess.run(["pkill", "-9", "-f", env["GR_CLUSTER_DIR"] + "-w1/"], check=False)

    while client.get_job_status(job_id) in (JobStatus.PENDING, JobStatus.RUNNING):
        assert time.time() < deadline, "the job did not end within 15 minutes"
        time.sleep(3)
    logs = client.get_job_logs(job_id)
    assert client.get_job_status(job_id) == JobStatus.SUCCEEDED, logs[-4000:]
    manifest = json.loads(s3_client.get_object(
        Bucket=bucket, Key="run/pretrain/manifest.json")["Body"].read())
    assert manifest["extra"]["global_step"] == manifest["extra"]["total_steps"] == steps
    keys = {o["Key"] for o in s3_client.list_objects_v2(
        Bucket=bucket, Prefix="run/pretrain/model/").get("Contents", [])}
    assert any(k.endswith(".safetensors") for k in keys)
    # a second worker group replaced the first: more RayTrainWorker actors than workers
    from ray.util.state import list_actors

    ray_job = client.get_job_info(job_id).driver_info.id
    workers = [a for a in list_actors(address=address, limit=1000,
                                      filters=[("class_name", "=", "RayTrainWorker")],
                                      raise_on_missing_output=False)
               if a.job_id == ray_job]
    assert len(workers) > 2 or "[FailurePolicy]" in logs, (len(workers), logs[-3000:])
