"""A segment uploaded twice while the first upload's chain is still running: output and row name the newer one.

The proxy holds the older chain's output ``PutObject`` until the newer
upload's chain has written its output and row, then lets it go: without the
ordering of ``video_worker/ordering.py`` it would overwrite the newer output
with the older bytes (the row refusing it: a stale output). Events come from
moto itself (no sequencer), as LocalStack sends them (one constant
sequencer), or with real sequencers delivered out of order.
"""

from __future__ import annotations

import hashlib
import threading
import time

import pytest

from bench.awsproxy import AwsProxy, Fault, call
from tests.faults.conftest import Outcome, Report, direct_broker, stale_outputs
from tests.support.events import s3_notification_body
from tests.support.stack import Aws, Processes, wait_until
from video_worker.keys import build_output_segment_key, build_segment_key
from video_worker.ops.sample import sample_segment

pytestmark = pytest.mark.integration

LOCALSTACK_SEQUENCER = "0055AED6DCD90281E5"  # LocalStack sends this one for every event


def _row_etag(aws: Aws, job: str) -> str | None:
    rows = aws.completion_rows(job)
    return rows[0]["source_etag"]["S"] if rows else None


@pytest.mark.parametrize("events", ["moto (no sequencer)", "LocalStack (one constant sequencer)"])
def test_an_older_chain_never_overwrites_a_newer_output(
        aws: Aws, procs: Processes, proxy: AwsProxy, report: Report, events: str) -> None:
    job = "race-" + events.split()[0].lower()
    key, out_key = build_segment_key(job, 0, 1, "sbs"), build_output_segment_key(job, 0)
    older, newer = sample_segment(40_000, seed=1), sample_segment(41_000, seed=2)
    etags = {name: hashlib.md5(data).hexdigest() for name, data in (("older", older), ("newer", newer))}
    if events.startswith("LocalStack"):  # no notifications from moto: this test sends LocalStack's
        aws.s3.put_bucket_notification_configuration(Bucket=aws.resources.input_bucket,
                                                     NotificationConfiguration={})

    def uploaded(data: bytes) -> None:
        aws.s3.put_object(Bucket=aws.resources.input_bucket, Key=key, Body=data)
        if events.startswith("LocalStack"):
            body = s3_notification_body(aws.resources.input_bucket, key, size=len(data),
                                        etag=hashlib.md5(data).hexdigest(), sequencer=LOCALSTACK_SEQUENCER)
            aws.sqs.send_message(QueueUrl=aws.resources.queue_url, MessageBody=body)

    release = threading.Event()
    held = proxy.add(Fault(call("s3", "PutObject", caller="worker", path=f"/{out_key}"), times=1, until=release))
    worker = procs.worker(AWS_ENDPOINT_URL=proxy.endpoint, **direct_broker(aws))
    procs.bridge()
    started = time.monotonic()
    uploaded(older)
    wait_until(lambda: held.hits == 1, 60, "the older chain's output PUT to be held")
    uploaded(newer)
    wait_until(lambda: _row_etag(aws, job) == etags["newer"], 60, "the newer upload's row")
    release.set()
    wait_until(lambda: "a newer upload of this segment has written its output" in worker.log(), 60,
               "the older chain to stand down")
    stale = stale_outputs(aws, job, {0: newer})
    report.outcomes.append(Outcome(f"re-upload race, events from {events}: the older chain's output PUT held "
                                   "until the newer chain recorded", 2, 1, 0, 0, 0, "1 held PutObject",
                                   time.monotonic() - started, "the older chain's conditional PUT refused (412); "
                                   "it stood down", stale_outputs=stale))
    assert aws.output(out_key) == newer and stale == 0
    assert _row_etag(aws, job) == etags["newer"] and len(aws.completion_rows(job)) == 1
    assert aws.completion_rows(job)[0]["output_generation"] == {"N": "1"}


def test_an_older_upload_whose_event_comes_last_is_skipped_before_download(
        aws: Aws, procs: Processes, report: Report) -> None:
    """Real sequencers, events delivered newest first: the older upload's chain stops at its first step."""
    job = "late-event"
    key, out_key = build_segment_key(job, 0, 1, "sbs"), build_output_segment_key(job, 0)
    aws.s3.put_bucket_notification_configuration(Bucket=aws.resources.input_bucket, NotificationConfiguration={})
    older, newer = sample_segment(30_000, seed=3), sample_segment(31_000, seed=4)
    worker = procs.worker()
    procs.bridge()
    started = time.monotonic()
    aws.s3.put_object(Bucket=aws.resources.input_bucket, Key=key, Body=newer)
    for data, sequencer in ((newer, "0062B2F3C1B8A4C2D1"), (older, "0062B2F3C1B8A4C2C0")):
        body = s3_notification_body(aws.resources.input_bucket, key, size=len(data),
                                    etag=hashlib.md5(data).hexdigest(), sequencer=sequencer)
        aws.sqs.send_message(QueueUrl=aws.resources.queue_url, MessageBody=body)
        if data is newer:
            wait_until(lambda: aws.completion_rows(job), 60, "the newer upload's row")
    wait_until(lambda: "a newer upload of this segment is already completed" in worker.log(), 60, "the skip")
    report.outcomes.append(Outcome("an older upload's event delivered after the newer one's (real sequencers)", 2, 1,
                                   0, 0, 0, "events out of order", time.monotonic() - started,
                                   "skipped before download", stale_outputs=stale_outputs(aws, job, {0: newer})))
    assert aws.output(out_key) == newer
    assert worker.log().count("inferred 'late-event'/0") == 1
