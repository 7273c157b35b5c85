"""What each request the proxy forwards is called: its service's action and its target.

S3 requests are named by their REST shape (``GetObject``, ``PutObject``,
``UploadPart``, ``HeadObject``, ``CreateMultipartUpload``, ...); SQS, SNS and
DynamoDB by ``X-Amz-Target`` or the query protocol's ``Action``. ``detail``
adds a line of what a response held (messages received, a Celery event's type).
"""

from __future__ import annotations

import base64
import json
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

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


def detail(action: str, params: dict[str, Any], response: bytes) -> str:
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
