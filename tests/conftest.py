"""Shared test fixtures.

Environment (set before anything imports Ray or transformers):
- HF_HUB_OFFLINE / TRANSFORMERS_OFFLINE: nothing may download from a model hub in tests.
- RAY_AUTH_MODE=disabled, RAY_DATA_DISABLE_PROGRESS_BARS=1, a short RAY_TMPDIR (Unix socket
  paths must stay under 107 characters).

A real S3-compatible server for the S3 tests (`s3_server`, `s3_bucket`, `s3_client`): moto in
server mode (a real HTTP S3 API in a thread of the test process) once per session;
``s3_bucket`` creates a fresh bucket for one test and points the standard AWS environment
variables at the server, the way a user points guardray at MinIO or Ceph. Nothing mocks
s3fs, botocore or pyarrow: every S3 call goes over HTTP (Ray workers included).

One Ray instance serves the whole test session (`ray_session`). It declares more logical CPUs
than the machine has, and Ray Train workers in tests ask for fractional CPUs: a Train worker
that takes a whole CPU on a 2-core machine starves Ray Data and deadlocks
(docs/ARCHITECTURE.md, "Environment facts").
"""

from __future__ import annotations

import logging
import os
import socket
import tempfile
import uuid
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
os.environ.setdefault("RAY_AUTH_MODE", "disabled")
os.environ.setdefault("RAY_DATA_DISABLE_PROGRESS_BARS", "1")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# Ray Data 2.60 lists Parquet files with 32 FooterReader actors (new processes) per
# read_parquet call: 5-15 s per read on 2 cores; one is plenty for test-sized folders.
os.environ.setdefault("RAY_DATA_PARQUET_FOOTER_NUM_ACTORS", "1")
os.environ.setdefault("RAY_TMPDIR", os.path.join(tempfile.gettempdir(), "gr-ray"))
Path(os.environ["RAY_TMPDIR"]).mkdir(parents=True, exist_ok=True)

REPO_ROOT = Path(__file__).resolve().parent.parent

# Logical CPUs the shared Ray instance declares (the machine has 2 physical cores).
RAY_TEST_CPUS = 4


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return REPO_ROOT


@pytest.fixture(scope="session")
def ray_session():
    """One local Ray instance for every test that needs Ray; shut down at the end."""
    import ray

    if not ray.is_initialized():
        ray.init(
            num_cpus=RAY_TEST_CPUS,
            include_dashboard=False,
            log_to_driver=False,
            configure_logging=False,
            _temp_dir=os.environ["RAY_TMPDIR"],
            runtime_env={"env_vars": {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}},
        )
        ctx = ray.data.DataContext.get_current()
        ctx.enable_progress_bars = False
    yield ray
    ray.shutdown()


# --------------------------------------------------------------------------- S3 server

S3_ACCESS_KEY = "guardray-test-key"
S3_SECRET_KEY = "guardray-test-secret"
S3_REGION = "us-east-1"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="session")
def s3_server():
    """Endpoint URL of a moto S3 server on 127.0.0.1, running for the whole session."""
    from moto.server import ThreadedMotoServer

    port = _free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    yield f"http://127.0.0.1:{port}"
    server.stop()


@pytest.fixture
def s3_bucket(s3_server, monkeypatch):
    """A fresh bucket name; AWS env vars point at the test server for this test only."""
    import boto3

    for name in ("AWS_ENDPOINT_URL", "AWS_SESSION_TOKEN", "AWS_PROFILE",
                 "AWS_IGNORE_CONFIGURED_ENDPOINT_URLS"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", s3_server)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", S3_ACCESS_KEY)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", S3_SECRET_KEY)
    monkeypatch.setenv("AWS_DEFAULT_REGION", S3_REGION)
    bucket = f"guardray-{uuid.uuid4().hex[:12]}"
    client = boto3.client(
        "s3",
        endpoint_url=s3_server,
        aws_access_key_id=S3_ACCESS_KEY,
        aws_secret_access_key=S3_SECRET_KEY,
        region_name=S3_REGION,
    )
    client.create_bucket(Bucket=bucket)
    return bucket


@pytest.fixture
def s3_client(s3_server):
    """A boto3 client for inspecting the server independently of guardray's code."""
    import boto3

    return boto3.client(
        "s3",
        endpoint_url=s3_server,
        aws_access_key_id=S3_ACCESS_KEY,
        aws_secret_access_key=S3_SECRET_KEY,
        region_name=S3_REGION,
    )


# --------------------------------------------------------------------------- progress lines


class _Lines(logging.Handler):
    def __init__(self):
        super().__init__(logging.INFO)
        self.lines: list[str] = []

    def emit(self, record):
        self.lines.append(record.getMessage())


@pytest.fixture
def progress_lines():
    """The progress logger's lines (a handler on it: works whether or not the CLI's logging
    setup stopped ``guardray`` records from propagating to the root logger)."""
    logger = logging.getLogger("guardray.progress")
    handler, level = _Lines(), logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    yield handler.lines
    logger.removeHandler(handler)
    logger.setLevel(level)
