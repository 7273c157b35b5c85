"""The bridge: raw S3-event queue → one Celery chain per segment.

It long-polls ``VIDEO_WORKER_QUEUE_URL`` (a ``ports.MessageQueue``), parses each message body with
``events.parse_message`` and publishes a chain per segment record. A raw
message is deleted (one ``DeleteMessageBatch`` per receive) only after every
chain from it has been published; a message with nothing to do is deleted too.
A malformed message is logged and
left alone: after ``maxReceiveCount`` receives the queue's redrive policy moves
it to the dead-letter queue. A failure to publish leaves the message to come
back after its visibility timeout. The bridge never crashes on a message.
Each message handled is reported to ``observe`` (the bridge's metrics) as
``published``, ``skipped`` (no segment in it) or ``invalid`` (malformed), with
the records it skipped; a message kept for a failed publish is not: it comes again.
"""

from __future__ import annotations

import functools
import logging
import signal
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from video_worker import failure_policy, logs
from video_worker.errors import MalformedMessage, Undelivered, VideoWorkerError
from video_worker.events import SegmentEvent, Skip, parse_message
from video_worker.ports import MessageQueue, QueueMessage

log = logging.getLogger(__name__)

Publish = Callable[[SegmentEvent], None]
Outcome = Literal["published", "skipped", "invalid"]
#: Told of every message handled: its outcome and the records it skipped.
Observe = Callable[[Outcome, list[Skip]], None]


class _Interrupted(BaseException):
    """Raised by the signal handler to abandon a long poll."""


@dataclass
class BatchReport:
    received: int = 0
    published: int = 0
    deleted: int = 0
    skipped: int = 0
    malformed: int = 0
    failed: int = 0


#: The bridge holds a batch of raw messages (60 s visibility): it tries a refused publish for at most this long
#: (or ``PUBLISH_PATIENCE_SECONDS`` if that is shorter).
BRIDGE_PUBLISH_PATIENCE_SECONDS = 10.0


class Bridge:
    """Moves S3 events from the raw queue to the Celery broker."""

    def __init__(
        self,
        queue: MessageQueue,
        input_bucket: str,
        publish: Publish,
        *,
        wait_time_seconds: int = 20,
        batch_size: int = 10,
        publish_patience: float = BRIDGE_PUBLISH_PATIENCE_SECONDS,
        observe: Observe | None = None,
    ) -> None:
        self._queue = queue
        self._input_bucket = input_bucket
        self._publish = publish
        self._wait = wait_time_seconds
        self._batch = batch_size
        self._patience = publish_patience
        self._observe: Observe = observe or (lambda _outcome, _skipped: None)
        self._backoff = failure_policy.ReceiveBackoff()
        self.stopping = threading.Event()
        self._receiving = False

    def run(self) -> None:
        """Poll until ``stop()``; finishes the batch in hand before returning."""
        log.info("bridge polling %s", self._queue.url)
        while not self.stopping.is_set():
            try:
                report = self.poll_once()
            except _Interrupted:
                break
            except VideoWorkerError as exc:
                self.stopping.wait(self._backoff.failed("bridge: receive", exc))
                continue
            self._backoff.succeeded("bridge: receive")
            if report.failed:
                self.stopping.wait(self._backoff.failed("bridge: publish", f"{report.failed} message(s) kept"))
        log.info("bridge stopped")

    def stop(self) -> None:
        self.stopping.set()

    def install_signal_handlers(self) -> None:
        """SIGTERM/SIGINT: stop receiving, finish the batch in hand, return from ``run``.

        If the signal arrives during a long poll (no message in hand), the poll
        is abandoned at once; anything SQS handed out in that instant becomes
        visible again after the queue's visibility timeout.
        """

        def handler(signum: int, frame: object) -> None:
            log.info("bridge: signal %d, stopping", signum)
            self.stop()
            if self._receiving:
                raise _Interrupted

        signal.signal(signal.SIGTERM, handler)
        signal.signal(signal.SIGINT, handler)

    def poll_once(self) -> BatchReport:
        """Receive one batch and handle every message in it."""
        self._receiving = True
        try:
            if self.stopping.is_set():
                return BatchReport()
            messages = self._queue.receive(self._batch, self._wait)
        finally:
            self._receiving = False
        report = BatchReport()
        done: list[QueueMessage] = []
        for message in messages:
            report.received += 1
            if report.failed:  # the broker is refusing: leave the rest to come back, do not hammer it
                continue
            if self._handle(message, report):
                done.append(message)
        if done:
            self._delete(done, report)
        return report

    def _delete(self, messages: list[QueueMessage], report: BatchReport) -> None:
        """Delete the messages handled; a failed one comes back later (its chains are then skipped as done)."""
        failed = self._queue.delete(messages)
        report.deleted += len(messages) - len(failed)
        for message, reason in failed:
            report.failed += 1
            log.error("message %s: delete failed (%s); it will be received again", message.id, reason)

    def _handle(self, message: QueueMessage, report: BatchReport) -> bool:
        """Publish the message's chains; True if it may be deleted."""
        message_id = message.id
        try:
            parsed = parse_message(message.body, self._input_bucket)
        except MalformedMessage as exc:
            report.malformed += 1
            log.error(
                "message %s is malformed (%s); left for the dead-letter queue (receive %s)",
                message_id, exc, message.receive_count or "?",
            )
            self._observe("invalid", [])
            return False
        for skip in parsed.skipped:
            report.skipped += 1
            log.info("message %s: skipped %r/%r: %s", message_id, skip.bucket, skip.key, skip.reason)
        try:
            for event in parsed.segments:
                with logs.bound(job_id=event.payload.job_id, segment_index=event.payload.segment_index,
                                message_id=message_id):
                    failure_policy.patiently(functools.partial(self._publish, event),
                                       f"message {message_id}: publishing a chain", patience=self._patience)
                    report.published += 1
                    log.info(
                        "message %s: published chain for %r/%d of %d (%r)",
                        message_id, event.payload.job_id, event.payload.segment_index,
                        event.payload.total_segments, event.payload.segment_s3_uri,
                    )
        except Undelivered as exc:  # the broker refused: keep the message for redelivery
            report.failed += 1
            log.error("%s; it will be received again", exc)
            return False
        self._observe("published" if parsed.segments else "skipped", parsed.skipped)
        return True
