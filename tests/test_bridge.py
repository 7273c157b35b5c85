"""The bridge's message handling against an in-process SQS (unit scope)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.support.events import s3_notification_body
from video_worker.adapters.sqs import SqsQueue
from video_worker.bridge import Bridge
from video_worker.events import SegmentEvent

BUCKET = "in-bucket"


def _depth(client: Any, url: str) -> int:
    attrs = client.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]
    return int(attrs["ApproximateNumberOfMessages"]) + int(attrs["ApproximateNumberOfMessagesNotVisible"])


def _bridge(client: Any, url: str, published: list[SegmentEvent], fail: bool = False) -> Bridge:
    def publish(event: SegmentEvent) -> None:
        if fail:
            raise ConnectionError("broker down")
        published.append(event)

    return Bridge(SqsQueue(client, url), BUCKET, publish, wait_time_seconds=0, batch_size=10, publish_patience=0.5)


def test_every_segment_record_becomes_one_chain_then_the_message_is_deleted(raw_queue: tuple[Any, str]) -> None:
    client, url = raw_queue
    body = json.loads(s3_notification_body(BUCKET, "segments/j/00000_00002_sbs.mp4", size=10, etag="e1"))
    body["Records"] += json.loads(s3_notification_body(BUCKET, "segments/j/00001_00002_sbs.mp4", size=10, etag="e2"))["Records"]
    client.send_message(QueueUrl=url, MessageBody=json.dumps(body))
    published: list[SegmentEvent] = []
    report = _bridge(client, url, published).poll_once()
    assert [e.payload.segment_index for e in published] == [0, 1]
    assert (report.received, report.published, report.deleted) == (1, 2, 1)
    assert _depth(client, url) == 0


def test_message_with_nothing_to_do_is_deleted(raw_queue: tuple[Any, str]) -> None:
    client, url = raw_queue
    client.send_message(QueueUrl=url, MessageBody=json.dumps({"Service": "Amazon S3", "Event": "s3:TestEvent"}))
    client.send_message(QueueUrl=url, MessageBody=s3_notification_body("other-bucket", "segments/j/00000_00001_sbs.mp4", size=1, etag="e"))
    published: list[SegmentEvent] = []
    bridge = _bridge(client, url, published)
    report = bridge.poll_once()
    report2 = bridge.poll_once()
    assert published == []
    assert report.deleted + report2.deleted == 2
    assert report.skipped + report2.skipped == 2
    assert _depth(client, url) == 0


def test_malformed_message_is_left_for_the_redrive_policy(raw_queue: tuple[Any, str], caplog: pytest.LogCaptureFixture) -> None:
    client, url = raw_queue
    client.send_message(QueueUrl=url, MessageBody="{not json")
    report = _bridge(client, url, []).poll_once()
    assert (report.malformed, report.deleted) == (1, 0)
    assert _depth(client, url) == 1
    assert any("is malformed" in r.getMessage() for r in caplog.records)


def test_publish_failure_keeps_the_message(raw_queue: tuple[Any, str]) -> None:
    client, url = raw_queue
    client.send_message(QueueUrl=url, MessageBody=s3_notification_body(BUCKET, "segments/j/00000_00001_sbs.mp4", size=1, etag="e"))
    report = _bridge(client, url, [], fail=True).poll_once()
    assert (report.failed, report.deleted) == (1, 0)
    assert _depth(client, url) == 1
    published: list[SegmentEvent] = []
    report = _bridge(client, url, published).poll_once()
    assert report.deleted == 1 and len(published) == 1
