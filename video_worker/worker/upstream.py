"""The fence: every private or internal Celery member the worker relies on, used here and nowhere else.

Celery offers no public hook for what these do (run a chain's next stage in
the same worker slot, list it as active, flush events on a timer, print the
shutdown notices as JSON, ...). Each member is named in ``MEMBERS`` with the
contract test in ``tests/test_upstream_contracts.py`` that pins it, so a
Celery upgrade that changes one fails there, in one place; ``pyproject.toml``
pins celery and kombu to the minor versions those tests ran on, and
``tests/test_layout.py`` checks that no other module touches them. kombu's
private members are fenced the same way in the two transport modules
(``worker/transport.py``, ``monitoring/transport.py``: ``transport.MEMBERS``).
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from celery import Task, current_task
from celery.app.trace import build_tracer
from celery.apps import worker as celery_worker_app
from celery.apps.worker import Worker as CeleryWorker
from celery.utils.saferepr import saferepr
from celery.worker import state as worker_state
from celery.worker.consumer import Consumer as CeleryConsumer

#: Celery member → the contract test that pins it (``tests/test_upstream_contracts.py``).
MEMBERS: dict[str, str] = {
    "celery.app.trace.build_tracer": "test_celery_runs_a_task_through_what_it_assigned_to___trace__",
    "celery.app.trace.trace_ok_t": "test_celery_runs_a_task_through_what_it_assigned_to___trace__",
    "celery.app.task.Task.__trace__": "test_celery_runs_a_task_through_what_it_assigned_to___trace__",
    "celery.app.task.Context.chain": "test_celery_publishes_request_chain_after_the_task_unless_it_is_cleared",
    "celery.app.task.Task.signature_from_request": "test_celery_signature_from_request_keeps_the_task_id_and_the_chain",
    "celery.app.amqp.AMQP.router.route": "test_celery_routes_a_task_name_to_a_queue_and_lists_the_consumed_ones",
    "celery.app.amqp.Queues.consume_from": "test_celery_routes_a_task_name_to_a_queue_and_lists_the_consumed_ones",
    "celery.worker.state.revoked": "test_celery_inspect_and_revoke_use_the_worker_state_sets_affinity_joins",
    "celery.worker.state.active_requests": "test_celery_inspect_and_revoke_use_the_worker_state_sets_affinity_joins",
    "celery.worker.request.Request.info": "test_celery_inspect_and_revoke_use_the_worker_state_sets_affinity_joins",
    "celery.worker.state.requests": "test_celery_worker_state_requests_holds_the_reserved_requests_by_id",
    "celery.worker.consumer.Consumer._flush_events": "test_celery_event_buffering_hooks_batching_replaces",
    "celery.events.dispatcher.EventDispatcher.on_send_buffered": "test_celery_event_buffering_hooks_batching_replaces",
    "celery.events.dispatcher.EventDispatcher.buffer_limit": "test_celery_event_buffering_hooks_batching_replaces",
    "celery.events.dispatcher.EventDispatcher.buffer_group": "test_celery_event_buffering_hooks_batching_replaces",
    "celery.worker.consumer.Consumer.create_task_handler": "test_celery_consumer_hooks_the_screening_overrides",
    "celery.worker.consumer.Consumer.on_unknown_message": "test_celery_consumer_hooks_the_screening_overrides",
    "celery.worker.consumer.Consumer.on_unknown_task": "test_celery_consumer_hooks_the_screening_overrides",
    "celery.worker.consumer.Consumer.on_invalid_task": "test_celery_consumer_hooks_the_screening_overrides",
    "celery.worker.consumer.Consumer.on_decode_error": "test_celery_consumer_hooks_the_screening_overrides",
    "celery.apps.worker.safe_say": "test_celery_names_the_worker_hooks_json_logs_override",
    "celery.apps.worker.Worker.on_before_init": "test_celery_names_the_worker_hooks_json_logs_override",
    "celery.apps.worker.Worker.emit_banner": "test_celery_names_the_worker_hooks_json_logs_override",
    "celery.apps.worker.Worker.startup_info": "test_celery_names_the_worker_hooks_json_logs_override",
    "celery.utils.threads.LocalProxy._get_current_object": "test_celery_current_task_proxy_gives_the_task_object",
    "celery.worker.WorkController.pool_cls": "test_celery_worker_names_its_pool_class_and_time_limit",
    "celery.worker.WorkController.time_limit": "test_celery_worker_names_its_pool_class_and_time_limit",
}


# The tracer: how a task's message becomes a run with its signals, states and events.
class TracedTask(Task):
    """A task whose tracer runs ``after_trace(task_id)`` once Celery's own trace (and its signals) is over.

    Celery assigns the tracer to ``task.__trace__`` (``celery/worker/consumer/consumer.py``
    ``Consumer.update_strategies``; ``celery/concurrency/prefork.py`` ``process_initializer`` in pool
    children) and calls it from ``celery/app/trace.py`` ``fast_trace_task``. Celery has no public hook after
    a trace; the property keeps Celery's as ``celery_tracer`` and gives back one that calls ``around_trace``.
    """

    celery_tracer: Any = None

    def around_trace(self, task_id: str, trace: Callable[[], Any]) -> Any:
        """Run ``trace()`` (Celery's tracer of this message); subclasses add what comes before and after."""
        return trace()

    @property
    def __trace__(self) -> Any:
        inner = self.celery_tracer
        if inner is None:
            return None

        def trace(uuid: str, args: Any, kwargs: Any, request: Any = None) -> Any:
            return self.around_trace(uuid, lambda: inner(uuid, args, kwargs, request))

        return trace

    @__trace__.setter
    def __trace__(self, tracer: Any) -> None:
        self.celery_tracer = tracer


def tracer_of(app: Any, task: Task) -> Any:
    """Celery's tracer of ``task`` in this process (``build_tracer``), without what ``TracedTask`` adds."""
    inner = getattr(task, "celery_tracer", None)
    if inner is None:
        inner = task.celery_tracer = build_tracer(task.name, task, app.loader, task.request.hostname, app=app)
    return inner


@dataclass(frozen=True)
class Traced:
    """What Celery's tracer returned (``trace_ok_t(retval, info, runtime, retstr)``), by name."""

    state: str | None  # None: succeeded; else ``Info.state``: RETRY, REJECTED, FAILURE, ...
    error: Any  # ``Info.retval``: the ``Retry``, ``Reject`` or exception
    runtime: float
    retstr: str | None

    @classmethod
    def of(cls, traced: Any) -> Traced:
        info = traced.info
        return cls(None if info is None else info.state, None if info is None else info.retval,
                   traced.runtime, traced.retstr)


def trace(app: Any, task: Task, task_id: str, args: tuple[Any, ...], request: dict[str, Any]) -> Traced:
    """Run ``task`` through Celery's tracer, as a worker runs a message's task."""
    return Traced.of(tracer_of(app, task)(task_id, args, {}, request))


def take_chain(request: Any) -> list[dict[str, Any]]:
    """The rest of the running task's chain (next step last), taken: Celery's tracer publishes
    ``request.chain`` after the task returns unless it is cleared (``celery/app/trace.py``)."""
    steps = list(request.chain or [])
    request.chain = None
    return steps


def retry_signature(task: Task, payload: Any, retries: int, delay_seconds: int) -> Any:
    """The running task again, with ``payload``: same task id, the rest of the chain, ``retries`` set."""
    return task.signature_from_request(task.request, (payload,), {}, retries=retries, delay_seconds=delay_seconds)


def queue_of(app: Any, name: str, options: dict[str, Any]) -> str:
    """The queue Celery routes task ``name`` to with these ``queue``/``exchange``/``routing_key`` options."""
    return str(app.amqp.router.route(options, name)["queue"].name)


def consumes(app: Any, queue: str) -> bool:
    """Whether this worker consumes ``queue`` (``-Q``, ``task_queues``)."""
    return queue in app.amqp.queues.consume_from


def consumed_queues(app: Any) -> list[Any]:
    """The kombu ``Queue`` objects this worker consumes."""
    return list(app.amqp.queues.consume_from.values())


# The worker's state: what ``celery inspect`` lists and ``celery control revoke`` marks.
def is_revoked(task_id: str) -> bool:
    """Whether ``celery control revoke`` named ``task_id`` to this worker."""
    return task_id in worker_state.revoked


def held_requests() -> list[Any]:
    """The requests this worker holds now (running or reserved), each with its kombu ``message``."""
    return list(worker_state.requests.values())


class ActiveStage:
    """A stage run with no message of its own, as ``celery inspect active`` lists it (``Request.info``'s
    shape); ``revoke --terminate`` cannot kill it alone (it runs in its segment's slot)."""

    def __init__(self, task_id: str, name: str, args: tuple[Any, ...], hostname: str | None,
                 delivery_info: dict[str, Any], on_terminate: Callable[[ActiveStage], None]) -> None:
        self.id, self.name, self.args = task_id, name, args
        self.hostname, self.delivery_info = hostname, delivery_info
        self._on_terminate = on_terminate
        self.time_start = time.time()

    def info(self, safe: bool = False) -> dict[str, Any]:
        return {"id": self.id, "name": self.name, "args": saferepr(self.args) if safe else self.args,
                "kwargs": {}, "type": self.name, "hostname": self.hostname, "time_start": self.time_start,
                "acknowledged": False, "delivery_info": self.delivery_info, "worker_pid": None}

    def terminate(self, pool: Any, signal: Any = None) -> None:
        self._on_terminate(self)


@contextlib.contextmanager
def listed_as_active(stage: ActiveStage) -> Iterator[None]:
    """While it runs, ``celery inspect active`` lists ``stage`` and ``revoke --terminate`` reaches it."""
    worker_state.active_requests.add(stage)
    try:
        yield
    finally:
        worker_state.active_requests.discard(stage)


# Events: flushed on a timer instead of on the loop's next turn.
def flush_on_timer(consumer: Any, buffer_limit: int) -> Callable[[], None] | None:
    """Stop the consumer's dispatcher from flushing on the loop's next turn; return the flush to call on a
    timer (None: the dispatcher does not buffer task events)."""
    dispatcher = consumer.event_dispatcher
    if dispatcher is None or not dispatcher.buffer_group:
        return None
    dispatcher.buffer_limit = buffer_limit
    dispatcher.on_send_buffered = None
    return consumer._flush_events  # type: ignore[no-any-return]


# The consumer: where a message becomes a request.
class HookedConsumer(CeleryConsumer):
    """Celery's consumer, whose task-message handling goes through ``screen``, ``dead_letter_message`` and
    ``cannot_run``.

    Celery's ``Consumer.create_task_handler`` catches only ``InvalidTaskError``, ``ContentDisallowed`` and
    ``DecodeError``; its ``on_unknown_message``/``on_unknown_task``/``on_invalid_task``/``on_decode_error``
    reject or acknowledge (on SQS: delete) with no trace. Subclasses say what to do instead.
    """

    def screen(self, message: Any) -> Exception | None:
        """Why ``message`` cannot be run (None: it can)."""
        return None

    def dead_letter_message(self, message: Any, problem: Exception) -> None:
        raise NotImplementedError

    def cannot_run(self, message: Any, reason: str) -> None:
        """Celery could not turn ``message`` into a request, for ``reason``."""
        raise NotImplementedError

    def create_task_handler(self, *args: Any, **kwargs: Any) -> Callable[[Any], Any]:
        handle = super().create_task_handler(*args, **kwargs)

        def on_task_received(message: Any) -> Any:
            problem = self.screen(message)
            if problem is not None:
                return self.dead_letter_message(message, problem)
            try:
                return handle(message)
            except Exception as exc:
                return self.cannot_run(message, f"cannot be turned into a task: {type(exc).__name__}: {exc}")

        return on_task_received

    def on_unknown_message(self, body: Any, message: Any) -> None:
        self.cannot_run(message, "not a Celery task message")

    def on_unknown_task(self, body: Any, message: Any, exc: BaseException) -> None:
        self.cannot_run(message, f"unknown task: {exc}")

    def on_invalid_task(self, body: Any, message: Any, exc: BaseException) -> None:
        self.cannot_run(message, f"invalid task message: {type(exc).__name__}: {exc}")

    def on_decode_error(self, message: Any, exc: BaseException) -> None:
        self.cannot_run(message, f"cannot decode: {type(exc).__name__}: {exc}")


# The worker application: its banner, its notices, its pool.
class HookedWorker(CeleryWorker):
    """``celery.apps.worker.Worker`` with hooks: ``before_logging`` (before Celery sets up logging) and
    ``log_banner`` (the start-up banner as one line, when ``banner_as_one_line``)."""

    def before_logging(self) -> None:
        """Called before Celery sets up logging (``on_before_init``)."""

    def banner_as_one_line(self) -> bool:
        return False

    def log_banner(self, info: str) -> None:
        """Called with the banner's text as one line, instead of Celery's banner."""

    def on_before_init(self, quiet: bool = False, **kwargs: Any) -> None:
        self.before_logging()
        super().on_before_init(quiet=quiet, **kwargs)

    def emit_banner(self) -> None:
        if not self.banner_as_one_line():
            super().emit_banner()
            return
        self.log_banner(" ".join(line.strip() for line in self.startup_info(artlines=False).splitlines()
                                 if line.strip()))


def print_shutdown_notices_with(say: Callable[[str, Any], None]) -> None:
    """Celery prints its shutdown notices (``worker: Warm shutdown``) from signal handlers with
    ``celery.apps.worker.safe_say``, looked up by name when called; no hook: it is replaced."""
    celery_worker_app.safe_say = say


def current_task_object() -> Task | None:
    """The task running in this thread (the stage chain affinity runs too: its tracer pushes it), or None."""
    return current_task._get_current_object() if current_task else None


def is_prefork(worker: Any) -> bool:
    """Whether ``worker`` (a ``WorkController``) runs tasks in prefork children, whose pool enforces Celery's
    hard time limit and which need their own per-process resources."""
    return str(worker.pool_cls.__module__).endswith("prefork")


def hard_time_limit(worker: Any) -> float:
    """``--time-limit`` (``task_time_limit``) of ``worker``; 0: none."""
    return float(worker.time_limit or 0.0)

