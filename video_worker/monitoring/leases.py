"""The SQS queues that monitoring gives each process: deleted when it exits, expired when it dies.

Events and remote control give every listening process queues of its own (a
worker's mailbox, Flower's event queue, one reply queue per thread of a
process that calls ``inspect``/``control``). AMQP deletes such ``auto_delete``
queues when their consumer goes; SQS keeps a queue until someone deletes it,
and SNS keeps fanning out into it. So each process keeps a ``Housekeeper``:

* **on exit** (``atexit``; Celery and Flower turn SIGTERM into ``sys.exit``)
  it unsubscribes and deletes every queue it owns, for at most 15 s (what is
  left expires); a mailbox or event queue goes already when its channel
  closes (see ``transport.Channel.close``);
* **while alive** it holds a lease on each: the tag ``LEASE_TAG`` (epoch
  seconds), set at creation and pushed ``LEASE_SECONDS`` ahead every
  ``RENEW_SECONDS`` by a daemon thread (one ``TagQueue`` per queue);
* **for the dead** (SIGKILL, lost host) it sweeps, ``FIRST_SWEEP_SECONDS``
  after it starts and then every ``SWEEP_SECONDS``: queues under the broker
  prefix whose lease ran out are unsubscribed from the SNS topics and deleted.

Errors are logged and never raised: housekeeping must not stop a worker.
"""

from __future__ import annotations

import atexit
import logging
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from video_worker.per_process import PerProcess

log = logging.getLogger(__name__)

LEASE_TAG = "video-worker:lease-until"
LEASE_SECONDS = 900
RENEW_SECONDS = LEASE_SECONDS // 3
FIRST_SWEEP_SECONDS = 30.0
SWEEP_SECONDS = 3600.0
#: Only queues whose names contain one of these are candidates for the sweep.
SWEPT_NAME_PARTS = ("pidbox", "celeryev")


def _error_code(exc: Exception) -> str:
    return str(getattr(exc, "response", {}).get("Error", {}).get("Code", ""))


def is_missing_queue(exc: Exception) -> bool:
    return any(part in _error_code(exc) for part in ("NonExistentQueue", "QueueDoesNotExist"))


def topic_arn_for(queue_arn: str, topic: str) -> str:
    """``arn:aws:sqs:REGION:ACCOUNT:queue`` -> ``arn:aws:sns:REGION:ACCOUNT:topic``."""
    parts = queue_arn.split(":")
    return ":".join([parts[0], parts[1], "sns", parts[3], parts[4], topic])


@dataclass
class _Owned:
    url: str
    subscriptions: set[str] = field(default_factory=set)


class Housekeeper:
    """This process's monitoring queues under one broker prefix (thread-safe)."""

    def __init__(self, sqs: Any, sns: Any, prefix: str, topics: Iterable[str]) -> None:
        self.sqs = sqs
        self.sns = sns
        self.prefix = prefix
        self.topics = tuple(topics)
        self._owned: dict[str, _Owned] = {}
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    def owned(self) -> dict[str, str]:
        with self._lock:
            return {name: entry.url for name, entry in self._owned.items()}

    def adopt(self, name: str, url: str) -> None:
        """Take ownership of queue ``name``: lease it now, renew it, delete it at exit."""
        with self._lock:
            if name in self._owned:
                return
            self._owned[name] = _Owned(url)
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="video-worker-leases", daemon=True)
                self._thread.start()
        self._lease(name, url)

    def subscribed(self, name: str, subscription_arn: str) -> None:
        with self._lock:
            if name in self._owned:
                self._owned[name].subscriptions.add(subscription_arn)

    def release(self, name: str) -> None:
        """Unsubscribe and delete an owned queue (no-op if not owned)."""
        with self._lock:
            entry = self._owned.pop(name, None)
        if entry is not None:
            self._delete(name, entry.url, entry.subscriptions)

    def release_all(self, budget_seconds: float = 15.0) -> None:
        """Release every owned queue, giving up after ``budget_seconds`` (the sweep gets the rest)."""
        deadline = time.monotonic() + budget_seconds
        for name in list(self.owned()):
            if time.monotonic() > deadline:
                log.warning("monitoring: no time left to delete %s; it expires with its lease", name)
                continue
            self.release(name)

    def renew(self) -> None:
        for name, url in self.owned().items():
            self._lease(name, url)

    def sweep(self, now: float | None = None) -> list[str]:
        """Delete other processes' queues whose lease has run out; return their names."""
        now = time.time() if now is None else now
        expired: list[tuple[str, str]] = []
        try:
            mine = self.owned()
            for url in self._list_queue_urls():
                name = url.rsplit("/", 1)[-1]
                if name in mine or not any(part in name for part in SWEPT_NAME_PARTS):
                    continue
                tags = self.sqs.list_queue_tags(QueueUrl=url).get("Tags", {})
                until = tags.get(LEASE_TAG)
                if until is not None and float(until) < now:
                    expired.append((name, url))
        except Exception as exc:
            log.warning("monitoring: sweep of expired queues failed: %r", exc)
            return []
        for name, url in expired:
            self._delete(name, url, self._subscriptions_of(url))
        if expired:
            log.info("monitoring: removed %d expired queue(s): %s", len(expired), ", ".join(n for n, _ in expired))
        return [name for name, _ in expired]

    def _lease(self, name: str, url: str) -> None:
        try:
            self.sqs.tag_queue(QueueUrl=url, Tags={LEASE_TAG: str(int(time.time()) + LEASE_SECONDS)})
        except Exception as exc:
            if is_missing_queue(exc):
                log.warning("monitoring: queue %s was deleted by someone else", name)
                with self._lock:
                    self._owned.pop(name, None)
            else:
                log.warning("monitoring: cannot renew the lease of %s: %r", name, exc)

    def _delete(self, name: str, url: str, subscriptions: Iterable[str]) -> None:
        for arn in subscriptions:
            try:
                self.sns.unsubscribe(SubscriptionArn=arn)
            except Exception as exc:
                log.warning("monitoring: cannot unsubscribe %s: %r", arn, exc)
        try:
            self.sqs.delete_queue(QueueUrl=url)
            log.debug("monitoring: deleted queue %s", name)
        except Exception as exc:
            if not is_missing_queue(exc):
                log.warning("monitoring: cannot delete queue %s: %r", name, exc)

    def _list_queue_urls(self) -> list[str]:
        urls: list[str] = []
        kwargs: dict[str, Any] = {"QueueNamePrefix": self.prefix, "MaxResults": 1000}
        while True:
            page = self.sqs.list_queues(**kwargs)
            urls.extend(page.get("QueueUrls", []))
            if not page.get("NextToken"):
                return urls
            kwargs["NextToken"] = page["NextToken"]

    def _subscriptions_of(self, url: str) -> list[str]:
        """The SNS subscriptions (on ``self.topics``) that deliver into queue ``url``."""
        found: list[str] = []
        try:
            arn = self.sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
            for topic in self.topics:
                paginator = self.sns.get_paginator("list_subscriptions_by_topic")
                try:
                    for page in paginator.paginate(TopicArn=topic_arn_for(arn, topic)):
                        found.extend(s["SubscriptionArn"] for s in page.get("Subscriptions", [])
                                     if s.get("Endpoint") == arn)
                except Exception as exc:
                    if "NotFound" not in _error_code(exc):
                        raise
        except Exception as exc:
            if not is_missing_queue(exc):
                log.warning("monitoring: cannot list the subscriptions of %s: %r", url, exc)
        return found

    def _run(self) -> None:
        next_sweep = time.monotonic() + FIRST_SWEEP_SECONDS
        next_renew = time.monotonic() + RENEW_SECONDS
        while True:
            time.sleep(max(0.0, min(next_sweep, next_renew) - time.monotonic()))
            if time.monotonic() >= next_renew:
                self.renew()
                next_renew = time.monotonic() + RENEW_SECONDS
            if time.monotonic() >= next_sweep:
                self.sweep()
                next_sweep = time.monotonic() + SWEEP_SECONDS


#: This process's housekeepers by (endpoint, region, prefix); a forked child starts with none.
_housekeepers: PerProcess[dict[tuple[str, ...], Housekeeper]] = PerProcess(dict)
_registry_lock = threading.Lock()


def housekeeper(key: tuple[str, ...], make: Callable[[], Housekeeper]) -> Housekeeper:
    """This process's housekeeper for ``key`` (endpoint, region, prefix), made on first use."""
    keepers = _housekeepers.get()
    with _registry_lock:
        found = keepers.get(key)
        if found is None:
            if not keepers:  # this process's first: its queues go when it exits
                atexit.register(release_all)
            found = keepers[key] = make()
        return found


def release_all() -> None:
    """Delete every queue this process owns (registered with ``atexit`` by its first housekeeper; a forked child
    owns none of its parent's)."""
    for keeper in list((_housekeepers.peek() or {}).values()):
        keeper.release_all()
