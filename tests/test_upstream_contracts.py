"""Contract tests: the Celery/kombu behaviours this project relies on or works around, one test each.

A Celery or kombu upgrade that changes one of them fails here, in one place,
naming the module of ours that depends on it.
"""

from __future__ import annotations

from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any

import boto3
import pytest
from kombu import Connection
from kombu.asynchronous.aws.connection import AsyncAWSQueryConnection
from moto import mock_aws

from video_worker import receiving


@pytest.fixture
def sqs(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.setenv(key, "testing")
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    with mock_aws():
        yield boto3.client("sqs", region_name="us-east-1")


def test_kombu_async_client_turns_a_5xx_receive_into_an_empty_list() -> None:
    """Why ``receiving.Channel._on_messages_ready`` checks for a non-dict (kombu 5.7, ``_on_list_ready``)."""
    connection = AsyncAWSQueryConnection.__new__(AsyncAWSQueryConnection)
    connection.sqs_connection = boto3.client("sqs", region_name="us-east-1", aws_access_key_id="k",
                                             aws_secret_access_key="s")
    response = SimpleNamespace(status=500, reason="Internal Server Error", read=lambda: b"")
    assert connection._on_list_ready(None, [], "ReceiveMessage", response) == []
    with pytest.raises(receiving.ReceiveFailed):
        receiving.Channel._on_messages_ready(SimpleNamespace(), "q", "q", [])  # type: ignore[arg-type]


def test_kombu_sqs_reject_with_requeue_hides_the_message_again_and_never_deletes_it(sqs: Any) -> None:
    """``Reject(requeue=True)`` (``failures``, ``affinity``, ``consumer``) goes through
    ``SQS.Channel.basic_reject`` → ``_restore`` → ``_put`` with ``redelivered``: a ChangeMessageVisibility."""
    with Connection("sqs://", transport=receiving.Transport,
                    transport_options={"region": "us-east-1", "wait_time_seconds": 0}) as conn:
        channel = conn.channel()
        channel.queue_declare("contract")
        channel.basic_publish(channel.prepare_message(b"{}", content_type="application/json"),
                              exchange="", routing_key="contract")
        message = channel.basic_get("contract", no_ack=False)
        assert message is not None
        message.reject(requeue=True)  # visible again after wait_time_seconds (0 here)
        again = channel.basic_get("contract", no_ack=False)
        assert again is not None and again.body == message.body, "it comes again"
        url = sqs.get_queue_url(QueueName="contract")["QueueUrl"]
        attrs = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]
        assert int(attrs["ApproximateNumberOfMessages"]) + int(attrs["ApproximateNumberOfMessagesNotVisible"]) == 1
