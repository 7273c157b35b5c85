"""Object storage: the S3 adapter behind a small Protocol.

Transfers stream between disk and S3 through boto3's managed transfer
(multipart above the chunk size, a bounded number of chunks in flight), so
memory stays bounded whatever the segment size.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from boto3.s3.transfer import TransferConfig

from video_worker.aws import SDK_ERRORS, translate
from video_worker.payloads import split_s3_uri

MIB = 1024 * 1024


@dataclass(frozen=True)
class ObjectInfo:
    size: int
    etag: str  # without quotes
    version_id: str | None


class ObjectStorage(Protocol):
    def head(self, uri: str) -> ObjectInfo:
        """Size, ETag and version of the object at ``uri``."""
        ...

    def download(self, uri: str, dest: Path, version_id: str | None = None) -> int:
        """Stream the object (that version, if given) at ``uri`` to ``dest``; return its size."""
        ...

    def upload(self, src: Path, uri: str) -> None:
        """Stream ``src`` to the object at ``uri`` (replacing it)."""
        ...


class S3Storage:
    """``ObjectStorage`` over a boto3 S3 client."""

    def __init__(self, client: Any, *, chunk_mib: int = 8, threads: int = 4) -> None:
        self._client = client
        self._transfer = TransferConfig(
            multipart_threshold=chunk_mib * MIB,
            multipart_chunksize=chunk_mib * MIB,
            max_concurrency=threads,
            io_chunksize=256 * 1024,
            use_threads=threads > 1,
        )

    def head(self, uri: str) -> ObjectInfo:
        bucket, key = split_s3_uri(uri)
        try:
            head = self._client.head_object(Bucket=bucket, Key=key)
        except SDK_ERRORS as exc:
            raise translate(exc, f"head {uri}") from exc
        version = head.get("VersionId")
        return ObjectInfo(
            size=int(head["ContentLength"]),
            etag=str(head.get("ETag", "")).strip('"'),
            version_id=None if version in (None, "null") else str(version),
        )

    def download(self, uri: str, dest: Path, version_id: str | None = None) -> int:
        bucket, key = split_s3_uri(uri)
        extra = {"VersionId": version_id} if version_id else None
        try:
            self._client.download_file(bucket, key, str(dest), ExtraArgs=extra, Config=self._transfer)
        except SDK_ERRORS as exc:
            raise translate(exc, f"download {uri}") from exc
        return dest.stat().st_size

    def upload(self, src: Path, uri: str) -> None:
        bucket, key = split_s3_uri(uri)
        try:
            self._client.upload_file(
                str(src), bucket, key, Config=self._transfer, ExtraArgs={"ContentType": "video/mp4"}
            )
        except SDK_ERRORS as exc:
            raise translate(exc, f"upload {uri}") from exc
