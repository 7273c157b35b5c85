"""S3 event bodies as S3 sends them, for tests that put events on the raw queue themselves."""

from __future__ import annotations

import json
from urllib.parse import quote_plus


def s3_notification_body(
    bucket: str, key: str, *, size: int, etag: str,
    event_name: str = "ObjectCreated:Put", sequencer: str = "0A1B2C3D4E5F678901",
) -> str:
    """A realistic bare S3 notification body for one object, its key form-URL-encoded
    the way S3 does it (``quote_plus``, ``/`` kept)."""
    bucket_entity = {"name": bucket, "ownerIdentity": {"principalId": "A3EXAMPLEOWNER"},
                     "arn": f"arn:aws:s3:::{bucket}"}
    obj = {"key": quote_plus(key, safe="/"), "size": size, "eTag": etag, "sequencer": sequencer}
    record = {
        "eventVersion": "2.1", "eventSource": "aws:s3", "awsRegion": "us-east-1",
        "eventTime": "2024-01-01T00:00:00.000Z", "eventName": event_name,
        "userIdentity": {"principalId": "AWS:AIDAEXAMPLEPRINCIPAL"},
        "requestParameters": {"sourceIPAddress": "127.0.0.1"},
        "responseElements": {"x-amz-request-id": "EXAMPLE123456789", "x-amz-id-2": "EXAMPLE/host/id"},
        "s3": {"s3SchemaVersion": "1.0", "configurationId": "video-worker-segments",
               "bucket": bucket_entity, "object": obj},
    }
    return json.dumps({"Records": [record]}, separators=(",", ":"))
