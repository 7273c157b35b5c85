"""kombu's SQS transport with a receive loop that survives errors: the broker transport of every process.

kombu 5.7's asynchronous SQS client hands a receive that got a 5xx or timed
out to its callback as ``[]`` (``kombu/asynchronous/aws/connection.py``
``AsyncAWSQueryConnection._on_list_ready``), and raises for other failures
(a reset connection, a 4xx). ``SQS.Channel._on_messages_ready`` then calls
``.get`` on the list: the ``AttributeError`` either stopped the worker
(``Unrecoverable error``) or killed the poll's promise chain, so the queue
was never polled again while the worker looked alive.

``Channel`` below catches every failure of a receive, logs it and polls that
queue again after a backoff (``failure_policy.ReceiveBackoff``), resetting once a
receive works. A message whose delivery to the consumer fails is logged and
left alone: SQS makes it visible again after its visibility timeout.

It also refills a freed task slot at once. With every slot held,
``SQS.Channel._schedule_queue`` re-queued itself with ``hub.call_soon`` from
the loop's own thread, which does not wake the loop: it slept in ``poll``
until the next timer or socket event (up to 1 s), and the ack that freed a
slot could run just after that check. Here a queue that finds no free slot
waits (no spinning) and the ack or reject that frees one polls it again
(``basic_ack``/``basic_reject``); a 1 s timer covers a prefetch count raised
without an ack. This replaced a 10 ms timer that kept an idle worker's loop
turning (BENCHMARKS.md, idle CPU). The monitoring transport
(``monitoring/transport.py``) extends this channel.
"""

from __future__ import annotations

import logging
from typing import Any

from botocore.config import Config
from kombu.transport import SQS
from vine import promise

from video_worker.adapters import aws
from video_worker.failure_policy import ReceiveBackoff

log = logging.getLogger(__name__)

TRANSPORT = "video_worker.worker.transport:Transport"
#: kombu's private or internal members used by this module and ``monitoring/transport.py`` (``SQS.Channel``'s
#: unless named otherwise; the one Celery member is the mailbox's hook) → the contract test that pins them
#: (``tests/test_upstream_contracts.py``).
MEMBERS: dict[str, str] = {
    **dict.fromkeys(["_schedule_queue", "_on_messages_ready", "_loop1", "_get_bulk_async", "_message_to_python",
                     "_new_boto_client", "_receive_message", "_delete_message", "_create_queue"],
                    "test_kombu_names_the_hooks_the_transport_overrides"),
    "_active_queues": "test_kombu_sqs_channel_state_the_transports_read",
    "_new_queue": "test_kombu_sqs_channel_state_the_transports_read",
    "_resolve_queue_url": "test_kombu_sqs_channel_state_the_transports_read",
    "_queue_cache": "test_kombu_sqs_channel_state_the_transports_read",
    "Connection._callbacks": "test_kombu_sqs_channel_state_the_transports_read",
    "_exchange_is_fanout": "test_kombu_sqs_fanout_members_monitoring_uses",
    "fanout.subscriptions.subscribe_queue": "test_kombu_sqs_fanout_members_monitoring_uses",
    "state.queue_bindings": "test_kombu_sqs_fanout_members_monitoring_uses",
    "_lookup": "test_kombu_virtual_lookup_and_put_monitoring_overrides",
    "_put": "test_kombu_virtual_lookup_and_put_monitoring_overrides",
    "AsyncAWSQueryConnection._on_list_ready": "test_kombu_async_client_turns_a_5xx_receive_into_an_empty_list",
    # monitoring/transport.py's Mailbox and Control (the remote-control mailbox, and Celery's hook for it)
    **dict.fromkeys(["pidbox.Mailbox.oid", "pidbox.Mailbox.get_queue", "common.oid_from",
                     "celery.app.control.Control.Mailbox"],
                    "test_kombu_mailbox_names_its_queues_by_oid_and_get_queue_and_celery_builds_it_from_control"),
}
#: How often a queue waiting for a free slot checks anyway (a prefetch count raised without an ack).
SLOT_CHECK_SECONDS = 1.0


class ReceiveFailed(Exception):
    """A ``ReceiveMessage`` of the asynchronous client that did not return messages."""


class Channel(SQS.Channel):
    """An SQS channel whose asynchronous receive loop retries failures with backoff."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self._receive_backoff: dict[str, ReceiveBackoff] = {}
        self._waiting_for_slot: set[str] = set()
        self._slot_timer: Any = None
        super().__init__(*args, **kwargs)

    def _backoff(self, queue: str) -> ReceiveBackoff:
        return self._receive_backoff.setdefault(queue, ReceiveBackoff())

    def _schedule_queue(self, queue: str) -> None:
        """``SQS.Channel._schedule_queue``, with the poll's failures routed to ``_receive_failed``.

        The next poll is scheduled by ``SQS.Channel._loop1`` when a receive
        succeeds, by ``_receive_failed`` when it does not: exactly one of them.
        """
        if queue not in self._active_queues:
            return
        if not self.qos.can_consume():
            self._wait_for_slot(queue)
            return
        callback = promise(self._loop1, (queue,), on_error=self._receive_failed)
        try:
            self._get_bulk_async(queue, callback=callback)
        except Exception as exc:  # resolving the queue URL, building the request
            self._receive_failed(queue, exc)

    def _on_messages_ready(self, queue: str, qname: str, messages: Any) -> int:
        """Deliver what a receive returned; a receive that failed (not a response) raises ``ReceiveFailed``."""
        if not isinstance(messages, dict):
            raise ReceiveFailed(f"ReceiveMessage on {qname}: server error or timeout (no response)")
        msgs = messages.get("Messages")
        if not msgs:
            return 0
        callback = self.connection._callbacks.get(qname)
        if callback is None:
            return super()._on_messages_ready(queue, qname, messages)  # type: ignore[no-any-return]
        for msg in msgs:
            try:
                callback(self._message_to_python(msg, qname, queue))
            except Exception as exc:  # not deleted: SQS hands it out again after its visibility timeout
                log.error("message %s from %s could not be delivered to the consumer: %r",
                          msg.get("MessageId", "?"), qname, exc)
        return len(msgs)

    def _loop1(self, queue: str, messages_fetched: Any = None) -> None:
        """A receive succeeded (or was not allowed to run): reset the backoff, schedule the next poll."""
        backoff = self._receive_backoff.get(queue)
        if backoff is not None:
            backoff.succeeded(f"ReceiveMessage on {queue}")
        if self.connection is not None:  # the channel may have closed while the poll was in flight
            super()._loop1(queue, messages_fetched)

    def _wait_for_slot(self, queue: str) -> None:
        """Every slot is held: poll ``queue`` again when one frees (see the module's doc)."""
        self._waiting_for_slot.add(queue)
        if self._slot_timer is None and self.hub is not None:
            self._slot_timer = self.hub.call_repeatedly(SLOT_CHECK_SECONDS, self._slot_freed)

    def _slot_freed(self) -> None:
        if not self._waiting_for_slot or not self.qos.can_consume():
            return
        waiting, self._waiting_for_slot = self._waiting_for_slot, set()
        for queue in waiting:
            self._schedule_queue(queue)

    def basic_ack(self, delivery_tag: Any, multiple: bool = False) -> None:
        """``SQS.Channel.basic_ack`` (deletes the message), then refill the slot it freed."""
        try:
            super().basic_ack(delivery_tag, multiple)
        finally:
            self._slot_freed()

    def basic_reject(self, delivery_tag: Any, requeue: bool = False) -> None:
        """``SQS.Channel.basic_reject``, then refill the slot it freed."""
        try:
            super().basic_reject(delivery_tag, requeue)
        finally:
            self._slot_freed()

    def close(self) -> None:
        if self._slot_timer is not None:
            self._slot_timer.cancel()
            self._slot_timer = None
        super().close()

    def _new_boto_client(self, service: Any, region: Any, access_key_id: Any, secret_access_key: Any,
                         session_token: Any = None, config: Any = None) -> Any:
        """``SQS.Channel._new_boto_client``, on the process's one boto3 session (``aws.new_client``).

        kombu builds a ``boto3.Session`` per client, each with its own copy of the
        service models: ≈ 8 clients in a worker (BENCHMARKS.md, memory).
        """
        client_config = Config(**(self.transport_options.get("client-config") or {}))
        if config is not None:
            client_config = client_config.merge(config)
        options: dict[str, Any] = {"use_ssl": self.is_secure if self.is_secure is not None else True}
        endpoint = self.transport_options.get(f"{service}_endpoint_url") or self.endpoint_url
        if endpoint is not None:  # the broker's, or ``sns_endpoint_url`` (``AWS_ENDPOINT_URL_SNS``) for SNS
            options["endpoint_url"] = endpoint
        return aws.new_client(service, region_name=region, aws_access_key_id=access_key_id,
                              aws_secret_access_key=secret_access_key, aws_session_token=session_token,
                              config=client_config, **options)

    def _receive_failed(self, queue: str, exc: BaseException | None = None) -> None:
        """Poll ``queue`` again after a backoff."""
        delay = self._backoff(queue).failed(f"ReceiveMessage on {queue}", exc if exc is not None else "?")
        if self.connection is not None and self.hub is not None:
            self.hub.call_later(delay, self._schedule_queue, queue)


def queue_url(channel: Any, name: str) -> str:
    """The URL of broker queue ``name`` (``SQS.Channel._new_queue`` resolves, creates if missing, and caches it)."""
    return str(channel._new_queue(name))


class Transport(SQS.Transport):
    """``SQS.Transport`` with ``Channel`` above."""

    Channel = Channel
