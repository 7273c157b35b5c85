"""Faults the proxy injects at named calls: a real AWS error response, a delay, a hold, a dropped connection.

A ``Fault`` matches calls (``call(service, action, target=, caller=, path=)``),
lets the first ``skip`` of them through, then answers the next ``times``: so a
test fails exactly the call it names, deterministically.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from bench.awsproxy.wire import Call, Reply


@dataclass
class Fault:
    """Let the first ``skip`` matching calls through, then answer the next ``times`` with
    ``status``/``body`` (or delay, hold or drop them)."""

    match: Callable[[Call], bool]
    times: int
    status: int = 500
    body: bytes = b""
    content_type: str = "application/xml"
    delay: float = 0.0  # seconds to hold the request before answering (then forward it)
    until: threading.Event | None = None  # hold the request until this is set (then forward it)
    drop: bool = False  # close the connection without an answer
    skip: int = 0
    hits: int = 0
    seen: int = 0


def call(service: str, action: str, *, target: str | None = None, caller: str | None = None,
         path: str | None = None) -> Callable[[Call], bool]:
    """A matcher for exactly one named call: service and action, optionally its target (queue, bucket,
    table), its caller (the access key id of the signature) and a part of its path (an S3 key)."""
    def match(c: Call) -> bool:
        return (c.service == service and c.action == action and (target is None or c.target == target)
                and (caller is None or c.caller == caller) and (path is None or path in c.path))
    return match


def s3_error(code: str, status: int) -> tuple[int, bytes, str]:
    body = f"<?xml version='1.0' encoding='UTF-8'?><Error><Code>{code}</Code><Message>injected</Message>" \
           f"<RequestId>FAULT</RequestId></Error>".encode()
    return status, body, "application/xml"


def json_error(error_type: str, status: int = 400) -> tuple[int, bytes, str]:
    body = f'{{"__type":"{error_type}","message":"injected"}}'.encode()
    return status, body, "application/x-amz-json-1.0"


@dataclass
class Faults:
    """The faults of one proxy (thread-safe)."""

    faults: list[Fault] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, fault: Fault) -> Fault:
        with self._lock:
            self.faults.append(fault)
        return fault

    def injected(self) -> int:
        with self._lock:
            return sum(f.hits for f in self.faults)

    def intercept(self, call: Call) -> Reply | None:
        """The first live fault matching the call decides: let it through (None), or answer, hold or drop it."""
        with self._lock:
            fault = next((f for f in self.faults if f.hits < f.times and f.match(call)), None)
            if fault is not None:
                fault.seen += 1
                if fault.seen > fault.skip:
                    fault.hits += 1
                else:
                    fault = None
        if fault is None:
            return None
        if fault.delay:
            time.sleep(fault.delay)
        if fault.until is not None:
            fault.until.wait(300)
        if fault.drop:
            return Reply(0)
        if fault.delay or fault.until is not None:
            return None  # held, then forwarded
        return Reply(fault.status, fault.body, (("Content-Type", fault.content_type), ("x-amzn-RequestId", "FAULT")))
