"""An HTTP proxy in front of the AWS emulator: latency, a log of every request, faults at named calls.

Each request is delayed by ``round_trip`` seconds (a client in one AWS region
talking to the service: ~20 ms per request, whatever its size): half before
it is forwarded unchanged, half before the answer goes back, so a long poll
answered when a message arrives still pays the way back. Every request is logged with its caller (the access key
id of its signature: the benchmark gives each process its own), service,
action, target (queue, bucket or table), status, bytes each way and times, so
a run can count requests by service and action, check how many times a
segment's bytes crossed the network, and draw one segment's timeline.

Requests are named by ``actions`` (S3 by REST shape, the others by
``X-Amz-Target`` or the query protocol's ``Action``). Faults (``faults``)
answer some requests instead of the emulator: an error, a delay, a hold, a
dropped connection; ``outage()`` takes the endpoint away and resets the open
connections. Used by the tests (``tests/faults``) and the benchmarks (``bench``).
"""

from __future__ import annotations

import contextlib
import dataclasses
import http.client
import json
import re
import socket
import struct
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Self
from urllib.parse import urlsplit

from bench.awsproxy.actions import detail, json_action, s3_action
from bench.awsproxy.faults import Fault, Faults
from bench.awsproxy.wire import Call, Reply, Request

__all__ = ["AwsProxy", "Call", "Reply", "Request", "count", "json_action", "s3_action"]

_CREDENTIAL = re.compile(r"Credential=([^/]+)/[^/]+/[^/]+/([a-z0-9-]+)/aws4_request")
# Headers of the emulator's answer that are not passed on (this proxy sets its own framing, Date and Server).
_NOT_PASSED_ON = ("transfer-encoding", "connection", "content-length", "date", "server")


@dataclass
class AwsProxy:
    """The proxy; ``start()`` it, point ``AWS_ENDPOINT_URL`` at ``endpoint``, ``add`` faults, read ``requests()``."""

    upstream: str  # http://127.0.0.1:PORT of the emulator
    round_trip: float = 0.0  # seconds added to every request
    port: int = 0
    _log: list[Request] = field(default_factory=list)
    _rows: list[Request] = field(default_factory=list)  # successful DynamoDB PutItems
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _server: ThreadingHTTPServer | None = None
    _connections: set[socket.socket] = field(default_factory=set)  # open client connections (keep-alive)
    faults: Faults = field(default_factory=Faults)
    counts: Counter[tuple[str, str]] = field(default_factory=Counter)

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> Self:
        owner: AwsProxy = self

        class Handler(_Handler):
            proxy = owner

        server = _Server(("127.0.0.1", self.port), Handler)
        self.port = server.server_address[1]
        self._server = server
        threading.Thread(target=server.serve_forever, daemon=True, name=type(self).__name__).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def reset_connections(self) -> int:
        """Reset every open client connection (as a restarted endpoint would); return how many."""
        with self._lock:
            connections, self._connections = list(self._connections), set()
        for conn in connections:
            with contextlib.suppress(OSError):
                conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))  # RST, not FIN
                conn.shutdown(socket.SHUT_RDWR)
        return len(connections)

    def _opened(self, conn: socket.socket) -> None:
        with self._lock:
            self._connections.add(conn)

    def _closed(self, conn: socket.socket) -> None:
        with self._lock:
            self._connections.discard(conn)

    def intercept(self, call: Call) -> Reply | None:
        """Called for every request in its handler thread before it is forwarded: count it, apply the faults.

        ``None`` forwards it; a ``Reply`` is the answer instead. A fault may hold the request first.
        """
        with self._lock:
            self.counts[(call.service, call.action)] += 1
        return self.faults.intercept(call)

    def add(self, fault: Fault) -> Fault:
        return self.faults.add(fault)

    def injected(self) -> int:
        return self.faults.injected()

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

    def record(self, request: Request) -> None:
        with self._lock:
            self._log.append(request)
            if request.action == "PutItem" and request.status == 200:
                self._rows.append(request)

    def rows(self) -> list[Request]:
        """Successful DynamoDB ``PutItem`` requests so far (completion rows), oldest first."""
        with self._lock:
            return list(self._rows)

    def requests(self, since: float = 0.0, until: float = float("inf")) -> list[Request]:
        """Requests that started in ``[since, until]``."""
        with self._lock:
            return [r for r in self._log if since <= r.start <= until]

    def dump(self, path: Path) -> None:
        """Every request, one JSON object a line."""
        with self._lock, path.open("w", encoding="utf-8") as out:
            for r in self._log:
                out.write(json.dumps(dataclasses.asdict(r)) + "\n")

    def clear(self) -> None:
        with self._lock:
            self._log.clear()
            self._rows.clear()


def count(requests: Iterable[Request], *, by_caller: bool = False) -> Counter[tuple[str, ...]]:
    """Requests by (service, action), or by (caller, service, action)."""
    out: Counter[tuple[str, ...]] = Counter()
    for r in requests:
        out[(r.caller, r.service, r.action) if by_caller else (r.service, r.action)] += 1
    return out


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128

    def handle_error(self, request: Any, client_address: Any) -> None:
        """Quiet about clients that hang up (a process stopped mid long poll); loud about anything else."""
        if not isinstance(sys.exc_info()[1], (ConnectionError, TimeoutError)):
            super().handle_error(request, client_address)


class _Handler(BaseHTTPRequestHandler):
    proxy: AwsProxy
    protocol_version = "HTTP/1.1"
    # The response's status line, headers and body leave in one write (flushed after each request),
    # without Nagle: a body written after the headers would otherwise wait for the client's delayed
    # ACK (40 ms on Linux), a stall real endpoints do not have.
    wbufsize = -1
    disable_nagle_algorithm = True

    def log_message(self, format: str, *args: object) -> None:  # quiet
        pass

    def setup(self) -> None:
        super().setup()
        self.proxy._opened(self.connection)

    def finish(self) -> None:
        self.proxy._closed(self.connection)
        with contextlib.suppress(OSError):  # reset by reset_connections
            super().finish()

    def handle_expect_100(self) -> bool:
        """``Expect: 100-continue`` (S3 uploads): the interim answer must leave now, not with the response."""
        result = super().handle_expect_100()
        self.wfile.flush()
        return result

    def _body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            raw = bytearray()
            while True:
                size_line = self.rfile.readline()
                raw += size_line
                size = int(size_line.split(b";")[0].strip() or b"0", 16)
                chunk = self.rfile.read(size + 2)
                raw += chunk
                if size == 0:
                    while chunk not in (b"\r\n", b"\n", b""):
                        chunk = self.rfile.readline()
                        raw += chunk
                    return bytes(raw)
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _describe(self, body: bytes) -> tuple[Call, dict[str, Any]]:
        match = _CREDENTIAL.search(self.headers.get("Authorization", ""))
        caller, service = match.groups() if match else ("?", "unknown")
        params: dict[str, Any] = {}
        if service == "s3":
            path, _, query = self.path.partition("?")
            headers = {k.lower(): v for k, v in self.headers.items()}
            action, target = s3_action(self.command, path, query, headers)
        else:
            action, target, params = json_action(service, self.headers.get("X-Amz-Target", ""), body, self.path)
        return Call(service, action, self.command, self.path, caller, target), params

    def _handle(self) -> None:
        body = self._body()
        start = time.time()
        call, params = self._describe(body)
        reply = self.proxy.intercept(call)
        half = self.proxy.round_trip / 2  # on the way there, and back (a long poll answered late pays the latter)
        if half:
            time.sleep(half)
        try:
            status, data = self._forward(body, half) if reply is None else self._reply(reply, half)
        except (OSError, http.client.HTTPException):  # the emulator went away (end of a run), or the client did
            status, data = 0, b""
            self.close_connection = True
        info = detail(call.action, params, data) if call.service != "s3" else ""
        self.proxy.record(Request(start, time.time(), call.caller, call.service, call.action, call.target, status,
                                  len(body), len(data), info))

    def _forward(self, body: bytes, delay: float) -> tuple[int, bytes]:
        up = urlsplit(self.proxy.upstream)
        conn = http.client.HTTPConnection(up.hostname or "127.0.0.1", up.port, timeout=300)
        try:
            conn.putrequest(self.command, self.path, skip_host=True, skip_accept_encoding=True)
            for key, value in self.headers.items():
                if key.lower() not in ("connection", "keep-alive"):
                    conn.putheader(key, value)
            conn.endheaders(body)
            response = conn.getresponse()
            data = response.read()
            if delay:
                time.sleep(delay)
            self._send(response.status, response.reason, response.getheaders(), data)
            return response.status, data
        finally:
            conn.close()

    def _reply(self, reply: Reply, delay: float) -> tuple[int, bytes]:
        if delay:
            time.sleep(delay)
        if not reply.status:  # hang up without an answer
            self.close_connection = True
            self.connection.shutdown(socket.SHUT_RDWR)
            return 0, b""
        self._send(reply.status, None, reply.headers, reply.body)
        return reply.status, reply.body

    def _send(self, status: int, reason: str | None, headers: Iterable[tuple[str, str]], data: bytes) -> None:
        self.send_response(status, reason)
        length = str(len(data))
        for key, value in headers:
            lower = key.lower()
            if lower == "content-length" and self.command == "HEAD":
                length = value  # a HEAD's Content-Length is the object's size, not this body's
            elif lower not in _NOT_PASSED_ON:
                self.send_header(key, value)
        self.send_header("Content-Length", length)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = _handle
