"""Dead letters: chains that failed for good, kept where people can see and replay them.

A dead letter is one JSON message on ``VIDEO_WORKER_DLQ_URL`` (default: the
SQS queue ``{BROKER_QUEUE_PREFIX}dead-letters``, created on first use). It
holds the segment payload, the task that failed, the error, the attempt count
and the time; for a broker message that could not be run as a task, the
message itself (``raw_message``: body, headers, content type; the body cut
at ``RAW_BODY_LIMIT`` characters so the letter fits in an SQS message).
``video-worker dlq list`` shows them; ``video-worker dlq replay`` re-runs
them from the start of the chain and deletes them once re-published.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, Field, ValidationError

from video_worker.aws import SDK_ERRORS, translate
from video_worker.payloads import VideoWorkerPayload

#: Characters of a bad message's body kept in its dead letter (SQS messages hold 256 KiB).
RAW_BODY_LIMIT = 100_000


class DeadLetter(BaseModel):
    id: str = Field(default_factory=lambda: uuid.uuid4().hex)
    payload: VideoWorkerPayload | None = Field(description="the segment, if the payload was valid")
    raw_payload: dict[str, Any] | None = Field(None, description="the task argument, if it was not")
    raw_message: dict[str, Any] | None = Field(
        None, description="a broker message that was not a runnable task: body, headers, content type")
    failed_task: str
    error_type: str
    error: str
    attempts: int = Field(ge=1)
    failed_at: int = Field(description="Unix seconds")
    task_id: str | None = None

    @property
    def segment_label(self) -> str:
        return f"{self.payload.job_id!r}/{self.payload.segment_index}" if self.payload else "no segment"


@dataclass(frozen=True)
class Received:
    letter: DeadLetter | None
    body: str
    receipt_handle: str
    message_id: str
    sent_at: float = 0.0  # when SQS accepted it (Unix seconds)


class DeadLetterQueue:
    """An SQS queue of ``DeadLetter`` JSON messages."""

    def __init__(self, sqs: Any, queue_url: str) -> None:
        self._sqs = sqs
        self.queue_url = queue_url

    @classmethod
    def named(cls, sqs: Any, queue_name: str) -> DeadLetterQueue:
        try:
            url = sqs.create_queue(QueueName=queue_name)["QueueUrl"]
        except SDK_ERRORS as exc:
            raise translate(exc, f"create dead-letter queue {queue_name}") from exc
        return cls(sqs, str(url))

    def put(self, letter: DeadLetter) -> None:
        try:
            self._sqs.send_message(QueueUrl=self.queue_url, MessageBody=letter.model_dump_json())
        except SDK_ERRORS as exc:
            raise translate(exc, "send to the dead-letter queue") from exc

    def receive_all(self, hold_seconds: int = 30, limit: int = 10_000) -> Iterator[Received]:
        """Every message now on the queue, each hidden for ``hold_seconds`` while it is handled."""
        seen: set[str] = set()
        while len(seen) < limit:
            try:
                batch = self._sqs.receive_message(
                    QueueUrl=self.queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=1,
                    VisibilityTimeout=hold_seconds, MessageSystemAttributeNames=["SentTimestamp"],
                ).get("Messages", [])
            except SDK_ERRORS as exc:
                raise translate(exc, "receive from the dead-letter queue") from exc
            fresh = [m for m in batch if m["MessageId"] not in seen]
            for again in (m for m in batch if m["MessageId"] in seen):  # already handed out: visible again now
                self.release(again["ReceiptHandle"])
            if not fresh:
                return
            for message in fresh:
                seen.add(message["MessageId"])
                try:
                    letter: DeadLetter | None = DeadLetter.model_validate_json(message["Body"])
                except ValidationError:
                    letter = None
                sent_ms = message.get("Attributes", {}).get("SentTimestamp", "0")
                yield Received(letter, message["Body"], message["ReceiptHandle"], message["MessageId"],
                               int(sent_ms) / 1000)

    def release(self, receipt_handle: str) -> None:
        """Make a received message visible again at once."""
        try:
            self._sqs.change_message_visibility(
                QueueUrl=self.queue_url, ReceiptHandle=receipt_handle, VisibilityTimeout=0
            )
        except SDK_ERRORS as exc:
            raise translate(exc, "release a dead letter") from exc

    def delete(self, receipt_handle: str) -> None:
        try:
            self._sqs.delete_message(QueueUrl=self.queue_url, ReceiptHandle=receipt_handle)
        except SDK_ERRORS as exc:
            raise translate(exc, "delete from the dead-letter queue") from exc
