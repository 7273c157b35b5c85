"""At-least-once delivery: duplicate events and re-uploads of one segment."""


from __future__ import annotations

import re
import time

import pytest

from tests.faults.conftest import Outcome, Report, settle, upload, verify
from tests.support.events import s3_notification_body
from tests.support.stack import Aws, Processes, wait_until
from video_worker.keys import build_segment_key

pytestmark = pytest.mark.integration

def test_same_segment_twice_and_two_events_for_one_upload(aws: Aws, procs: Processes, report: Report) -> None:
    worker = procs.worker()
    procs.bridge()
    started = time.monotonic()
    first = upload(aws, "twice", 2, size=30_000)
    settle(aws, "twice", first, 60)
    # Two more events for one upload (at-least-once delivery) ...
    key = build_segment_key("twice", 0, 2, "sbs")
    etag = aws.s3.head_object(Bucket=aws.resources.input_bucket, Key=key)["ETag"].strip('"')
    body = s3_notification_body(aws.resources.input_bucket, key, size=len(first[0]), etag=etag)
    for _ in range(2):
        aws.sqs.send_message(QueueUrl=aws.resources.queue_url, MessageBody=body)
    wait_until(lambda: worker.log().count("skipping 'twice'/0: already completed") == 2, 60, "duplicates skipped")
    # ... and the same segment uploaded again with new content.
    second = upload(aws, "twice", 2, size=31_000)
    wait_until(lambda: len({r["source_etag"]["S"] for r in aws.completion_rows("twice")}) == 2
               and all(r["source_etag"]["S"] != etag for r in aws.completion_rows("twice")), 60, "re-uploads done")
    completed, lost, _ = verify(aws, "twice", second, [worker])
    recorded = re.findall(r"(?<!already )recorded 'twice'/(\d+)\b", worker.log())
    dups = len(recorded) - 2 * len(second)  # each segment recorded once per distinct upload
    report.outcomes.append(Outcome("same segment uploaded twice; two extra events for one upload",
                                   len(second), completed, 0, lost, dups, "2 duplicate events, 2 re-uploads",
                                   time.monotonic() - started, "duplicates skipped before download"))
    assert (completed, lost, dups) == (2, 0, 0)
