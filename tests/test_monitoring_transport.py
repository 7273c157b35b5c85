"""The MONITORING switch and the SQS-specific pieces that need no broker."""

from __future__ import annotations

import threading
from copy import copy

import pytest
from kombu.transport import SQS

from video_worker.celery_app import celery_conf, create_app
from video_worker.monitoring.leases import topic_arn_for
from video_worker.monitoring.transport import Mailbox, Transport
from video_worker.settings import Settings, load_settings
from video_worker.worker import transport as worker_transport

SEED = {"input_bucket_name": "in-bucket", "output_bucket_name": "out-bucket",
        "segment_completions_table_name": "completions"}
FLAGS = ("worker_enable_remote_control", "worker_send_task_events", "task_send_sent_event")


def test_monitoring_is_on_by_default_with_the_sns_transport() -> None:
    app = create_app(Settings(**SEED))
    assert all(app.conf[flag] is True for flag in FLAGS)
    assert app.conf.broker_transport == "video_worker.monitoring.transport:Transport"
    assert app.conf.broker_url == "sqs://"
    assert app.connection_for_write().get_transport_cls() is Transport


@pytest.mark.parametrize("value", ["off", "false", "0", "no"])
def test_monitoring_off_is_kombus_plain_sqs_transport(monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    """Off: kombu's SQS transport with only the receive loop hardened (no fanout, no SNS)."""
    for name, setting in SEED.items():
        monkeypatch.setenv(name.upper(), setting)
    monkeypatch.setenv("MONITORING", value)
    app = create_app(load_settings())
    assert all(app.conf[flag] is False for flag in FLAGS)
    transport = app.connection_for_write().get_transport_cls()
    assert transport is worker_transport.Transport and issubclass(transport, SQS.Transport)
    assert "fanout" not in transport.implements.exchange_type


def test_monitoring_needs_the_sqs_broker() -> None:
    conf = celery_conf(Settings(**SEED, celery_broker_url="memory://"))
    assert "broker_transport" not in conf and not any(conf[flag] for flag in FLAGS)


def test_the_transport_implements_fanout_so_celery_starts_remote_control() -> None:
    assert "fanout" in Transport.implements.exchange_type
    assert "fanout" not in SQS.Transport.implements.exchange_type


def test_one_reply_queue_per_process_and_thread() -> None:
    mailbox = Mailbox("celery", type="fanout")
    copies = [copy(mailbox) for _ in range(3)]  # what celery's Control.broadcast makes per call
    assert len({m.oid for m in copies}) == 1
    assert copies[0].get_reply_queue().name == f"{mailbox.oid}.reply.celery.pidbox"
    other: list[str] = []
    thread = threading.Thread(target=lambda: other.append(copy(mailbox).oid))
    thread.start()
    thread.join()
    assert other[0] != mailbox.oid


def test_every_worker_start_gets_a_mailbox_queue_of_its_own() -> None:
    mailbox = Mailbox("celery", type="fanout")
    first, second = (mailbox.get_queue("w1@host") for _ in range(2))
    assert first.name.startswith("w1@host.celery.pidbox.") and first.name != second.name
    assert first.exchange.name == "celery.pidbox" and first.exchange.type == "fanout"


def test_topic_arn_from_queue_arn() -> None:
    arn = topic_arn_for("arn:aws-cn:sqs:cn-north-1:123456789012:vw-w1_h-celery-pidbox-1a2b", "vw-celery-pidbox")
    assert arn == "arn:aws-cn:sns:cn-north-1:123456789012:vw-celery-pidbox"
