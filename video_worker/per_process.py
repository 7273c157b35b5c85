"""One value per process, built on first use: the one mechanism for what must not cross a fork.

boto3 sessions and clients, the monitoring queues a process owns, and a
worker process's resources (``worker.context``) are each a ``PerProcess``: a
prefork child forgets its parent's (at fork, locks included) and builds its
own on first use instead of sharing the parent's sockets and threads; threads
share one, built once even when they race for it.
"""

from __future__ import annotations

import os
import threading
import weakref
from collections.abc import Callable
from typing import Any, Generic, TypeVar

T = TypeVar("T")

_instances: weakref.WeakSet[PerProcess[Any]] = weakref.WeakSet()


class PerProcess(Generic[T]):
    """``get()`` returns this process's value, building it with ``build()`` the first time."""

    def __init__(self, build: Callable[[], T]) -> None:
        self._build = build
        self._lock = threading.Lock()
        self._value: tuple[int, T] | None = None
        _instances.add(self)

    def get(self) -> T:
        current = self._value
        if current is None or current[0] != os.getpid():
            with self._lock:
                current = self._value
                if current is None or current[0] != os.getpid():
                    current = self._value = (os.getpid(), self._build())
        return current[1]

    def set(self, value: T) -> None:
        """Use ``value`` in this process (tests, embedding)."""
        with self._lock:
            self._value = (os.getpid(), value)

    def peek(self) -> T | None:
        """This process's value if it was built, else None (nothing is built)."""
        current = self._value
        return current[1] if current is not None and current[0] == os.getpid() else None

    def reset_after_fork(self) -> None:
        """Forget the value in a forked child (its lock may have been held by another thread)."""
        self._lock = threading.Lock()
        self._value = None


def _after_fork_in_child() -> None:
    for instance in list(_instances):
        instance.reset_after_fork()


os.register_at_fork(after_in_child=_after_fork_in_child)
