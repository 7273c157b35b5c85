"""The bridge's Prometheus metrics (``BRIDGE_METRICS_PORT``): each raw message's outcome, each skipped record's reason.

``video-worker bridge`` passes ``BridgeMetrics.observe`` to ``Bridge`` as its
``observe`` hook and serves the registry over HTTP. A skip's reason is one
line of text naming the key or bucket (``events.py``); ``skip_reason`` turns
it into one of a few label values (``SKIP_REASONS``) so the series stay few.
"""

from __future__ import annotations

from typing import Any

from prometheus_client import CollectorRegistry, Counter, start_http_server

from video_worker.bridge import Outcome
from video_worker.events import Skip

OUTCOMES: tuple[Outcome, ...] = ("published", "skipped", "invalid")
#: The label of a skipped record, by how ``events.py`` words its reason.
SKIP_REASONS = {
    "test_event": "an s3:TestEvent (sent when the bucket's notification is configured)",
    "not_object_created": "another event type (ObjectRemoved, Object Restore, ...)",
    "other_bucket": "an event for a bucket other than INPUT_BUCKET_NAME",
    "not_segment_key": "a key that is not a segment key (bad mode, index >= total, unsafe job id, ...)",
    "not_s3_record": "a record whose eventSource is not aws:s3",
    "other": "anything else",
}


def skip_reason(skip: Skip) -> str:
    """The ``reason`` label of a skipped record."""
    text = skip.reason
    if text.endswith("TestEvent"):
        return "test_event"
    if text.startswith("event ") and text.endswith("is not ObjectCreated"):
        return "not_object_created"
    if text.startswith("bucket ") and " is not the input bucket " in text:
        return "other_bucket"
    if text.startswith("not a segment key"):
        return "not_segment_key"
    if text.startswith("record eventSource "):
        return "not_s3_record"
    return "other"


class BridgeMetrics:
    """The bridge's two series on a registry of their own."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        self.messages = Counter("video_worker_bridge_messages_total",
                                "Raw S3-event messages handled, by outcome (a malformed one each time it is received)",
                                ["outcome"], registry=self.registry)
        self.skipped_records = Counter("video_worker_bridge_skipped_records_total",
                                       "Records deliberately not turned into a chain, by reason", ["reason"],
                                       registry=self.registry)
        for outcome in OUTCOMES:
            self.messages.labels(outcome)
        for reason in SKIP_REASONS:
            self.skipped_records.labels(reason)

    def observe(self, outcome: Outcome, skipped: list[Skip]) -> None:
        """``Bridge``'s ``observe`` hook."""
        self.messages.labels(outcome).inc()
        for skip in skipped:
            self.skipped_records.labels(skip_reason(skip)).inc()

    def serve(self, port: int) -> Any:
        """Serve ``/metrics`` on ``port`` (all interfaces) from a daemon thread; return the server."""
        server, _thread = start_http_server(port, registry=self.registry)
        return server
