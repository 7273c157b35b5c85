"""AWS errors: throttling and 5xx, outages with reset connections, permanent errors that end as dead letters."""


from __future__ import annotations

import json
import os
import random
import re
import time

import pytest

from bench.awsproxy import AwsProxy, Fault, json_error, s3_error
from tests.faults.conftest import Outcome, Report, direct_broker, scratch_files, settle, upload, verify
from tests.support.stack import Aws, Processes, wait_until
from video_worker.keys import build_segment_key

pytestmark = pytest.mark.integration

def test_s3_errors_and_dynamodb_throttling_are_retried(
    aws: Aws, procs: Processes, proxy: AwsProxy, report: Report
) -> None:
    def s3(method: str) -> Fault:
        status, body, ctype = s3_error("SlowDown" if method == "GET" else "InternalError",
                                       503 if method == "GET" else 500)
        return Fault(lambda c: c.service == "s3" and c.method == method, times=7, status=status, body=body,
                     content_type=ctype)

    def ddb(action: str, error: str) -> Fault:
        status, body, ctype = json_error(f"com.amazonaws.dynamodb.v20120810#{error}")
        return Fault(lambda c: c.service == "dynamodb" and c.action == action, times=7, status=status,
                     body=body, content_type=ctype)

    for fault in (s3("GET"), s3("PUT"), ddb("GetItem", "ThrottlingException"),
                  ddb("PutItem", "ProvisionedThroughputExceededException")):
        proxy.add(fault)
    # One slot: the errors hit one call after another, so botocore's 3 attempts run out and the
    # task-level retry runs too (with 3 slots the 7 errors of a kind spread over 3 calls and
    # botocore alone absorbs them).
    env = {"AWS_ENDPOINT_URL": proxy.endpoint, "TASK_RETRY_BASE_SECONDS": "1", "WORKER_CONCURRENCY": "1",
           **direct_broker(aws)}
    worker = procs.worker(**env)
    procs.bridge()
    started = time.monotonic()
    sent = upload(aws, "throttled", 5)
    settle(aws, "throttled", sent, 180)
    completed, lost, dups = verify(aws, "throttled", sent, [worker])
    retries = len(re.findall(r"retry \d+ in \d+s", worker.log()))
    report.outcomes.append(Outcome("S3 503 SlowDown / 500 and DynamoDB throttling on the first calls",
                                   len(sent), completed, 0, lost, dups,
                                   f"{proxy.injected()} error responses", time.monotonic() - started,
                                   f"{retries} task retries with SQS DelaySeconds backoff"))
    assert proxy.injected() == 28
    assert retries > 0
    assert (completed, lost, dups) == (5, 0, 0)


def test_aws_endpoint_goes_away_several_times_mid_run(
        aws: Aws, procs: Processes, proxy: AwsProxy, report: Report) -> None:
    """Five outages of 3-6 s at random moments (seeded): new connections refused, open ones reset.

    Every AWS call of the worker and the bridge, the broker's included, goes through the proxy.
    """
    rng = random.Random(int(os.environ.get("OUTAGE_SEED", "20261201")))
    via_proxy = {"AWS_ENDPOINT_URL": proxy.endpoint, "BROKER_VISIBILITY_TIMEOUT": "20",
                 "MODEL": "simulated", "SIMULATED_INFER_SECONDS": "0.3"}
    worker = procs.worker(**via_proxy)
    bridge = procs.bridge(**via_proxy)
    started = time.monotonic()
    sent = upload(aws, "outage", 40)
    outages: list[float] = []
    for _ in range(5):
        done = aws.completion_count("outage")
        if done >= len(sent):
            break
        wait_until(lambda done=done: aws.completion_count("outage") > done, 120, "progress between outages")
        outages.append(rng.uniform(3.0, 6.0))
        time.sleep(rng.uniform(0.0, 1.0))  # a random moment after some progress
        proxy.outage(outages[-1])
    settle(aws, "outage", sent, 300)
    completed, lost, dups = verify(aws, "outage", sent, [worker])
    report.outcomes.append(Outcome(f"AWS endpoint (S3, DynamoDB, SQS, broker) gone {len(outages)} times "
                                   f"({', '.join(f'{s:.1f}' for s in outages)} s), open connections reset",
                                   len(sent), completed, 0, lost, dups, f"{len(outages)} outages", time.monotonic() - started,
                                   "worker and bridge reconnect by themselves; BROKER_VISIBILITY_TIMEOUT=20"))
    assert len(outages) >= 3, "the outages came while segments were in progress"
    assert worker.alive() and bridge.alive() and "Unrecoverable error" not in worker.log()
    assert (completed, lost, dups) == (40, 0, 0)


def test_permanent_errors_end_as_dead_letters_not_losses(
    aws: Aws, procs: Processes, proxy: AwsProxy, report: Report
) -> None:
    """Access denied on one output, one oversized segment, one missing source: 3 dead letters, 1 completion."""
    import subprocess
    import sys

    from video_worker.celery_app import create_app
    from video_worker.segments import Segment, s3_uri
    from video_worker.worker.chain import build_chain

    status, body, ctype = s3_error("AccessDenied", 403)
    proxy.add(Fault(lambda c: c.service == "s3" and c.method == "PUT" and "/jobs/perm/segments/1.mp4" in c.path,
                    times=1000, status=status, body=body, content_type=ctype))
    env = {"AWS_ENDPOINT_URL": proxy.endpoint, "MAX_SEGMENT_BYTES": "100000", **direct_broker(aws)}
    worker = procs.worker(**env)
    procs.bridge()
    started = time.monotonic()
    sent = upload(aws, "perm", 2, size=30_000)  # index 1: its output may not be written
    aws.s3.put_object(Bucket=aws.resources.input_bucket, Key=build_segment_key("perm-big", 0, 1, "sbs"), Body=b"x" * 100_001)
    missing = Segment(job_id="perm-gone", segment_index=0, total_segments=1, mode="sbs",
                                 segment_s3_uri=s3_uri(aws.resources.input_bucket, build_segment_key("perm-gone", 0, 1, "sbs")))
    build_chain(missing, create_app(aws.settings())).apply_async()

    def letters() -> list[dict[str, object]]:
        out = subprocess.run([sys.executable, "-m", "video_worker", "dlq", "list", "--json"], env=procs.env(),
                             capture_output=True, text=True, timeout=60, check=True)
        return [json.loads(line) for line in out.stdout.splitlines() if line.strip()]

    found = wait_until(lambda: (got := letters()) and len(got) >= 3 and got, 90, "three dead letters")
    settle(aws, "perm", {0: sent[0]}, 60)
    kinds = sorted(str(letter["error_type"]) for letter in found)
    completed, _, dups = verify(aws, "perm", {0: sent[0]}, [worker])
    report.outcomes.append(Outcome("permanent errors: output AccessDenied, segment over MAX_SEGMENT_BYTES, "
                                   "source object missing", 4, completed, len(found), 4 - completed - len(found),
                                   dups, "403 on one output key", time.monotonic() - started,
                                   f"dead letters: {', '.join(kinds)}; each with 1 attempt"))
    assert kinds == ["AccessDenied", "ObjectNotFound", "SegmentTooLarge"]
    assert all(letter["attempts"] == 1 for letter in found)
    assert (completed, dups) == (1, 0)
    assert scratch_files(procs.tmp / "scratch") == [], "failed stages leave no files"
