"""boto3 clients and the mapping of SDK errors onto ``errors``.

Every adapter catches botocore exceptions at its edge and re-raises them with
``translate()`` so the rest of the package sees only our error tree.
"""

from __future__ import annotations

import threading
from typing import Any

import boto3
from boto3.exceptions import RetriesExceededError, S3UploadFailedError
from botocore.config import Config
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    HTTPClientError,
    ReadTimeoutError,
)
from botocore.exceptions import (
    ConnectionError as BotoConnectionError,
)

from video_worker.errors import (
    AccessDenied,
    BucketNotFound,
    ObjectNotFound,
    PermanentError,
    QueueNotFound,
    TableNotFound,
    TransientError,
    VideoWorkerError,
)
from video_worker.per_process import PerProcess
from video_worker.settings import AwsConfig

#: Error code → what is missing. A bare 404 (HEAD has no body) is an object.
_MISSING: dict[str, type[VideoWorkerError]] = {
    "NoSuchBucket": BucketNotFound,
    "ResourceNotFoundException": TableNotFound,
    "AWS.SimpleQueueService.NonExistentQueue": QueueNotFound,
    "QueueDoesNotExist": QueueNotFound,
    "NoSuchKey": ObjectNotFound,
    "NotFound": ObjectNotFound,
    "404": ObjectNotFound,
}
_DENIED = {"403", "AccessDenied", "AccessDeniedException", "InvalidAccessKeyId", "SignatureDoesNotMatch"}
_THROTTLED = {
    "SlowDown",
    "Throttling",
    "ThrottlingException",
    "ProvisionedThroughputExceededException",
    "RequestLimitExceeded",
    "RequestThrottled",
    "ServiceUnavailable",
    "InternalError",
    "InternalServerError",
    "RequestTimeout",
    "RequestTimeoutException",
    "TransactionInProgressException",
}


_session: PerProcess[boto3.session.Session] = PerProcess(boto3.session.Session)
_client_lock = threading.Lock()  # creating clients from one session is not thread-safe


def new_client(service: str, **kwargs: Any) -> Any:
    """A client from this process's one boto3 session (thread-safe).

    Each session parses and keeps its own copy of the service models and
    endpoint data; a worker builds a dozen clients (S3, DynamoDB, the broker's
    SQS and SNS clients), so one session per process saves tens of MB
    (BENCHMARKS.md, memory). Credentials and endpoints are per client.
    """
    session = _session.get()
    with _client_lock:
        return session.client(service, **kwargs)


def make_client(service: str, aws: AwsConfig) -> Any:
    """A boto3 client for ``service`` in the configured region, at its endpoint (``AwsConfig.endpoint``).

    botocore's own retries are kept small (standard mode, 3 retries: 4 attempts): longer
    waits belong to the task's retry policy, which does not block a worker slot.
    """
    config = Config(
        region_name=aws.region,
        retries={"mode": "standard", "max_attempts": 3},
        max_pool_connections=aws.max_pool_connections,
        connect_timeout=10,
        read_timeout=60,
    )
    return new_client(service, endpoint_url=aws.endpoint(service), config=config)


def translate(exc: BaseException, what: str) -> VideoWorkerError:
    """Map a botocore/boto3 exception to our error tree; ``what`` names the operation."""
    if isinstance(exc, (S3UploadFailedError, RetriesExceededError)):
        # boto3's managed transfers wrap the real cause (a ClientError, a reset connection, ...).
        cause = getattr(exc, "last_exception", None) or exc.__cause__ or exc.__context__
        return translate(cause, what) if cause is not None else TransientError(f"{what}: {exc}")
    if isinstance(exc, ClientError):
        error = exc.response.get("Error", {})
        code = str(error.get("Code", ""))
        status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) or 0)
        message = f"{what}: {code or status} {error.get('Message', '')}".strip()
        missing = _MISSING.get(code) or (ObjectNotFound if status == 404 else None)
        if missing is not None:
            return missing(message)
        if code in _DENIED or status == 403:
            return AccessDenied(message)
        if code in _THROTTLED or status >= 500 or status == 429:
            return TransientError(message)
        return PermanentError(message)
    if isinstance(exc, (BotoConnectionError, HTTPClientError, ReadTimeoutError, ConnectionError, TimeoutError)):
        return TransientError(f"{what}: {exc}")
    if isinstance(exc, BotoCoreError):
        return TransientError(f"{what}: {exc}")
    return PermanentError(f"{what}: {type(exc).__name__}: {exc}")


SDK_ERRORS: tuple[type[Exception], ...] = (
    ClientError,
    BotoCoreError,
    S3UploadFailedError,
    RetriesExceededError,
    ConnectionError,
    TimeoutError,
)
