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

    def download(self, uri: str, dest: Path, version_id: str | None = None, size: int | None = None) -> int:
        """Stream the object (that version, if given) at ``uri`` to ``dest``; return its size.

        ``size``, if known (the S3 event carries it), lets a small object come in one GET.
        """
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
            max_io_queue=16,  # downloaded chunks waiting for the disk: 4 MiB, not s3transfer's 25 MiB
            use_threads=threads > 1,
        )
        # Parts read for upload and held at once (s3transfer's default is 10: 80 MiB at 8 MiB parts).
        self._transfer.max_in_memory_upload_chunks = threads

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

    def download(self, uri: str, dest: Path, version_id: str | None = None, size: int | None = None) -> int:
        """One streamed GET below the multipart threshold; above it (or size unknown) boto3's
        managed transfer, which HEADs the object and fetches ranges in parallel."""
        bucket, key = split_s3_uri(uri)
        version = {"VersionId": version_id} if version_id else {}
        try:
            if size is not None and size < self._transfer.multipart_threshold:
                body = self._client.get_object(Bucket=bucket, Key=key, **version)["Body"]
                with dest.open("wb") as out:
                    for chunk in body.iter_chunks(self._transfer.io_chunksize):
                        out.write(chunk)
            else:
                self._client.download_file(bucket, key, str(dest), ExtraArgs=version or None, Config=self._transfer)
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
