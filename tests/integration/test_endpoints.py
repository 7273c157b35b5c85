"""AWS conventions: service-specific endpoints win over ``AWS_ENDPOINT_URL`` (the broker follows the SQS one),
and credentials come from boto3's standard chain (``AWS_PROFILE``). Real workers, two moto servers.
"""

from __future__ import annotations

import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import boto3
import pytest

from bench.awsproxy import AwsProxy
from tests.support.stack import Aws, Processes, wait_until
from video_worker.keys import build_segment_key
from video_worker.ops.dev import FAKE_CREDENTIALS
from video_worker.ops.provision import _create_table
from video_worker.ops.sample import sample_segment

pytestmark = pytest.mark.integration

#: A moto server in a process of its own (moto servers started in one process share their state).
_EMULATOR = ("import sys; from video_worker.ops.dev import start_emulator; "
             "server, endpoint = start_emulator(); print(endpoint, flush=True); sys.stdin.read()")


@contextmanager
def other_emulator() -> Iterator[str]:
    child = subprocess.Popen([sys.executable, "-c", _EMULATOR], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                             text=True)
    assert child.stdout is not None and child.stdin is not None
    try:
        yield child.stdout.readline().strip()
    finally:
        child.stdin.close()
        child.wait(30)


def _rows(dynamodb: Any, table: str, job: str) -> list[dict[str, Any]]:
    return dynamodb.query(TableName=table, KeyConditionExpression="job_id = :j",
                          ExpressionAttributeValues={":j": {"S": job}}, ConsistentRead=True)["Items"]


def _upload(aws: Aws, job: str) -> None:
    aws.s3.put_object(Bucket=aws.resources.input_bucket, Key=build_segment_key(job, 0, 1, "sbs"),
                      Body=sample_segment(20_000))


def test_dynamodb_on_another_endpoint(aws: Aws, procs: Processes) -> None:
    """LocalStack for S3/SQS/SNS, DynamoDB elsewhere: the table exists only on the second server."""
    with other_emulator() as elsewhere:
        dynamodb = boto3.client("dynamodb", endpoint_url=elsewhere, region_name="us-east-1")
        _create_table(dynamodb, aws.resources.table)
        aws.dynamodb.delete_table(TableName=aws.resources.table)
        worker = procs.worker("split", AWS_ENDPOINT_URL_DYNAMODB=elsewhere)
        procs.bridge(AWS_ENDPOINT_URL_DYNAMODB=elsewhere)
        _upload(aws, "split-endpoints")
        [row] = wait_until(lambda: _rows(dynamodb, aws.resources.table, "split-endpoints"), 90, "the row")
        assert row["output_s3_uri"]["S"].endswith("jobs/split-endpoints/segments/0.mp4")
        assert worker.alive()


def test_broker_sns_and_dynamodb_follow_their_endpoints_with_profile_credentials(
        aws: Aws, procs: Processes, tmp_path: Path) -> None:
    """SQS (so the broker) through one recording proxy, SNS and DynamoDB through another, S3 straight to the
    emulator; no key in the environment: each process signs with the profile's key (``AWS_PROFILE``)."""
    sqs_proxy, other_proxy = AwsProxy(aws.endpoint).start(), AwsProxy(aws.endpoint).start()
    credentials = tmp_path / "credentials"
    credentials.write_text("[video]\naws_access_key_id = from-profile\naws_secret_access_key = secret\n")
    env = procs.env(AWS_ENDPOINT_URL_SQS=sqs_proxy.endpoint, AWS_ENDPOINT_URL_SNS=other_proxy.endpoint,
                    AWS_ENDPOINT_URL_DYNAMODB=other_proxy.endpoint, AWS_PROFILE="video",
                    AWS_SHARED_CREDENTIALS_FILE=str(credentials), AWS_CONFIG_FILE=str(tmp_path / "no-config"))
    for name in FAKE_CREDENTIALS:
        env.pop(name, None)
    try:
        worker = procs.start("profiled", [sys.executable, "-m", "celery", "-A", "video_worker", "worker", "-l",
                                          "INFO", "-n", "profiled@%h"], env)
        procs.start("bridge", [sys.executable, "-m", "video_worker", "bridge"], env)
        _upload(aws, "profiled")
        wait_until(lambda: aws.completion_rows("profiled"), 90, "the row")
        via_sqs, via_other = sqs_proxy.requests(), other_proxy.requests()
    finally:
        sqs_proxy.stop()
        other_proxy.stop()
    assert set(Counter(r.service for r in via_sqs)) == {"sqs"}
    assert set(Counter(r.service for r in via_other)) == {"sns", "dynamodb"}, "S3 has no endpoint of its own"
    assert {r.caller for r in via_sqs + via_other} == {"from-profile"}
    broker_polls = {r.target for r in via_sqs if r.action == "ReceiveMessage"}
    assert f"{aws.prefix}-tasks" in broker_polls, "the broker polls through the SQS endpoint"
    assert {"Publish", "PublishBatch"} & {r.action for r in via_other}, "monitoring's events through SNS's"
    assert worker.alive()
