"""The queues and SNS subscriptions of events and remote control do not pile up (real moto server)."""

from __future__ import annotations

import base64
import json
import signal
import subprocess
import sys
import time
from typing import Any

import pytest
from kombu import Connection, Exchange, Producer

from tests.support.flower import ready, start_flower
from tests.support.stack import Aws, Processes, wait_until
from video_worker.adapters.aws import make_client
from video_worker.celery_app import create_app
from video_worker.monitoring.leases import LEASE_SECONDS, LEASE_TAG, Housekeeper

pytestmark = pytest.mark.integration


def _monitoring_queues(aws: Aws) -> dict[str, str]:
    urls = aws.sqs.list_queues(QueueNamePrefix=aws.prefix).get("QueueUrls", [])
    return {u.rsplit("/", 1)[-1]: u for u in urls if "pidbox" in u or "celeryev" in u}


def _subscribed_queues(aws: Aws) -> set[str]:
    sns = make_client("sns", aws.settings().aws)
    names = set()
    for topic in sns.list_topics()["Topics"]:
        if topic["TopicArn"].rsplit(":", 1)[-1].startswith(aws.prefix):
            subs = sns.list_subscriptions_by_topic(TopicArn=topic["TopicArn"])["Subscriptions"]
            names.update(s["Endpoint"].rsplit(":", 1)[-1] for s in subs)
    return names


def _housekeeper(aws: Aws) -> Housekeeper:
    settings = aws.settings()
    topics = [f"{aws.prefix}-celeryev", f"{aws.prefix}-celery-pidbox"]
    return Housekeeper(make_client("sqs", settings.aws), make_client("sns", settings.aws), f"{aws.prefix}-", topics)


def test_queues_and_subscriptions_go_away_when_worker_flower_and_inspect_exit(aws: Aws, procs: Processes) -> None:
    worker = procs.worker("tidy")
    flower = start_flower(procs)
    wait_until(lambda: ready(worker) and flower.get("/api/workers?status=1"), 30, "worker seen by Flower")
    wait_until(lambda: flower.get("/api/workers?refresh=1"), 30, "Flower's inspect answered")
    before_ping = set(_monitoring_queues(aws))
    ping = subprocess.run([sys.executable, "-m", "celery", "-A", "video_worker", "inspect", "ping"],
                          env=procs.env(), capture_output=True, text=True, timeout=60, cwd=procs.tmp)
    assert "pong" in ping.stdout

    queues = _monitoring_queues(aws)
    mailbox = [n for n in queues if n.startswith(f"{aws.prefix}-tidy_") and n.count("pidbox") == 1]
    events = [n for n in queues if n.startswith(f"{aws.prefix}-celeryev-")]
    replies = [n for n in queues if "-reply-celery-pidbox" in n]
    assert len(mailbox) == 1 and len(events) == 1 and replies, sorted(queues)
    assert {*mailbox, *events} <= _subscribed_queues(aws)
    for url in queues.values():
        lease = float(aws.sqs.list_queue_tags(QueueUrl=url)["Tags"][LEASE_TAG])
        assert time.time() < lease <= time.time() + LEASE_SECONDS
        retention = aws.sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["MessageRetentionPeriod"])
        assert retention["Attributes"]["MessageRetentionPeriod"] == "300"
    # `inspect ping` has exited: its reply queue went with it; Flower's stay for its next calls.
    assert set(queues) == before_ping

    for proc in (worker, flower.proc):
        proc.popen.send_signal(signal.SIGTERM)
        assert proc.popen.wait(30) == 0
    wait_until(lambda: not _monitoring_queues(aws), 10, "no monitoring queue left")
    assert _subscribed_queues(aws) == set()
    assert f"{aws.prefix}-tasks" in " ".join(aws.sqs.list_queues(QueueNamePrefix=aws.prefix)["QueueUrls"])


def test_the_sweep_removes_what_a_killed_worker_left_once_its_lease_ran_out(aws: Aws, procs: Processes) -> None:
    worker = procs.worker("doomed", "-P", "solo")
    wait_until(lambda: ready(worker), 30, "worker ready")
    left = wait_until(lambda: _monitoring_queues(aws), 10, "the worker's mailbox")
    worker.popen.send_signal(signal.SIGKILL)
    worker.popen.wait(10)
    assert set(left) == set(_monitoring_queues(aws)) and set(left) <= _subscribed_queues(aws)

    keeper = _housekeeper(aws)
    assert keeper.sweep() == []  # the lease still runs: a live worker's queue is never touched
    assert keeper.sweep(now=time.time() + LEASE_SECONDS + 1) == sorted(left)
    assert _monitoring_queues(aws) == {}
    assert _subscribed_queues(aws) == set()


def test_a_reply_goes_to_the_callers_queue_and_is_dropped_if_the_caller_left(aws: Aws) -> None:
    """What a worker does with a reply: the binding of the reply queue exists only in the caller."""
    app = create_app(aws.settings())
    here = aws.sqs.create_queue(QueueName=f"{aws.prefix}-0f0e-here-reply-celery-pidbox")["QueueUrl"]
    with Connection(app.conf.broker_url, transport=app.conf.broker_transport,
                    transport_options=app.conf.broker_transport_options) as conn:
        channel: Any = conn.default_channel
        reply = Exchange("reply.celery.pidbox", type="direct")
        for key in ("0f0e-here", "0f0e-gone"):
            Producer(channel).publish({"w@h": key}, exchange=reply, routing_key=key, declare=[reply])
    urls = aws.sqs.list_queues(QueueNamePrefix=aws.prefix).get("QueueUrls", [])
    assert [u for u in urls if "0f0e" in u] == [here]
    messages = aws.sqs.receive_message(QueueUrl=here, WaitTimeSeconds=1).get("Messages", [])
    assert len(messages) == 1
    envelope = json.loads(base64.b64decode(messages[0]["Body"]))  # kombu's SQS message: base64 of JSON
    assert json.loads(base64.b64decode(envelope["body"])) == {"w@h": "0f0e-here"}


def test_long_mailbox_names_are_shortened_to_what_sqs_accepts(aws: Aws) -> None:
    app = create_app(aws.settings())
    with Connection(app.conf.broker_url, transport=app.conf.broker_transport,
                    transport_options=app.conf.broker_transport_options) as conn:
        channel: Any = conn.default_channel
        long_host = "celery@" + "ip-10-0-0-1-" * 6 + "pod"
        names = {channel.canonical_queue_name(f"{long_host}.celery.pidbox.{n}") for n in ("a1", "b2", "a1")}
        assert len(names) == 2 and all(len(n) <= 80 for n in names)
        channel.queue_declare(f"{long_host}.celery.pidbox.a1", auto_delete=True)
        assert channel.canonical_queue_name(f"{long_host}.celery.pidbox.a1") in _monitoring_queues(aws)
