"""A small HTTP proxy in front of the AWS emulator, for fault injection and request counts.

Every request is forwarded to the emulator unchanged unless a ``Fault`` rule
matches it first: then the proxy answers with a real AWS error response
(S3 XML, DynamoDB/SQS JSON), delays it, or drops the connection. It also
counts requests by (service, action) and can go away and come back on the
same port, as a restarted emulator would.
"""

from __future__ import annotations

import collections
import http.client
import re
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

_SERVICE = re.compile(r"Credential=[^/]+/[^/]+/[^/]+/([a-z0-9-]+)/aws4_request")


@dataclass
class Call:
    service: str  # "s3", "sqs", "dynamodb", ...
    action: str  # "PutItem", "ReceiveMessage", "GET", "PUT", ...
    method: str
    path: str


@dataclass
class Fault:
    """Answer the first ``times`` matching calls with ``status``/``body`` (or delay/drop them)."""

    match: Callable[[Call], bool]
    times: int
    status: int = 500
    body: bytes = b""
    content_type: str = "application/xml"
    delay: float = 0.0  # seconds to hold the request before answering (then forward it)
    drop: bool = False  # close the connection without an answer
    hits: int = 0


def s3_error(code: str, status: int) -> tuple[int, bytes, str]:
    body = f"<?xml version='1.0' encoding='UTF-8'?><Error><Code>{code}</Code><Message>injected</Message>" \
           f"<RequestId>FAULT</RequestId></Error>".encode()
    return status, body, "application/xml"


def json_error(error_type: str, status: int = 400) -> tuple[int, bytes, str]:
    body = f'{{"__type":"{error_type}","message":"injected"}}'.encode()
    return status, body, "application/x-amz-json-1.0"


@dataclass
class AwsProxy:
    upstream: str  # http://127.0.0.1:PORT of the emulator
    port: int = 0
    faults: list[Fault] = field(default_factory=list)
    counts: collections.Counter[tuple[str, str]] = field(default_factory=collections.Counter)
    round_trip: float = 0.0  # added latency per request, seconds
    _server: ThreadingHTTPServer | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> AwsProxy:
        proxy = self

        class Handler(_Handler):
            owner = proxy

        server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        server.daemon_threads = True
        server.allow_reuse_address = True
        self.port = server.server_address[1]
        self._server = server
        threading.Thread(target=server.serve_forever, daemon=True, name="aws-proxy").start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def outage(self, seconds: float) -> None:
        """Go away (connections refused) for ``seconds``, then come back on the same port."""
        self.stop()
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

    def _take_fault(self, call: Call) -> Fault | None:
        with self._lock:
            self.counts[(call.service, call.action)] += 1
            for fault in self.faults:
                if fault.hits < fault.times and fault.match(call):
                    fault.hits += 1
                    return fault
        return None

    def injected(self) -> int:
        with self._lock:
            return sum(f.hits for f in self.faults)


class _Handler(BaseHTTPRequestHandler):
    owner: AwsProxy
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # headers and body are written separately

    def log_message(self, format: str, *args: object) -> None:  # quiet
        pass

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
                    # trailers until an empty line
                    while chunk not in (b"\r\n", b"\n", b""):
                        chunk = self.rfile.readline()
                        raw += chunk
                    return bytes(raw)
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _call(self) -> Call:
        match = _SERVICE.search(self.headers.get("Authorization", ""))
        service = match.group(1) if match else "unknown"
        target = self.headers.get("X-Amz-Target", "")
        action = target.rsplit(".", 1)[-1] if target else self.command
        return Call(service=service, action=action, method=self.command, path=self.path)

    def _handle(self) -> None:
        body = self._body()
        call = self._call()
        fault = self.owner._take_fault(call)
        if self.owner.round_trip:
            time.sleep(self.owner.round_trip)
        if fault is not None and fault.delay:
            time.sleep(fault.delay)
        if fault is not None and fault.drop:
            self.close_connection = True
            self.connection.shutdown(socket.SHUT_RDWR)
            return
        if fault is not None and not fault.delay:
            self.send_response(fault.status)
            self.send_header("Content-Type", fault.content_type)
            self.send_header("Content-Length", str(len(fault.body)))
            self.send_header("x-amzn-RequestId", "FAULT")
            self.end_headers()
            self.wfile.write(fault.body)
            return
        self._forward(body)

    def _forward(self, body: bytes) -> None:
        up = urlsplit(self.owner.upstream)
        conn = http.client.HTTPConnection(up.hostname or "127.0.0.1", up.port, timeout=120)
        headers = {k: v for k, v in self.headers.items() if k.lower() not in ("connection", "keep-alive")}
        conn.putrequest(self.command, self.path, skip_host=True, skip_accept_encoding=True)
        for key, value in headers.items():
            conn.putheader(key, value)
        conn.endheaders(body)
        response = conn.getresponse()
        data = response.read()
        self.send_response(response.status, response.reason)
        for key, value in response.getheaders():
            if key.lower() not in ("transfer-encoding", "connection", "content-length", "date", "server"):
                self.send_header(key, value)
        length = response.getheader("Content-Length") if self.command == "HEAD" else None
        self.send_header("Content-Length", length or str(len(data)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)
        conn.close()

    do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = _handle
