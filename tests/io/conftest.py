"""Fixtures for the I/O tests: sample rows and a real S3-compatible server on 127.0.0.1.

``s3_server`` starts moto in server mode (a real HTTP S3 API in a thread of the test process)
once per session. ``s3_bucket`` creates a fresh bucket for one test and points the standard AWS
environment variables at the server, the way a user points guardray at MinIO or Ceph. Nothing
here mocks s3fs, botocore or pyarrow: every S3 call in these tests goes over HTTP.
"""

from __future__ import annotations

import socket
import uuid

import pytest

from guardray import schema

S3_ACCESS_KEY = "guardray-test-key"
S3_SECRET_KEY = "guardray-test-secret"
S3_REGION = "us-east-1"


def make_rows(n: int, *, policy_id: str = "safety", start: int = 0) -> list[dict]:
    """``n`` valid sample rows with distinct texts, both labels, sources and splits."""
    rows = []
    for i in range(start, start + n):
        text = f"prompt number {i} about the policy \u00e9\u4e2d"  # non-ASCII on purpose
        rows.append(
            {
                schema.ID: schema.sample_id(policy_id, text),
                schema.POLICY_ID: policy_id,
                schema.TEXT: text,
                schema.RATIONALE: f"because {i}" if i % 3 else "",
                schema.LABEL: i % 2,
                schema.LABEL_INITIAL: (i // 2) % 2,
                schema.SOURCE: schema.SOURCES[i % len(schema.SOURCES)],
                schema.GENERATOR: "test-generator",
                schema.SPLIT: schema.SPLITS[i % len(schema.SPLITS)],
            }
        )
    return rows


@pytest.fixture
def row_factory():
    """The `make_rows` function, for tests that need several batches of rows."""
    return make_rows


@pytest.fixture
def rows():
    """Seven valid sample rows."""
    return make_rows(7)


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
