"""Shared fixtures: a real moto server, provisioned resources, real processes (``tests/support/stack.py``)."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from moto import mock_aws

from tests.support.stack import Aws, Processes
from tests.support.unit import REGION
from video_worker.adapters.aws import make_client
from video_worker.ops.dev import FAKE_CREDENTIALS, start_emulator
from video_worker.ops.provision import provision
from video_worker.settings import Settings

# The suite's workers copy segments unchanged unless a test names its model (MODEL=stereo, simulated, ...): the
# converter, the default a deployment gets, is tested where it is the subject (tests/stereo, the stereo pipeline).
os.environ.setdefault("MODEL", "passthrough")


@pytest.fixture
def clients(monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, Any]]:
    """In-process moto (unit scope): S3, DynamoDB and SQS clients, and resources provisioned on them."""
    for k in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"):
        monkeypatch.setenv(k, "testing")
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    with mock_aws():
        c = {n: boto3.client(n, region_name=REGION) for n in ("s3", "dynamodb", "sqs")}
        c["res"] = provision(c["s3"], c["dynamodb"], c["sqs"], prefix="unit")
        yield c


@pytest.fixture
def raw_queue(monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Any, str]]:
    """In-process moto (unit scope): an SQS client and one queue with no visibility timeout."""
    for k in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.setenv(k, "testing")
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    with mock_aws():
        client = boto3.client("sqs", region_name=REGION)
        url = client.create_queue(QueueName="raw", Attributes={"VisibilityTimeout": "0"})["QueueUrl"]
        yield client, url


@pytest.fixture(scope="session")
def emulator() -> Iterator[str]:
    """A real moto server on a free loopback port; yields its endpoint URL."""
    saved = {k: os.environ.get(k) for k in FAKE_CREDENTIALS}
    os.environ.update(FAKE_CREDENTIALS)
    server, endpoint = start_emulator()
    yield endpoint
    server.stop()  # type: ignore[attr-defined]
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


@pytest.fixture
def aws(emulator: str) -> Aws:
    """Fresh resources (unique names) on the shared emulator, provisioned as production has them."""
    prefix = f"t{uuid.uuid4().hex[:10]}"
    boot = Settings(
        input_bucket_name="boot",
        output_bucket_name="boot",
        segment_completions_table_name="boot",
        aws_endpoint_url=emulator,
    )
    s3, ddb, sqs = (make_client(n, boot.aws) for n in ("s3", "dynamodb", "sqs"))
    res = provision(s3, ddb, sqs, prefix=prefix, max_receive_count=2, visibility_timeout=2)
    return Aws(emulator, res, s3, ddb, sqs, prefix)


@pytest.fixture
def procs(aws: Aws, tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Processes]:
    processes = Processes(aws, tmp_path)
    yield processes
    processes.stop_all()
    report = getattr(request.node, "rep_call", None)
    if report is not None and report.failed:
        for proc in processes.started:
            print(f"\n===== {proc.name} log =====\n{proc.log()[-6000:]}")


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    report = yield
    setattr(item, f"rep_{report.when}", report)
    return report
