"""A small HTTP proxy in front of the AWS emulator, for fault injection and request counts.

Every request is forwarded to the emulator unchanged unless a ``Fault`` rule
matches it first: then the proxy answers with a real AWS error response
(S3 XML, DynamoDB/SQS JSON), delays it, or drops the connection. It also
counts requests by (service, action) and can go away and come back on the
same port, as a restarted emulator would.

The forwarding is ``bench.proxy.BenchProxy``'s (one buffered write per
response, no Nagle, ``100 Continue`` flushed, a HEAD's Content-Length kept,
every request logged in ``requests()``); this module only adds the faults,
through its ``intercept`` hook. ``Call.action`` is the benchmark proxy's name
for the request (``PutItem``, ``DeleteMessage``, S3 ``GetObject``, ...) and
``Call.method`` its HTTP method.
"""

from __future__ import annotations

import collections
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from bench.proxy import BenchProxy, Call, Reply

__all__ = ["AwsProxy", "Call", "Fault", "call", "json_error", "s3_error"]


@dataclass
class Fault:
    """Let the first ``skip`` matching calls through, then answer the next ``times`` with
    ``status``/``body`` (or delay/drop them)."""

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
class AwsProxy(BenchProxy):
    """``AwsProxy(emulator_endpoint).start()``; ``add`` faults; point ``AWS_ENDPOINT_URL`` at ``endpoint``."""

    faults: list[Fault] = field(default_factory=list)
    counts: collections.Counter[tuple[str, str]] = field(default_factory=collections.Counter)

    def outage(self, seconds: float) -> None:
        """Go away for ``seconds`` (new connections refused, open ones reset), then come back on the same port."""
        self.stop()
        self.reset_connections()
        time.sleep(seconds)
        for _ in range(50):
            try:
                self.start()
                return
            except OSError:  # the port is still in TIME_WAIT
                time.sleep(0.1)
        raise RuntimeError(f"could not rebind port {self.port}")

    def add(self, fault: Fault) -> Fault:
        with self._lock:
            self.faults.append(fault)
        return fault

    def injected(self) -> int:
        with self._lock:
            return sum(f.hits for f in self.faults)

    def intercept(self, call: Call) -> Reply | None:
        """Count the call; the first matching fault with hits left answers it, holds it or drops it."""
        with self._lock:
            self.counts[(call.service, call.action)] += 1
            fault = next((f for f in self.faults if f.hits < f.times and f.match(call)), None)
            if fault is not None:  # the first live fault for this call decides: let it through, or answer it
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
