"""Flower and ``celery inspect``/``control`` over the SQS broker (``MONITORING``, on by default).

Celery needs fanout exchanges for events and remote control; over SQS they are
SNS topics (``transport.py``), and the per-process queues they fan out into are
cleaned up by ``leases.py``. With monitoring off the broker is kombu's plain
SQS transport: no SNS topic is created, events and remote control are off.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from video_worker.receiving import TRANSPORT as RECEIVING_TRANSPORT
from video_worker.settings import Settings

TRANSPORT = "video_worker.monitoring.transport:Transport"


def monitoring_enabled(settings: Settings) -> bool:
    return settings.monitoring and urlsplit(settings.broker_url).scheme == "sqs"


def monitoring_conf(settings: Settings) -> dict[str, Any]:
    """The Celery settings that switch events and remote control on or off."""
    enabled = monitoring_enabled(settings)
    conf: dict[str, Any] = {
        "worker_enable_remote_control": enabled,
        "worker_send_task_events": enabled,
        "task_send_sent_event": enabled,
    }
    if enabled:
        conf["broker_transport"] = TRANSPORT
    elif urlsplit(settings.broker_url).scheme == "sqs":
        conf["broker_transport"] = RECEIVING_TRANSPORT  # plain SQS, with the receive loop that survives errors
    return conf
