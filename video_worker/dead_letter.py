"""Dead letters: work that failed for good, kept where people can see and replay it.

A dead letter holds the segment, the task that failed, the error type and
message, the attempt count and the time; for a broker message that could not
be run as a task, the message itself (``raw_message``: body, headers, content
type; the body cut at ``RAW_BODY_LIMIT`` characters so the letter fits in an
SQS message). ``adapters/sqs.py`` keeps them on an SQS queue;
``video-worker dlq list`` shows them, ``video-worker dlq replay`` re-runs them.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, Field

from video_worker.segments import Segment

#: Characters of a bad message's body kept in its dead letter (SQS messages hold 256 KiB).
RAW_BODY_LIMIT = 100_000


class DeadLetter(BaseModel):
    id: str = Field(default_factory=lambda: uuid.uuid4().hex)
    payload: Segment | None = Field(description="the segment, if the payload was valid")
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
    """A dead letter as read from its store (``letter`` is None for a message that is not one)."""

    letter: DeadLetter | None
    body: str
    receipt_handle: str
    message_id: str
    sent_at: float = 0.0  # when the store accepted it (Unix seconds)
