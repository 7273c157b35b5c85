"""An HTTP proxy in front of the AWS emulator: one round trip of latency per request, and a log of every request.

Each request is delayed by ``round_trip`` seconds (a client in one AWS region
talking to the service: ~20 ms per request, whatever its size): half before
it is forwarded unchanged, half before the answer goes back, so a long poll
answered when a message arrives still pays the way back. Every request is logged with its caller (the access key
id of its signature: the benchmark gives each process its own), service,
action, target (queue, bucket or table), status, bytes each way and times, so
a run can count requests by service and action, check how many times a
segment's bytes crossed the network, and draw one segment's timeline.

S3 requests are named by their REST shape (``GetObject``, ``PutObject``,
``UploadPart``, ``HeadObject``, ``CreateMultipartUpload``, ...); SQS, SNS and
DynamoDB by ``X-Amz-Target`` or the query protocol's ``Action``.

Based on ``tests/awsproxy.py`` (fault injection), without the faults.
"""

from __future__ import annotations

import base64
import dataclasses
import http.client
import json
import re
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

_CREDENTIAL = re.compile(r"Credential=([^/]+)/[^/]+/[^/]+/([a-z0-9-]+)/aws4_request")


@dataclass(frozen=True)
class Request:
    """One request as the proxy saw it (times are ``time.time()``)."""

    start: float  # request fully received by the proxy
    end: float  # response fully sent back
    caller: str  # access key id of the signature
    service: str  # s3, sqs, sns, dynamodb, ...
    action: str  # GetObject, ReceiveMessage, PutItem, ...
    target: str  # queue name, bucket, table or topic ("" if none)
    status: int
    sent: int  # request body bytes (client -> AWS)
    received: int  # response body bytes (AWS -> client)
    detail: str = ""  # ReceiveMessage: "max=10 wait=20 got=3"

    @property
    def seconds(self) -> float:
        return self.end - self.start


_S3_BUCKET_SUBRESOURCES = {
    "notification": ("GetBucketNotificationConfiguration", "PutBucketNotificationConfiguration"),
    "location": ("GetBucketLocation", "GetBucketLocation"),
    "versioning": ("GetBucketVersioning", "PutBucketVersioning"),
    "policy": ("GetBucketPolicy", "PutBucketPolicy"),
    "acl": ("GetBucketAcl", "PutBucketAcl"),
    "tagging": ("GetBucketTagging", "PutBucketTagging"),
    "lifecycle": ("GetBucketLifecycleConfiguration", "PutBucketLifecycleConfiguration"),
    "cors": ("GetBucketCors", "PutBucketCors"),
    "uploads": ("ListMultipartUploads", "ListMultipartUploads"),
    "versions": ("ListObjectVersions", "ListObjectVersions"),
}


def s3_action(method: str, path: str, query: str, headers: dict[str, str]) -> tuple[str, str]:
    """(action, bucket) of a path-style S3 REST request."""
    bucket, _, key = unquote(path).lstrip("/").partition("/")
    q = parse_qs(query, keep_blank_values=True)
    copy = "x-amz-copy-source" in headers
    if not bucket:
        return "ListBuckets", ""
    if key:
        if "uploadId" in q:
            if method == "PUT":
                return ("UploadPartCopy" if copy else "UploadPart"), bucket
            if method == "POST":
                return "CompleteMultipartUpload", bucket
            if method == "DELETE":
                return "AbortMultipartUpload", bucket
            return "ListParts", bucket
        if method == "POST" and "uploads" in q:
            return "CreateMultipartUpload", bucket
        if "tagging" in q:
            return ("GetObjectTagging" if method == "GET" else f"{method.title()}ObjectTagging"), bucket
        return {
            "GET": "GetObject",
            "HEAD": "HeadObject",
            "PUT": "CopyObject" if copy else "PutObject",
            "DELETE": "DeleteObject",
            "POST": "PostObject",
        }.get(method, method), bucket
    for name, (get, put) in _S3_BUCKET_SUBRESOURCES.items():
        if name in q:
            return (get if method == "GET" else put), bucket
    if method == "POST" and "delete" in q:
        return "DeleteObjects", bucket
    if method == "GET":
        return ("ListObjectsV2" if q.get("list-type") == ["2"] else "ListObjects"), bucket
    return {"HEAD": "HeadBucket", "PUT": "CreateBucket", "DELETE": "DeleteBucket"}.get(method, method), bucket


def _last_segment(value: str) -> str:
    return value.rstrip("/").rsplit("/", 1)[-1].rsplit(":", 1)[-1]


def json_action(service: str, target_header: str, body: bytes, path: str) -> tuple[str, str, dict[str, Any]]:
    """(action, target, parameters) of an SQS/SNS/DynamoDB request, JSON or query protocol."""
    params: dict[str, Any] = {}
    action = target_header.rsplit(".", 1)[-1] if target_header else ""
    if action:
        try:
            loaded = json.loads(body or b"{}")
            params = loaded if isinstance(loaded, dict) else {}
        except ValueError:
            params = {}
    else:
        text = body.decode("utf-8", "replace")
        if "?" in path:
            text = f"{text}&{path.split('?', 1)[1]}"
        params = {k: v[0] for k, v in parse_qs(text, keep_blank_values=True).items()}
        action = str(params.get("Action", "") or "?")
    for name in ("QueueUrl", "QueueName", "TableName", "TopicArn", "Name", "SubscriptionArn"):
        value = params.get(name)
        if isinstance(value, str) and value:
            return action, _last_segment(value), params
    url_path = urlsplit(path).path
    if service == "sqs" and url_path.count("/") >= 2:  # query protocol: POST /ACCOUNT/queue-name
        return action, _last_segment(url_path), params
    return action, "", params


def _celery_event(message: object) -> str:
    """``event=task-received`` for a Celery event kombu published to SNS (its body is base64 JSON)."""
    try:
        body = json.loads(str(message)).get("body", "")
        event = json.loads(base64.b64decode(body))
        events = event if isinstance(event, list) else [event]
        return "event=" + ",".join(sorted({str(e.get("type", "?")) for e in events}))
    except (ValueError, TypeError, AttributeError):
        return ""


def _detail(action: str, params: dict[str, Any], response: bytes) -> str:
    if action == "ReceiveMessage":
        got = response.count(b"ReceiptHandle")  # JSON key or XML element, once per message
        got = got // 2 if response.lstrip().startswith(b"<") else got
        return f"max={params.get('MaxNumberOfMessages', 1)} wait={params.get('WaitTimeSeconds', '-')} got={got}"
    if action == "Publish":
        return _celery_event(params.get("Message"))
    entries = params.get("Entries")
    if isinstance(entries, list):
        return f"entries={len(entries)}"
    return ""


@dataclass
class BenchProxy:
    """The proxy; ``start()`` it, point ``AWS_ENDPOINT_URL`` at ``endpoint``, read ``requests()``."""

    upstream: str  # http://127.0.0.1:PORT of the emulator
    round_trip: float = 0.0  # seconds added to every request
    port: int = 0
    _log: list[Request] = field(default_factory=list)
    _rows: list[Request] = field(default_factory=list)  # successful DynamoDB PutItems
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _server: ThreadingHTTPServer | None = None

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> BenchProxy:
        owner = self

        class Handler(_Handler):
            proxy = owner

        server = _Server(("127.0.0.1", self.port), Handler)
        self.port = server.server_address[1]
        self._server = server
        threading.Thread(target=server.serve_forever, daemon=True, name="bench-proxy").start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

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
    proxy: BenchProxy
    protocol_version = "HTTP/1.1"
    # The response's status line, headers and body leave in one write (flushed after each request),
    # without Nagle: a body written after the headers would otherwise wait for the client's delayed
    # ACK (40 ms on Linux), a stall real endpoints do not have.
    wbufsize = -1
    disable_nagle_algorithm = True

    def log_message(self, format: str, *args: object) -> None:  # quiet
        pass

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

    def _describe(self, body: bytes) -> tuple[str, str, str, str, dict[str, Any]]:
        match = _CREDENTIAL.search(self.headers.get("Authorization", ""))
        caller, service = match.groups() if match else ("?", "unknown")
        path, _, query = self.path.partition("?")
        if service == "s3":
            headers = {k.lower(): v for k, v in self.headers.items()}
            action, target = s3_action(self.command, path, query, headers)
            return caller, service, action, target, {}
        action, target, params = json_action(service, self.headers.get("X-Amz-Target", ""), body, self.path)
        return caller, service, action, target, params

    def _handle(self) -> None:
        body = self._body()
        start = time.time()
        caller, service, action, target, params = self._describe(body)
        half = self.proxy.round_trip / 2  # on the way there, and back (a long poll answered late pays the latter)
        if half:
            time.sleep(half)
        try:
            status, data = self._forward(body, half)
        except (OSError, http.client.HTTPException):  # the emulator went away (end of a run)
            status, data = 0, b""
            self.close_connection = True
        detail = _detail(action, params, data) if service != "s3" else ""
        self.proxy.record(Request(start, time.time(), caller, service, action, target, status, len(body), len(data),
                                  detail))

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
            self.send_response(response.status, response.reason)
            length = str(len(data))
            for key, value in response.getheaders():
                lower = key.lower()
                if lower == "content-length" and self.command == "HEAD":
                    length = value  # a HEAD's Content-Length is the object's size, not this body's
                elif lower not in ("transfer-encoding", "connection", "content-length", "date", "server"):
                    self.send_header(key, value)
            self.send_header("Content-Length", length)
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(data)
            return response.status, data
        finally:
            conn.close()

    do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = _handle
