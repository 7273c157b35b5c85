"""Contract tests: the Celery/kombu behaviours this project relies on or works around, one test each.

A Celery or kombu upgrade that changes one of them fails here, in one place,
naming the module of ours that depends on it.
"""

from __future__ import annotations

import inspect
import json
from collections.abc import Iterator
from contextlib import contextmanager
from types import SimpleNamespace
from typing import Any
from unittest.mock import ANY

import boto3
import pytest
from celery import Celery
from celery.canvas import Signature
from celery.exceptions import Reject
from celery.worker.consumer import Consumer as CeleryConsumer
from celery.worker.request import Request as CeleryRequest
from kombu import Connection, Message
from kombu.asynchronous.aws.connection import AsyncAWSQueryConnection
from kombu.transport import SQS
from kombu.utils.imports import symbol_by_name
from moto import mock_aws

from video_worker.celery_app import create_app
from video_worker.settings import Settings
from video_worker.worker import consumer, upstream
from video_worker.worker import transport as worker_transport


@pytest.fixture
def sqs(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.setenv(key, "testing")
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    with mock_aws():
        yield boto3.client("sqs", region_name="us-east-1")


@contextmanager
def one_message(queue: str) -> Iterator[tuple[Any, Any]]:
    """(channel, message): one JSON message published to ``queue`` and received, not acknowledged."""
    with Connection("sqs://", transport=worker_transport.Transport,
                    transport_options={"region": "us-east-1", "wait_time_seconds": 0}) as conn:
        channel = conn.channel()
        channel.queue_declare(queue)
        channel.basic_publish(channel.prepare_message(b"{}", content_type="application/json"),
                              exchange="", routing_key=queue)
        message = channel.basic_get(queue, no_ack=False)
        assert message is not None
        yield channel, message


def _depth(sqs: Any, queue: str) -> int:
    url = sqs.get_queue_url(QueueName=queue)["QueueUrl"]
    attrs = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]
    return int(attrs["ApproximateNumberOfMessages"]) + int(attrs["ApproximateNumberOfMessagesNotVisible"])


def test_kombu_async_client_turns_a_5xx_receive_into_an_empty_list() -> None:
    """Why ``worker_transport.Channel._on_messages_ready`` checks for a non-dict (kombu 5.7, ``_on_list_ready``)."""
    connection = AsyncAWSQueryConnection.__new__(AsyncAWSQueryConnection)
    connection.sqs_connection = boto3.client("sqs", region_name="us-east-1", aws_access_key_id="k",
                                             aws_secret_access_key="s")
    response = SimpleNamespace(status=500, reason="Internal Server Error", read=lambda: b"")
    assert connection._on_list_ready(None, [], "ReceiveMessage", response) == []
    with pytest.raises(worker_transport.ReceiveFailed):
        worker_transport.Channel._on_messages_ready(SimpleNamespace(), "q", "q", [])  # type: ignore[arg-type]


def test_kombu_sqs_reject_with_requeue_hides_the_message_again_and_never_deletes_it(sqs: Any) -> None:
    """``Reject(requeue=True)`` (``lifecycle``, ``dead_letters``, ``affinity``, ``consumer``) goes through
    ``SQS.Channel.basic_reject`` → ``_restore`` → ``_put`` with ``redelivered``: a ChangeMessageVisibility."""
    with one_message("contract") as (channel, message):
        message.reject(requeue=True)  # visible again after wait_time_seconds (0 here)
        again = channel.basic_get("contract", no_ack=False)
        assert again is not None and again.body == message.body, "it comes again"
        assert _depth(sqs, "contract") == 1


def test_kombu_sqs_reject_without_requeue_deletes_the_message(sqs: Any) -> None:
    """Why no failure path ever rejects without requeue (``lifecycle``; Celery's ``Task.retry`` would)."""
    with one_message("contract-drop") as (_, message):
        message.reject(requeue=False)
        assert _depth(sqs, "contract-drop") == 0


def test_kombu_sqs_messages_carry_the_receive_count_and_queue_url(sqs: Any) -> None:
    """``consumer.receive_count`` (poison bound) and ``visibility_heartbeat.held_messages`` read ``delivery_info``:
    kombu's ``SQS.Channel._envelope_payload`` puts the raw SQS message (with ``ApproximateReceiveCount``,
    fetched by default) and the queue URL there."""
    with one_message("contract-count") as (_, message):
        assert consumer.receive_count(message) == 1
        assert message.delivery_info["sqs_queue"].endswith("/contract-count") and message.delivery_tag


def test_celery_task_retry_turns_a_failed_publish_into_a_reject_without_requeue() -> None:
    """Why ``lifecycle`` publishes its retries itself: ``celery/app/task.py`` ``Task.retry`` catches the publish
    error and raises ``Reject(requeue=False)``, which kombu's SQS transport turns into a delete."""
    app = Celery("contract", broker="memory://", set_as_current=False)

    @app.task(bind=True)
    def flaky(self: Any) -> None:
        raise AssertionError("not called")

    def refuse(*args: Any, **kwargs: Any) -> None:
        raise ConnectionError("broker down")

    flaky.push_request(id="t-1", retries=0, is_eager=False, called_directly=False, delivery_info={})
    try:
        from unittest import mock

        with mock.patch.object(Signature, "apply_async", refuse), pytest.raises(Reject) as rejected:
            flaky.retry(exc=RuntimeError("503"), countdown=0, max_retries=5)
    finally:
        flaky.pop_request()
    assert rejected.value.requeue is False


def test_celery_lets_a_body_of_the_wrong_shape_escape_as_a_value_error() -> None:
    """Why ``consumer.Consumer`` screens messages: ``celery/worker/request.py`` ``Request`` unpacks the body
    as ``(args, kwargs, embed)``; ``Consumer.create_task_handler`` catches only InvalidTaskError,
    ContentDisallowed and DecodeError, so this reached the worker as an unrecoverable error."""
    app = Celery("contract", broker="memory://", set_as_current=False)
    message = Message(body=json.dumps({"a": 1}).encode(), content_type="application/json",
                      content_encoding="utf-8", headers={"task": "t", "id": "1"}, accept={"application/json"})
    with pytest.raises(ValueError, match="not enough values to unpack"):
        CeleryRequest(message, app=app, task=app.tasks["celery.backend_cleanup"])


def test_celery_installs_the_consumer_named_by_worker_consumer() -> None:
    """``worker/app.py`` sets ``worker_consumer``; ``celery/worker/worker.py`` ``WorkController.setup_defaults``
    reads it, so the worker's task messages go through ``consumer.Consumer``."""
    app = create_app(Settings(input_bucket_name="in-b", output_bucket_name="out-b",
                              segment_completions_table_name="tbl", celery_broker_url="memory://"))
    worker = app.WorkController(pool_cls="solo", concurrency=1, without_heartbeat=True, without_mingle=True,
                                without_gossip=True)
    assert worker.consumer_cls is consumer.Consumer or symbol_by_name(worker.consumer_cls) is consumer.Consumer


def test_celery_signature_from_request_keeps_the_task_id_and_the_chain() -> None:
    """``lifecycle`` re-publishes a retry (``upstream.retry_signature``) with ``Task.signature_from_request``: same
    task id, the rest of the chain."""
    app = Celery("contract", broker="memory://", set_as_current=False)

    @app.task(bind=True)
    def stage(self: Any, payload: Any) -> None:
        raise AssertionError("not called")

    rest = [dict(app.signature("next"))]
    stage.push_request(id="t-7", retries=1, chain=rest, delivery_info={"routing_key": "tasks", "exchange": ""})
    try:
        sig = stage.signature_from_request(stage.request, ({"x": 1},), {}, retries=2, delay_seconds=4)
    finally:
        stage.pop_request()
    assert sig.options["task_id"] == "t-7" and sig.options["chain"] == rest and sig.options["retries"] == 2
    assert sig.options["delay_seconds"] == 4 and sig.options["queue"] == "tasks"


def test_kombu_names_the_hooks_the_transport_overrides() -> None:
    """``worker/transport.py`` and ``monitoring/transport.py`` override these ``SQS.Channel`` methods and call
    them with these parameters; ``monitoring/batching.py`` calls the consumer's ``_flush_events``."""
    expected = {
        "_schedule_queue": ["self", "queue"], "_on_messages_ready": ["self", "queue", "qname", "messages"],
        "_loop1": ["self", "queue", "messages_fetched"], "_get_bulk_async": ["self", "queue", "callback"],
        "_message_to_python": ["self", "message", "queue_name", "q_url"],
        "_new_boto_client": ["self", "service", "region", "access_key_id", "secret_access_key", "session_token",
                             "config"],
        "_receive_message": ["self", "queue", "max_number_of_messages", "wait_time_seconds"],
        "_delete_message": ["self", "queue_name", "message"], "_create_queue": ["self", "queue_name", "attributes"],
        "basic_ack": ["self", "delivery_tag", "multiple"], "basic_reject": ["self", "delivery_tag", "requeue"],
    }
    for name, parameters in expected.items():
        assert list(inspect.signature(getattr(SQS.Channel, name)).parameters) == parameters, name
    assert callable(getattr(CeleryConsumer, "_flush_events", None))


def test_celery_runs_a_task_through_what_it_assigned_to___trace__() -> None:
    """``upstream.TracedTask``: Celery's consumer (and prefork children) assign the task's tracer (``build_tracer``)
    to ``task.__trace__``; ``fast_trace_task`` calls it and unpacks ``trace_ok_t`` (retval, info, runtime, retstr),
    ``info`` None on success and ``Info("REJECTED", Reject)`` for a ``Reject`` (``upstream.Traced``)."""
    from celery.app.trace import build_tracer, fast_trace_task

    after: list[str] = []

    class Recorded(upstream.TracedTask):
        def around_trace(self, task_id: str, trace: Any) -> Any:
            traced = trace()
            after.append(task_id)
            return traced

    app = Celery("contract", broker="memory://", set_as_current=False)

    @app.task(base=Recorded, name="contract.stage")
    def stage(value: int) -> int:
        if value < 0:
            raise Reject("refused", requeue=True)
        return value * 2

    stage.__trace__ = build_tracer(stage.name, stage, app.loader, "host", app=app)
    localized = (app.tasks, {"application/json"}, "host")
    failed, retstr, _ = fast_trace_task(stage.name, "t-1", {"id": "t-1"}, ((21,), {}, None), None, None,
                                        _loc=localized)
    assert (failed, retstr, after) == (0, "42", ["t-1"])
    traced = upstream.trace(app, stage, "t-2", (-1,), {"id": "t-2"})
    assert traced.state == "REJECTED" and isinstance(traced.error, Reject)
    assert upstream.trace(app, stage, "t-3", (2,), {"id": "t-3"}) == upstream.Traced(None, None, ANY, "4")
    assert after == ["t-1"], "the tracer Celery built does not run what follows (TracedTask's does)"


def test_celery_inspect_and_revoke_use_the_worker_state_sets_affinity_joins() -> None:
    """``upstream.listed_as_active``/``is_revoked``: ``inspect active`` lists ``worker_state.active_requests`` by
    ``.info()`` (``Request.info``'s shape); ``control revoke`` adds ids to ``worker_state.revoked`` and skips (does
    not mark) an active request."""
    from celery.worker import control
    from celery.worker import state as worker_state

    stage = upstream.ActiveStage("t-active", "video_worker.infer", ({"job_id": "j"},), "h", {}, lambda _: None)
    state = SimpleNamespace(tset=set, app=Celery("contract", broker="memory://", set_as_current=False))
    try:
        with upstream.listed_as_active(stage):
            [listed] = control.active(state)
            assert listed["id"] == "t-active" and listed["name"] == "video_worker.infer"
            assert set(listed) >= set(CeleryRequest.info.__code__.co_names) & set(listed)
            control.revoke(state, "t-active")
            control.revoke(state, "t-later")
        assert upstream.is_revoked("t-active") and upstream.is_revoked("t-later")
        assert control.active(state) == []
    finally:
        worker_state.revoked.clear()


def test_celery_threads_see_the_default_app_not_the_one_made_current() -> None:
    """``worker/context.py`` ``ProcessStart`` makes the worker's app the default: Celery's current app is per
    thread, and what looks tasks up by name (OpenTelemetry's publish spans: ``celery.registry.tasks``) from a
    thread of the threads pool finds the default app's."""
    import threading

    from celery import current_app

    app = Celery("contract-current", broker="memory://", set_as_current=False)
    app.set_current()
    seen: list[Any] = []
    thread = threading.Thread(target=lambda: seen.append(current_app._get_current_object()))
    thread.start()
    thread.join()
    assert seen[0] is not app


def test_celery_names_the_worker_hooks_json_logs_override() -> None:
    """``worker/logs.py``: ``app.Worker`` is ``subclass_with_self`` of ``celery.apps.worker.Worker`` whose
    ``on_before_init``/``emit_banner``/``startup_info(artlines=)`` it overrides or calls; Celery's shutdown
    notices are printed by the module's ``safe_say`` (looked up by name when called)."""
    from celery.apps import worker as celery_worker_app

    assert list(inspect.signature(celery_worker_app.Worker.on_before_init).parameters)[:2] == ["self", "quiet"]
    assert callable(celery_worker_app.Worker.emit_banner)
    assert "artlines" in inspect.signature(celery_worker_app.Worker.startup_info).parameters
    nested = [c for c in celery_worker_app._shutdown_handler.__code__.co_consts if hasattr(c, "co_names")]
    assert any("safe_say" in code.co_names for code in nested), "the signal handler calls safe_say by name"
    app = create_app(Settings(input_bucket_name="in-bucket", output_bucket_name="out-bucket",
                              segment_completions_table_name="completions"))
    from video_worker.worker.logs import Worker

    assert issubclass(app.Worker, Worker) and issubclass(app.Worker, celery_worker_app.Worker)


def test_celery_publishes_request_chain_after_the_task_unless_it_is_cleared() -> None:
    """``upstream.take_chain``: Celery's tracer publishes what is left in ``request.chain`` once the task body
    returns (``celery/app/trace.py``); chain affinity takes it (and a skipped segment stops it) by clearing it."""
    from celery.app.trace import build_tracer

    app = Celery("contract", broker="memory://", set_as_current=False)
    taken: list[list[dict[str, Any]]] = []

    @app.task(bind=True, name="contract.first")
    def first(self: Any, take: bool) -> int:
        if take:
            taken.append(upstream.take_chain(self.request))
        return 1

    def published(take: bool) -> list[str]:
        rest = [dict(app.signature("contract.next").set(task_id=f"next-{take}"))]
        build_tracer(first.name, first, app.loader, "host", app=app)(
            f"t-{take}", (take,), {}, {"id": f"t-{take}", "chain": rest, "delivery_info": {}})
        names = []
        with app.connection_for_read() as conn:
            while (message := conn.default_channel.basic_get("celery", no_ack=True)) is not None:
                names.append(message.headers["task"])
        return names

    assert published(False) == ["contract.next"]
    assert published(True) == [] and [step["task"] for step in taken[0]] == ["contract.next"]


def test_celery_routes_a_task_name_to_a_queue_and_lists_the_consumed_ones() -> None:
    """``upstream.queue_of``/``consumes``/``consumed_queues``: ``app.amqp.router.route(options, name)`` returns the
    ``queue`` a task goes to; ``app.amqp.queues.consume_from`` maps the queues a worker consumes by name."""
    app = Celery("contract", broker="memory://", set_as_current=False)
    app.conf.task_default_queue = "tasks"
    assert upstream.queue_of(app, "any.task", {}) == "tasks"
    assert upstream.queue_of(app, "any.task", {"queue": "gpu"}) == "gpu"
    assert upstream.consumes(app, "tasks") and not upstream.consumes(app, "gpu")
    assert [queue.name for queue in upstream.consumed_queues(app)] == ["tasks"]


def test_celery_worker_state_requests_holds_the_reserved_requests_by_id() -> None:
    """``upstream.held_requests`` (``steps/visibility_heartbeat.py``): ``celery/worker/state.py`` ``task_reserved`` puts every request
    the worker holds, reserved or running, in ``state.requests`` by id, until ``task_ready``."""
    from celery.worker import state as worker_state

    class Held:  # a request: weak-referenceable, with an id
        id = "t-held"

    request = Held()
    worker_state.task_reserved(request)
    try:
        assert request in upstream.held_requests()
    finally:
        worker_state.task_ready(request)
    assert request not in upstream.held_requests()


def test_celery_event_buffering_hooks_batching_replaces() -> None:
    """``upstream.flush_on_timer`` (``monitoring/batching.py``): the worker's dispatcher buffers task events when
    ``buffer_group`` is set, flushes at ``buffer_limit`` or calls ``on_send_buffered`` (the consumer's flush on
    the loop's next turn); the consumer's ``_flush_events`` flushes it."""
    from celery.events.dispatcher import EventDispatcher

    app = Celery("contract", broker="memory://", set_as_current=False)
    calls: list[str] = []
    with app.connection_for_write() as conn:
        dispatcher = EventDispatcher(conn, hostname="h", enabled=True, buffer_group=["task"], buffer_limit=24,
                                     on_send_buffered=lambda: calls.append("next turn"))
        c = SimpleNamespace(event_dispatcher=dispatcher, _flush_events=lambda: calls.append("flushed"))
        dispatcher.send("task-received", uuid="1")
        assert calls == ["next turn"]
        flush = upstream.flush_on_timer(c, 100)
        assert flush is not None and dispatcher.buffer_limit == 100
        dispatcher.send("task-started", uuid="1")
        assert calls == ["next turn"], "no flush on the next turn any more"
        flush()
        assert calls[-1] == "flushed"
        assert upstream.flush_on_timer(SimpleNamespace(event_dispatcher=None), 100) is None
    assert callable(getattr(CeleryConsumer, "_flush_events", None))


def test_celery_consumer_hooks_the_screening_overrides() -> None:
    """``upstream.HookedConsumer`` (``consumer.Consumer``) overrides these ``Consumer`` methods, with these
    parameters; Celery calls them for unknown, invalid and undecodable messages."""
    expected = {"create_task_handler": ["self", "promise"], "on_unknown_message": ["self", "body", "message"],
                "on_unknown_task": ["self", "body", "message", "exc"],
                "on_invalid_task": ["self", "body", "message", "exc"], "on_decode_error": ["self", "message", "exc"]}
    for name, parameters in expected.items():
        assert list(inspect.signature(getattr(CeleryConsumer, name)).parameters) == parameters, name


def test_celery_current_task_proxy_gives_the_task_object() -> None:
    """``upstream.current_task_object`` (``worker/logs.py``): ``celery.current_task`` is a proxy, false outside a
    task, whose ``_get_current_object`` is the running task."""
    app = Celery("contract", broker="memory://", set_as_current=False)
    seen: list[Any] = []

    @app.task(bind=True, name="contract.current")
    def current(self: Any) -> None:
        seen.append(upstream.current_task_object() is self)

    assert upstream.current_task_object() is None
    current.apply()
    assert seen == [True]


def test_celery_worker_names_its_pool_class_and_time_limit() -> None:
    """``upstream.is_prefork``/``hard_time_limit``: a ``WorkController`` holds its pool class (``pool_cls``, in
    ``celery.concurrency.prefork`` for prefork) and ``--time-limit`` (``time_limit``)."""
    app = create_app(Settings(input_bucket_name="in-b", output_bucket_name="out-b",
                              segment_completions_table_name="tbl", celery_broker_url="memory://"))
    solo = app.WorkController(pool_cls="solo", concurrency=1, without_heartbeat=True, without_mingle=True,
                              without_gossip=True, time_limit=30)
    assert not upstream.is_prefork(solo) and upstream.hard_time_limit(solo) == 30.0
    prefork = app.WorkController(pool_cls="prefork", concurrency=1, without_heartbeat=True, without_mingle=True,
                                 without_gossip=True)
    assert upstream.is_prefork(prefork) and upstream.hard_time_limit(prefork) == 0.0


def test_kombu_sqs_channel_state_the_transports_read(sqs: Any) -> None:
    """``worker/transport.py``: ``SQS.Channel`` keeps the consumed queues in ``_active_queues``, their callbacks in
    ``connection._callbacks``, queue URLs in ``_queue_cache`` (``_resolve_queue_url``), and ``_new_queue`` returns
    a queue's URL, creating it if missing (``worker_transport.queue_url``)."""
    with one_message("contract-state") as (channel, _):
        url = worker_transport.queue_url(channel, "contract-state")
        assert url.endswith("/contract-state") and channel._resolve_queue_url("contract-state") == url
        assert channel._queue_cache[channel.canonical_queue_name("contract-state")] == url
        channel.basic_consume("contract-state", no_ack=False, callback=lambda message: None, consumer_tag="t")
        assert "contract-state" in channel._active_queues
        assert callable(channel.connection._callbacks["contract-state"])


def test_kombu_sqs_fanout_members_monitoring_uses() -> None:
    """``monitoring/transport.py``: ``SQS.Channel._exchange_is_fanout(name)``, its ``fanout`` property whose
    ``subscriptions.subscribe_queue(queue_name=, exchange_name=)`` subscribes a queue to the topic, and the
    virtual channel's ``state.queue_bindings(queue)``."""
    from kombu.transport.SQS.SNS import _SnsSubscription
    from kombu.transport.virtual.base import BrokerState

    assert list(inspect.signature(SQS.Channel._exchange_is_fanout).parameters) == ["self", "exchange_name"]
    assert isinstance(SQS.Channel.fanout, property)
    assert list(inspect.signature(_SnsSubscription.subscribe_queue).parameters) == [
        "self", "queue_name", "exchange_name"]
    assert list(inspect.signature(BrokerState.queue_bindings).parameters) == ["self", "queue"]


def test_kombu_virtual_lookup_and_put_monitoring_overrides() -> None:
    """``monitoring/transport.py`` overrides ``Channel._lookup(exchange, routing_key, default)`` (routes a publish
    through this process's bindings) and ``SQS.Channel._put(queue, message, **kwargs)`` (creates any queue it
    sends to)."""
    from kombu.transport.virtual.base import Channel as VirtualChannel

    assert list(inspect.signature(VirtualChannel._lookup).parameters) == ["self", "exchange", "routing_key",
                                                                           "default"]
    assert list(inspect.signature(SQS.Channel._put).parameters) == ["self", "queue", "message", "kwargs"]


def test_kombu_mailbox_names_its_queues_by_oid_and_get_queue_and_celery_builds_it_from_control() -> None:
    """``monitoring/transport.py`` ``Mailbox`` overrides ``kombu.pidbox.Mailbox.oid`` (``oid_from(self)``: the
    reply queue's name and routing key) and ``get_queue(hostname)`` (a worker's mailbox queue, which the node's
    consumer declares); ``Mailbox.__call__`` copies the mailbox (``Control.broadcast`` does per call); Celery's
    ``Control`` builds ``self.mailbox`` from its class attribute ``Mailbox``."""
    from celery.app.control import Control as CeleryControl
    from kombu.common import oid_from
    from kombu.pidbox import Mailbox as KombuMailbox

    assert isinstance(inspect.getattr_static(KombuMailbox, "oid"), property)
    assert list(inspect.signature(oid_from).parameters) == ["instance", "threads"]
    mailbox = KombuMailbox("celery", type="fanout")
    assert mailbox.oid == oid_from(mailbox) and mailbox.oid != oid_from(mailbox(None))
    assert mailbox.get_reply_queue().name == f"{mailbox.oid}.reply.celery.pidbox"
    assert mailbox.get_reply_queue().routing_key == mailbox.oid

    class Renamed(KombuMailbox):
        def get_queue(self, hostname: str) -> Any:
            queue = super().get_queue(hostname)
            queue.name += ".renamed"
            return queue

    node = Renamed("celery", type="fanout").Node("w1@host")
    with Connection("memory://") as conn:
        consumer = node.Consumer(conn.default_channel)
        assert [queue.name for queue in consumer.queues] == ["w1@host.celery.pidbox.renamed"]
        consumer.close()

    app = Celery(set_as_current=False)
    control = type("Control", (CeleryControl,), {"Mailbox": Renamed})(app)
    assert type(control.mailbox) is Renamed and control.mailbox.exchange.name == "celery.pidbox"


def test_every_fenced_member_names_a_contract_test_here() -> None:
    """The fence's tables (``worker/upstream.py``, ``worker/transport.py``) name a test of this module each."""
    tests = {name for name in globals() if name.startswith("test_")}
    named = {**upstream.MEMBERS, **worker_transport.MEMBERS}
    assert {member: test for member, test in named.items() if test not in tests} == {}
