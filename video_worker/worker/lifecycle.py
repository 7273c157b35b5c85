"""One stage's lifecycle, top to bottom: what every pipeline task does in the worker.

``StageLifecycle.run`` is the body of each stage task (``tasks.py``):

1. **parse** the payload: one positional argument (``payload_problem``, the
   payload rule; the consumer checks it too before a message becomes a task),
   validated as the stage's input;
2. **set the deadline**: ``STAGE_TIME_LIMITS``, or Celery's hard limit where the
   pool does not enforce it (``time_limit``);
3. **run** the stage (``stages.STAGES``) with this process's dependencies;
4. on a failure, **decide** (``failure_policy.decide``, with ``retry_policy``), then
   **retry** (re-published here: same task id, ``retries`` + 1, SQS
   ``DelaySeconds``, never an ETA; then Celery's ``Retry`` acknowledges the
   message), **dead-letter** (written before the task fails and its message is
   deleted) or, when neither can be written, **hand back**
   (``Reject(requeue=True)``: the message comes again). ``Task.retry`` is not
   used: a failed publish there becomes ``Reject(requeue=False)``, which kombu's
   SQS transport turns into a delete;
5. on success, **continue**: chain affinity takes the rest of the chain
   (``affinity.ChainAffinity.take``), or a skipped segment stops it there.

``trace_message`` wraps the trace of each message's task: once it is over,
chain affinity runs the next stages in the same slot (each through ``run``
again). It sends ``segment_entered`` and ``segment_left`` around it, what
metrics observe (``video_worker_segments_in_progress``). ``start_chain`` is the
body of the entry task (``video_worker.process``); ``on_revoked`` dead-letters a
task revoked before it ran.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any, NoReturn

from celery import Task
from celery.exceptions import Reject, Retry
from celery.utils.dispatch import Signal

from video_worker import failure_policy
from video_worker.errors import BadMessage, Undelivered, classify
from video_worker.limits import Deadline
from video_worker.segments import Segment, parse_payload
from video_worker.settings import Settings
from video_worker.stages import Dependencies, Stage
from video_worker.worker import upstream
from video_worker.worker.affinity import ChainAffinity, Revoked
from video_worker.worker.dead_letters import LOOP_PATIENCE_SECONDS, DeadLetterWriter, letter_for

log = logging.getLogger(__name__)

#: Sent (sender: the task's name) when a message's task starts in a slot, and when that slot is done with the
#: segment: its own stage and those chain affinity ran after it.
segment_entered = Signal(name="segment_entered")
segment_left = Signal(name="segment_left")


def payload_problem(name: str, args: Any, kwargs: Any) -> str | None:
    """The payload rule: every pipeline task takes one positional argument (its payload) and nothing else."""
    if len(args) != 1 or kwargs:
        return (f"{name} takes one payload argument, got {len(args)} positional and "
                f"{len(kwargs)} keyword argument(s) {sorted(kwargs)}")
    return None


def only_payload(name: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    """The one positional argument every pipeline task takes."""
    problem = payload_problem(name, args, kwargs)
    if problem:
        raise BadMessage(problem)
    return args[0]


class StageLifecycle:
    """The lifecycle of the stages of one app (see the module's doc), with what it needs passed in."""

    def __init__(self, settings: Callable[[], Settings], dependencies: Callable[[], Dependencies],
                 dead_letters: DeadLetterWriter, affinity: ChainAffinity,
                 celery_time_limit: Callable[[], float | None], build_chain: Callable[[Segment], Any]) -> None:
        self._settings = settings  # the deployment's, read when first needed (the worker's start)
        self._dependencies = dependencies  # this process's (built on first use in each process)
        self._dead_letters = dead_letters
        self._affinity = affinity
        self._celery_time_limit = celery_time_limit  # None under prefork (see ``time_limit``)
        self._build_chain = build_chain

    def run(self, task: Task, stage: Stage, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        """A stage task's body: parse, set the deadline, run; decide and act on a failure; continue."""
        request = task.request
        payload: Any = {"args": list(args), "kwargs": kwargs}
        try:
            payload = only_payload(task.name, args, kwargs)
            deadline = Deadline.start(stage.name, self.time_limit(task, stage))
            result = stage.run(parse_payload(stage.input, payload), self._dependencies(), deadline)
        except Exception as exc:
            if request.is_eager:
                raise
            self._failed(task, payload, exc)
        data = result.model_dump(mode="json")
        if getattr(result, "skipped", None):
            upstream.take_chain(request)  # nothing left to do for this upload: stop the chain here
        else:
            self._affinity.take(task, data)  # the rest runs (or is published) once this task's trace is over
        return data

    def _failed(self, task: Task, payload: Any, exc: Exception) -> NoReturn:
        request = task.request
        retries = int(request.retries or 0)

        def republish(delay: int) -> None:
            upstream.retry_signature(task, payload, retries + 1, delay).apply_async()

        decision = self.on_failure(task.name, request.id, payload, exc, retries, republish)
        if isinstance(decision, failure_policy.RetryLater):
            raise Retry(exc=classify(exc), when=decision.delay_seconds) from exc
        raise classify(exc) from exc

    def on_failure(self, stage: str, task_id: str | None, payload: Any, exc: BaseException, retries: int,
                   republish: Callable[[int], None]) -> failure_policy.Decision:
        """Retry the failed stage (``republish(delay_seconds)``) or dead-letter it; return which was done.

        Raises ``Reject(requeue=True)`` when neither could be published: nothing recorded the work, so its
        message must come again.
        """
        settings = self._settings()
        decision = failure_policy.decide(settings.retry_policy, stage, exc, retries, settings.max_deliveries)
        if isinstance(decision, failure_policy.RetryLater):
            log.warning("%s: %s; retry %d in %ds", stage, exc, retries + 1, decision.delay_seconds)
            try:
                failure_policy.patiently(lambda: republish(decision.delay_seconds), f"publishing the retry of {stage}",
                                   patience=settings.publish_patience_seconds)
            except Undelivered as undelivered:
                log.error("%s: %s; the message goes back to the queue", stage, undelivered)
                raise Reject(undelivered, requeue=True) from exc
            return decision
        self._dead_letters.write(letter_for(stage, task_id, payload, exc, retries + 1, decision.reason))
        return decision

    def time_limit(self, task: Task, stage: Stage) -> float:
        """The stage's limit: ``STAGE_TIME_LIMITS``, or Celery's hard limit when one is configured and shorter
        (``--time-limit``/``task_time_limit``, the task's ``time_limit``, the message's ``timelimit`` header) in a
        pool that does not enforce it (threads, solo: ``steps.process_start`` sets it). Under prefork Celery
        kills the process at its limit and the message comes again (``MAX_DELIVERIES``)."""
        limits = [self._settings().stage_time_limits[stage.name]]
        worker_limit = self._celery_time_limit()
        if worker_limit is None:  # prefork (or no worker): Celery's limits are the pool's to enforce
            return limits[0]
        header = task.request.timelimit or (None, None)
        for configured in (header[1] if len(header) > 1 else None, task.time_limit, worker_limit):
            if configured:
                limits.append(float(configured))
        return min(limits)

    def trace_message(self, task_name: str, task_id: str, trace: Callable[[], Any]) -> Any:
        """Trace a message's task (``trace()``), then run here the stages it handed over."""
        segment_entered.send(sender=task_name)
        try:
            try:
                traced = trace()
            except BaseException:
                self._affinity.discard(task_id)
                raise
            self._affinity.run_after(task_id)
            return traced
        finally:
            segment_left.send(sender=task_name)

    def start_chain(self, task: Task, args: tuple[Any, ...], kwargs: dict[str, Any]) -> str:
        """``video_worker.process``: validate the segment, publish its chain (patiently), return the chain's id."""
        try:
            segment = parse_payload(Segment, only_payload(task.name, args, kwargs))
        except Exception as exc:  # permanent: dead-lettered
            self.on_failure(task.name, task.request.id, {"args": list(args), "kwargs": kwargs}, exc, 0,
                            lambda _delay: None)
            raise classify(exc) from exc
        try:
            result = failure_policy.patiently(lambda: self._build_chain(segment).apply_async(), "publishing the chain",
                                        patience=self._settings().publish_patience_seconds)
        except Undelivered as undelivered:
            raise Reject(undelivered, requeue=True) from undelivered
        return str(result.id)

    def on_revoked(self, task_name: str, task_id: str | None, args: Any, expired: bool) -> None:
        """A pipeline task revoked (or expired) before it ran: its segment ends as a dead letter, not silently.

        Celery discards a revoked task's message (``celery/worker/request.py`` ``Request.revoked``) and sends
        ``task_revoked``; chain affinity does the same for the stages it runs (``ChainAffinity._revoked``).
        """
        reason = f"{task_name} was {'expired' if expired else 'revoked'} before it ran"
        letter = letter_for(task_name, task_id, args[0] if args else None, Revoked(reason), 1, reason)
        try:
            self._dead_letters.write(letter, patience=LOOP_PATIENCE_SECONDS)
        except Reject:
            log.error("%s: could not write the dead letter of a revoked task", task_name)
