"""Celery's remote-control client with a mailbox suited to SQS queues.

Used by every ``VideoWorkerApp`` (``control_cls``). With any other transport
the two changes are harmless: queue names differ, behaviour does not.
"""

from __future__ import annotations

import uuid
from typing import Any

from celery.app.control import Control as CeleryControl
from kombu.common import oid_from
from kombu.pidbox import Mailbox as KombuMailbox


class Mailbox(KombuMailbox):
    """A mailbox with one reply queue per process and thread, and a new worker queue per start."""

    @property
    def oid(self) -> str:
        """The reply routing key, and reply queue name: one per process and thread.

        ``kombu/pidbox.py`` ``Mailbox.oid`` is ``oid_from(self)``, and
        ``celery/app/control.py`` ``Control.broadcast`` copies the mailbox for
        every call (``self.mailbox(conn)``), so each call named a new reply
        queue: a CreateQueue and a DeleteQueue per ``inspect``, and a name
        reused within 60 s of its deletion (the copies' ``id()`` repeat), which
        SQS refuses. The queue is kept between calls and deleted at exit
        (``monitoring/transport.py`` ``Channel.after_reply_message_received``).
        """
        return str(oid_from(Mailbox, threads=True))

    def get_queue(self, hostname: str) -> Any:
        """A worker's mailbox queue, named after its hostname plus a suffix of its own.

        ``kombu/pidbox.py`` ``Mailbox.get_queue`` uses the hostname only. An SQS
        queue outlives its consumer: a restarted worker would read commands
        sent to its predecessor or, if the predecessor deleted the queue on
        exit, be refused its creation for 60 s.
        """
        queue = super().get_queue(hostname)
        queue.name = f"{queue.name}.{uuid.uuid4().hex[:8]}"
        return queue


class Control(CeleryControl):
    """``celery.app.control.Control`` using ``Mailbox`` above."""

    Mailbox = Mailbox
