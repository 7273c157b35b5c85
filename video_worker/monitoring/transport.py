"""kombu's SQS transport, plus SNS fanout for Celery events and remote control, and a mailbox suited to SQS.

Selected with ``broker_transport`` when ``MONITORING`` is on (see
``video_worker.celery_app.celery_conf``); the broker URL stays ``sqs://``
and task messages travel exactly as with kombu's own transport. Fanout
exchanges become SNS topics that deliver into the subscribed SQS queues
(kombu 5.7's ``kombu/transport/SQS/SNS.py``). ``Control`` is the app's
remote-control client (``control_cls``) with ``Mailbox``, whose queue names
suit SQS. Each override names the kombu or Celery code it works around;
the members they rely on are listed in ``worker/transport.py``
``MEMBERS`` with the contract tests that pin them.
"""

from __future__ import annotations

import hashlib
import logging
import math
import re
import uuid
from typing import Any

from botocore.config import Config
from celery.app.control import Control as CeleryControl
from kombu.common import oid_from
from kombu.pidbox import Mailbox as KombuMailbox
from kombu.transport import SQS
from kombu.transport.SQS.exceptions import DoesNotExistQueueException

from video_worker.monitoring import leases
from video_worker.worker import transport as worker_transport

log = logging.getLogger(__name__)

#: Exchanges carried by SNS topics: Celery's events and its broadcast mailbox
#: (``event_exchange``, ``control_exchange`` + ``.pidbox``; if those settings are
#: changed, set the transport option ``sns_exchanges`` to match).
SNS_EXCHANGES = ("celeryev", "celery.pidbox")
#: ``kombu/pidbox.py`` ``Mailbox.reply_exchange_fmt`` and ``get_reply_queue``.
REPLY_EXCHANGE = re.compile(r"^reply\..+\.pidbox$")
REPLY_QUEUE = re.compile(r"\.reply\..+\.pidbox$")
#: Messages of a process's own queues are worthless after this (SQS minimum is 60).
OWNED_QUEUE_RETENTION_SECONDS = 300
SQS_MAX_NAME = 80
#: Housekeeping runs at exit too: it must not hold a shutdown up for minutes on a bad network.
HOUSEKEEPING_CLIENT = Config(connect_timeout=3, read_timeout=5, retries={"total_max_attempts": 1})


class Channel(worker_transport.Channel):
    """An SQS channel (with ``worker/transport.py``'s receive loop) whose fanout exchanges are SNS topics."""

    _drain_timeout: float | None = None

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self._owned_sqs_names: set[str] = set()
        self._closes_with_channel: set[str] = set()
        super().__init__(*args, **kwargs)
        self.sns_exchanges = frozenset(self.transport_options.get("sns_exchanges", SNS_EXCHANGES))

    #: Always on: ``SQS.Channel.supports_fanout`` is a property reading the
    #: ``supports_fanout`` transport option (default off). With it,
    #: ``kombu/transport/virtual/exchange.py`` ``FanoutExchange.deliver`` publishes
    #: to SNS (``SQS.Channel._put_fanout``) and ``SQS.Channel.basic_consume``
    #: subscribes a queue bound to a fanout exchange to the exchange's topic.
    supports_fanout = True

    def exchange_declare(self, exchange: Any = None, type: Any = "direct", durable: Any = False,
                         auto_delete: Any = False, arguments: Any = None, nowait: Any = False,
                         passive: Any = False) -> Any:
        """Declare Celery's event exchange as fanout.

        ``celery/events/event.py`` ``get_exchange()`` makes ``celeryev`` a topic
        exchange unless the transport is redis or gcpubsub. A topic exchange is
        routed by ``kombu/transport/virtual/base.py`` ``Channel._lookup`` through
        the bindings of this process only, so events never reached Flower.
        Receivers bind with ``#`` (everything), so fanout loses nothing.
        """
        if exchange in self.sns_exchanges:
            type = "fanout"
        return super().exchange_declare(exchange, type, durable, auto_delete, arguments, nowait, passive)

    def canonical_queue_name(self, queue_name: str) -> str:
        """Keep names within SQS's 80 characters, deterministically.

        ``SQS.Channel.canonical_queue_name`` only adds the prefix; a mailbox named
        after a long hostname (``kombu/pidbox.py`` ``Mailbox.get_queue``) or a reply
        queue under a long prefix would exceed the limit and fail to be created.
        """
        name: str = super().canonical_queue_name(queue_name)
        if len(name) <= SQS_MAX_NAME or name.endswith(".fifo"):
            return name
        digest = hashlib.sha1(name.encode()).hexdigest()[:10]
        return f"{name[:SQS_MAX_NAME - 40]}-{digest}-{name[-28:]}"  # keeps the "-celery-pidbox-..." end

    def queue_declare(self, queue: str | None = None, passive: bool = False, **kwargs: Any) -> Any:
        """Own the process's ``auto_delete``/``exclusive`` queues (mailbox, event and reply queues).

        ``kombu/transport/virtual/base.py`` ``Channel.queue_declare`` ignores both
        flags and an SQS queue lives until deleted: ``leases.Housekeeper`` leases
        such queues, deletes them when this process is done and expires them if
        it dies. Mailbox and event queues go when their channel closes; reply
        queues are reused until exit (see ``after_reply_message_received``).
        """
        owned = not passive and bool(kwargs.get("auto_delete") or kwargs.get("exclusive"))
        if owned and queue:
            self._owned_sqs_names.add(self.canonical_queue_name(queue))
        result = super().queue_declare(queue, passive, **kwargs)
        if owned and queue:
            name = self.canonical_queue_name(queue)
            self._housekeeper().adopt(name, self._resolve_queue_url(queue))
            if not REPLY_QUEUE.search(str(queue)):
                self._closes_with_channel.add(name)
        return result

    def _create_queue(self, queue_name: str, attributes: dict[str, str]) -> Any:
        """Give owned queues a short retention: ``SQS.Channel._create_queue`` uses one set for all."""
        if queue_name in self._owned_sqs_names:
            attributes["MessageRetentionPeriod"] = str(OWNED_QUEUE_RETENTION_SECONDS)
        return super()._create_queue(queue_name, attributes)

    def basic_consume(self, queue: str, no_ack: bool, callback: Any, consumer_tag: Any, *args: Any,
                      **kwargs: Any) -> Any:
        """Record the SNS subscription ``SQS.Channel.basic_consume`` made, to undo it on release."""
        result = super().basic_consume(queue, no_ack, callback, consumer_tag, *args, **kwargs)
        name = self.canonical_queue_name(queue)
        if name in self._owned_sqs_names:
            for exchange, _, _ in self.state.queue_bindings(queue):
                if self._exchange_is_fanout(exchange):
                    arn = self.fanout.subscriptions.subscribe_queue(queue_name=queue, exchange_name=exchange)
                    self._housekeeper().subscribed(name, arn)
        return result

    def _lookup(self, exchange: str, routing_key: str, default: Any = None) -> Any:
        """Route a remote-control reply to the caller's reply queue.

        The caller binds its reply queue to ``reply.celery.pidbox`` in its own
        process; ``kombu/transport/virtual/base.py`` ``Channel._lookup`` in the
        worker knows no such binding and drops the reply. ``kombu/pidbox.py``
        ``Mailbox.get_reply_queue`` names the queue ``<routing key>.<exchange>``.
        """
        queues = super()._lookup(exchange, routing_key, default)
        if not queues and exchange and REPLY_EXCHANGE.match(exchange):
            return [f"{routing_key}.{exchange}"]
        return queues

    def _put(self, queue: str, message: Any, **kwargs: Any) -> Any:
        """Never create a reply queue: ``SQS.Channel._put`` creates any queue it sends to.

        A reply that arrives after its caller left is dropped instead of leaving
        a new queue behind.
        """
        if not REPLY_QUEUE.search(queue):
            return super()._put(queue, message, **kwargs)
        try:
            self._resolve_queue_url(queue)
            return super()._put(queue, message, **kwargs)
        except DoesNotExistQueueException:
            log.debug("monitoring: reply queue %s is gone; reply dropped", queue)
        except Exception as exc:
            if not leases.is_missing_queue(exc):
                raise
            self._queue_cache.pop(self.canonical_queue_name(queue), None)
            log.debug("monitoring: reply queue %s is gone; reply dropped", queue)
        return None

    def after_reply_message_received(self, queue: str) -> None:
        """Keep the reply queue for the next call.

        ``kombu/transport/virtual/base.py`` ``Channel.after_reply_message_received``
        deletes it after every call (``kombu/pidbox.py`` ``Mailbox._collect``).
        Our ``Mailbox`` (below) names one reply queue per process
        and thread, and SQS refuses for 60 s to create a queue of a name just
        deleted. The housekeeper deletes it at exit.
        """

    def drain_events(self, timeout: float | None = None, callback: Any = None, **kwargs: Any) -> Any:
        """Remember the caller's timeout for ``_receive_message`` (a synchronous drain only)."""
        self._drain_timeout = timeout
        return super().drain_events(timeout=timeout, callback=callback, **kwargs)

    def _receive_message(self, queue: str, max_number_of_messages: int = 1,
                         wait_time_seconds: int | None = None) -> Any:
        """Long-poll a reply queue no longer than the caller waits.

        ``SQS.Channel._get_bulk`` waits ``wait_time_seconds`` whatever the timeout
        given to ``drain_events``; ``kombu/pidbox.py`` ``Mailbox._collect`` drains
        until a poll comes back empty, so ``celery inspect`` (1 s timeout) would
        take ``BROKER_WAIT_TIME_SECONDS`` at least.
        """
        if self._drain_timeout and self.wait_time_seconds and REPLY_QUEUE.search(queue):
            wait_time_seconds = max(1, min(self.wait_time_seconds, math.ceil(self._drain_timeout)))
        return super()._receive_message(queue, max_number_of_messages, wait_time_seconds)

    def _delete_message(self, queue_name: str, message: dict[str, Any]) -> None:
        """Delete a no-ack message with the blocking client when there is no event loop.

        ``SQS.Channel._delete_message`` uses the asynchronous client, whose
        constructor (``kombu/asynchronous/http/base.py`` ``BaseClient.__init__``)
        needs the worker's hub: in Flower's event receiver or in ``celery
        inspect`` it raised ``AttributeError: 'NoneType' object has no attribute
        'on_close'`` on the first message.
        """
        if self.hub is not None:
            return super()._delete_message(queue_name, message)  # type: ignore[no-any-return]
        self.sqs(queue=queue_name).delete_message(
            QueueUrl=self._new_queue(queue_name), ReceiptHandle=message["ReceiptHandle"]
        )
        return None

    def close(self) -> None:
        """Delete this channel's mailbox and event queues once its consumers are cancelled."""
        closing = sorted(self._closes_with_channel)
        self._closes_with_channel.clear()
        keeper = self._housekeeper() if closing and self.connection is not None else None
        super().close()
        if keeper is not None:
            for name in closing:
                keeper.release(name)

    def _housekeeper(self) -> leases.Housekeeper:
        key = (str(self.endpoint_url), str(self.region), str(self.queue_name_prefix))
        return leases.housekeeper(key, self._new_housekeeper)

    def _new_housekeeper(self) -> leases.Housekeeper:
        clients = {service: self._new_boto_client(
            service=service, region=self.region, access_key_id=self.conninfo.userid,
            secret_access_key=self.conninfo.password, config=HOUSEKEEPING_CLIENT,
        ) for service in ("sqs", "sns")}
        topics = [self.canonical_queue_name(exchange) for exchange in sorted(self.sns_exchanges)]
        return leases.Housekeeper(clients["sqs"], clients["sns"], self.queue_name_prefix, topics)


class Transport(worker_transport.Transport):
    """``worker/transport.py``'s ``Transport`` that also implements fanout exchanges.

    ``celery/worker/consumer/control.py`` ``Control.include_if`` starts the
    worker's remote-control consumer only if the transport lists ``fanout`` in
    ``implements.exchange_type``; ``SQS.Transport`` lists only ``direct``.
    """

    Channel = Channel
    implements = SQS.Transport.implements.extend(exchange_type=frozenset(["direct", "fanout"]))


class Mailbox(KombuMailbox):
    """A mailbox with one reply queue per process and thread, and a new worker queue per start.

    With any other transport the two changes are harmless: queue names differ, behaviour does not.
    """

    @property
    def oid(self) -> str:
        """The reply routing key, and reply queue name: one per process and thread.

        ``kombu/pidbox.py`` ``Mailbox.oid`` is ``oid_from(self)``, and
        ``celery/app/control.py`` ``Control.broadcast`` copies the mailbox for
        every call (``self.mailbox(conn)``), so each call named a new reply
        queue: a CreateQueue and a DeleteQueue per ``inspect``, and a name
        reused within 60 s of its deletion (the copies' ``id()`` repeat), which
        SQS refuses. The queue is kept between calls and deleted at exit
        (``Channel.after_reply_message_received`` above).
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
    """``celery.app.control.Control`` (the app's ``control_cls``) using ``Mailbox`` above.

    ``celery/app/control.py`` ``Control.__init__`` builds its mailbox from the class attribute ``Mailbox``;
    the worker's remote-control consumer takes it from the app (``app.control.mailbox``).
    """

    Mailbox = Mailbox
