"""SQS: the raw S3-event queue (``SqsQueue``) and the dead letters (``SqsDeadLetters``), behind ``ports``.

Dead letters are JSON messages on ``VIDEO_WORKER_DLQ_URL`` (default: the queue
``{BROKER_QUEUE_PREFIX}dead-letters``, created on first use).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

from pydantic import ValidationError

from video_worker.adapters.aws import SDK_ERRORS, make_client, translate
from video_worker.dead_letter import DeadLetter, Received
from video_worker.ports import QueueMessage
from video_worker.settings import Settings

#: SQS's limit of entries per batch call.
BATCH = 10


class SqsQueue:
    """``ports.MessageQueue`` over a boto3 SQS client."""

    def __init__(self, sqs: Any, url: str, what: str = "the video-worker queue") -> None:
        self._sqs = sqs
        self.url = url
        self._what = what

    def receive(self, max_messages: int, wait_seconds: int) -> list[QueueMessage]:
        try:
            response = self._sqs.receive_message(QueueUrl=self.url, MaxNumberOfMessages=max_messages,
                                                 WaitTimeSeconds=wait_seconds,
                                                 MessageSystemAttributeNames=["ApproximateReceiveCount"])
        except SDK_ERRORS as exc:
            raise translate(exc, f"receive from {self._what}") from exc
        return [QueueMessage(str(m.get("MessageId", "?")), str(m.get("Body", "")), str(m["ReceiptHandle"]),
                             receive_count_of(m)) for m in response.get("Messages", [])]

    def delete(self, messages: Sequence[QueueMessage]) -> list[tuple[QueueMessage, str]]:
        """One ``DeleteMessageBatch`` per ten; a failed entry (or call) is returned, to come back later."""
        failed: list[tuple[QueueMessage, str]] = []
        for start in range(0, len(messages), BATCH):
            batch = list(messages[start:start + BATCH])
            entries = [{"Id": str(i), "ReceiptHandle": m.receipt} for i, m in enumerate(batch)]
            try:
                response = self._sqs.delete_message_batch(QueueUrl=self.url, Entries=entries)
            except SDK_ERRORS as exc:
                reason = str(translate(exc, f"delete from {self._what}"))
                failed.extend((m, reason) for m in batch)
                continue
            failed.extend((batch[int(f["Id"])], f"{f.get('Code')} {f.get('Message', '')}".strip())
                          for f in response.get("Failed", []))
        return failed


    def extend_visibility(self, receipts: Sequence[str], seconds: int) -> list[str]:
        """Keep the messages of ``receipts`` hidden ``seconds`` more (batches of ten); return what failed, why."""
        failed: list[str] = []
        for start in range(0, len(receipts), BATCH):
            entries = [{"Id": str(i), "ReceiptHandle": r, "VisibilityTimeout": seconds}
                       for i, r in enumerate(receipts[start:start + BATCH])]
            try:
                result = self._sqs.change_message_visibility_batch(QueueUrl=self.url, Entries=entries)
            except SDK_ERRORS as exc:
                failed.append(f"{len(entries)} message(s): {translate(exc, 'extend visibility')}")
                continue
            failed.extend(f"{f.get('Code')} {f.get('Message', '')}".strip() for f in result.get("Failed", []))
        return failed

    def visibility_timeout(self) -> int:
        """The queue's own ``VisibilityTimeout`` attribute (what a receive without one gets)."""
        try:
            attrs = self._sqs.get_queue_attributes(QueueUrl=self.url, AttributeNames=["VisibilityTimeout"])
        except SDK_ERRORS as exc:
            raise translate(exc, f"read the attributes of {self._what}") from exc
        return int(attrs["Attributes"]["VisibilityTimeout"])


def receive_count_of(message: dict[str, Any]) -> int | None:
    """SQS's ``ApproximateReceiveCount`` of a raw message (a boto3 one, or the one kombu keeps), or None."""
    try:
        return int(message.get("Attributes", {}).get("ApproximateReceiveCount"))
    except (TypeError, ValueError):
        return None


class SqsDeadLetters:
    """``ports.DeadLetterStore``: an SQS queue of ``DeadLetter`` JSON messages."""

    def __init__(self, sqs: Any, queue_url: str) -> None:
        self._sqs = sqs
        self.url = queue_url

    @classmethod
    def named(cls, sqs: Any, queue_name: str) -> SqsDeadLetters:
        try:
            url = sqs.create_queue(QueueName=queue_name)["QueueUrl"]
        except SDK_ERRORS as exc:
            raise translate(exc, f"create dead-letter queue {queue_name}") from exc
        return cls(sqs, str(url))

    def put(self, letter: DeadLetter) -> None:
        try:
            self._sqs.send_message(QueueUrl=self.url, MessageBody=letter.model_dump_json())
        except SDK_ERRORS as exc:
            raise translate(exc, "send to the dead-letter queue") from exc

    def receive_all(self, hold_seconds: int = 30, limit: int = 10_000) -> Iterator[Received]:
        """Every message now on the queue, each hidden for ``hold_seconds`` while it is handled."""
        seen: set[str] = set()
        while len(seen) < limit:
            try:
                batch = self._sqs.receive_message(
                    QueueUrl=self.url, MaxNumberOfMessages=BATCH, WaitTimeSeconds=1,
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
            self._sqs.change_message_visibility(QueueUrl=self.url, ReceiptHandle=receipt_handle, VisibilityTimeout=0)
        except SDK_ERRORS as exc:
            raise translate(exc, "release a dead letter") from exc

    def delete(self, receipt_handle: str) -> None:
        try:
            self._sqs.delete_message(QueueUrl=self.url, ReceiptHandle=receipt_handle)
        except SDK_ERRORS as exc:
            raise translate(exc, "delete from the dead-letter queue") from exc


def dead_letter_store(settings: Settings) -> SqsDeadLetters:
    """``VIDEO_WORKER_DLQ_URL``, or the queue ``{BROKER_QUEUE_PREFIX}dead-letters`` (created if missing)."""
    sqs = make_client("sqs", settings.aws)
    if settings.video_worker_dlq_url:
        return SqsDeadLetters(sqs, settings.video_worker_dlq_url)
    return SqsDeadLetters.named(sqs, f"{settings.broker_queue_prefix}dead-letters")
