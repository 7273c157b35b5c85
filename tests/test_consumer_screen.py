"""``consumer.screen``: which broker messages cannot be run as tasks, and why (on real kombu messages)."""

from __future__ import annotations

import json
from typing import Any

import pytest
from kombu import Message

from video_worker.worker.consumer import raw_message, receive_count, screen

KNOWN = frozenset({"video_worker.download", "video_worker.infer", "billing.done"})
SINGLE = frozenset(n for n in KNOWN if n.startswith("video_worker."))


def _message(body: Any, *, task: str | None = "video_worker.download", content_type: str = "application/json",
             receives: int | None = 1) -> Message:
    headers = {"task": task, "id": "t-1"} if task is not None else {}
    attributes = {"ApproximateReceiveCount": str(receives)} if receives is not None else {}
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    return Message(body=raw, content_type=content_type, content_encoding="utf-8", headers=headers,
                   delivery_info={"sqs_message": {"Attributes": attributes}}, accept={"application/json"})


def test_a_well_formed_task_message_passes() -> None:
    assert screen(_message([[{"job_id": "j"}], {}, {"chain": None}]), KNOWN, SINGLE, 3) is None
    assert screen(_message([[1, 2], {"x": 1}, {}], task="billing.done"), KNOWN, SINGLE, 3) is None


@pytest.mark.parametrize("message, reason", [
    (_message({"a": 1}), "body is not [args, kwargs, embed]"),
    (_message([[{}], {}]), "body is not [args, kwargs, embed]"),
    (_message(b"not json at all"), "body is not JSON"),
    (_message([[{}], {}, {}], task=None), "no 'task' header"),
    (_message([[{}], {}, {}], task="video_worker.nope"), "unknown task 'video_worker.nope'"),
    (_message([[{}], {}, {}], content_type="application/x-python-serialize"), "is not accepted (JSON only)"),
    (_message([[{}, {}], {}, {}], task="video_worker.infer"), "takes one payload argument, got 2 positional"),
    (_message([[{}], {"extra": 1}, {}]), "got 1 positional and 1 keyword"),
    (_message([[{}], {}, {"chain": "not a list"}]), "embed.chain is not a list"),
])
def test_bad_messages_are_named(message: Message, reason: str) -> None:
    problem = screen(message, KNOWN, SINGLE, 3)
    assert problem is not None and type(problem).__name__ == "BadMessage" and reason in str(problem)


def test_a_message_whose_workers_kept_dying_is_poison() -> None:
    assert screen(_message([[{}], {}, {}], receives=3), KNOWN, SINGLE, 3) is None
    problem = screen(_message([[{}], {}, {}], receives=4), KNOWN, SINGLE, 3)
    assert type(problem).__name__ == "WorkerLost"
    assert "video_worker.download: delivered 4 times without finishing" in str(problem)


def test_the_raw_message_is_kept_for_the_dead_letter() -> None:
    message = _message({"a": 1}, receives=2)
    raw = raw_message(message)
    assert json.loads(raw["body"]) == {"a": 1} and raw["headers"]["task"] == "video_worker.download"
    assert raw["receive_count"] == receive_count(message) == 2 and raw["body_truncated"] is False
