"""S3: ``ports.ObjectStorage`` over a boto3 client.

Transfers stream between disk and S3 with bounded memory: downloads through
one GET (small objects) or boto3's managed transfer (ranges in parallel);
uploads through one PUT or a multipart upload of this module's own (``threads``
parts at a time, each streamed from its range of the file). Uploads may be conditional
(``If-None-Match: *`` / ``If-Match: <etag>``, checked by S3 when the object is
written, i.e. at ``CompleteMultipartUpload`` for large ones): a lost race is
``WriteConflict``. Both check the stage's ``Deadline`` between chunks.
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from boto3.s3.transfer import TransferConfig
from s3transfer.utils import ReadFileChunk

from video_worker.adapters.aws import SDK_ERRORS, translate
from video_worker.errors import WriteConflict
from video_worker.limits import Deadline
from video_worker.ports import ObjectInfo
from video_worker.segments import split_s3_uri

MIB = 1024 * 1024


def _is_precondition_failure(exc: BaseException) -> bool:
    response = getattr(exc, "response", None) or {}
    code = str(response.get("Error", {}).get("Code", ""))
    status = response.get("ResponseMetadata", {}).get("HTTPStatusCode")
    return code in ("PreconditionFailed", "ConditionalRequestConflict") or status in (409, 412)


class S3Storage:
    """``ports.ObjectStorage`` over a boto3 S3 client."""

    def __init__(self, client: Any, *, chunk_mib: int = 8, threads: int = 4) -> None:
        self._client = client
        self._chunk = chunk_mib * MIB
        self._threads = threads
        self._transfer = TransferConfig(
            multipart_threshold=self._chunk,
            multipart_chunksize=self._chunk,
            max_concurrency=threads,
            io_chunksize=256 * 1024,
            max_io_queue=16,  # downloaded chunks waiting for the disk: 4 MiB, not s3transfer's 25 MiB
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
            metadata={str(k).lower(): str(v) for k, v in (head.get("Metadata") or {}).items()},
        )

    def download(self, uri: str, dest: Path, version_id: str | None = None, size: int | None = None,
                 deadline: Deadline | None = None) -> int:
        """One streamed GET below the multipart threshold; above it (or size unknown) boto3's
        managed transfer, which HEADs the object and fetches ranges in parallel."""
        bucket, key = split_s3_uri(uri)
        version = {"VersionId": version_id} if version_id else {}
        check = deadline.check if deadline else (lambda: None)
        try:
            if size is not None and size < self._chunk:
                body = self._client.get_object(Bucket=bucket, Key=key, **version)["Body"]
                with dest.open("wb") as out:
                    for chunk in body.iter_chunks(self._transfer.io_chunksize):
                        out.write(chunk)
                        check()
            else:
                self._client.download_file(bucket, key, str(dest), ExtraArgs=version or None, Config=self._transfer,
                                           Callback=lambda _n: check())
        except SDK_ERRORS as exc:
            raise translate(exc, f"download {uri}") from exc
        return dest.stat().st_size

    def upload(self, src: Path, uri: str, *, metadata: Mapping[str, str] | None = None,
               if_match: str | None = None, if_none_match: bool = False,
               deadline: Deadline | None = None) -> str:
        bucket, key = split_s3_uri(uri)
        args: dict[str, Any] = {"Bucket": bucket, "Key": key}
        conditions = {"IfMatch": f'"{if_match}"'} if if_match else ({"IfNoneMatch": "*"} if if_none_match else {})
        extra = {"ContentType": "video/mp4", "Metadata": dict(metadata or {})}
        try:
            if src.stat().st_size < self._chunk:
                if deadline:
                    deadline.check()
                with src.open("rb") as body:
                    response = self._client.put_object(**args, **extra, **conditions, Body=body)
            else:
                response = self._multipart(src, args, extra, conditions, deadline)
        except SDK_ERRORS as exc:
            if _is_precondition_failure(exc):
                raise WriteConflict(f"upload {uri}: the object changed ({exc})") from exc
            raise translate(exc, f"upload {uri}") from exc
        return str(response.get("ETag", "")).strip('"')

    def _multipart(self, src: Path, args: dict[str, Any], extra: dict[str, Any], conditions: dict[str, str],
                   deadline: Deadline | None) -> Any:
        """Parts of ``chunk_mib``, ``threads`` at a time, each streamed from its range of the file (s3transfer's
        ``ReadFileChunk``: seekable for botocore's retries, never the whole part in memory)."""
        upload_id = self._client.create_multipart_upload(**args, **extra)["UploadId"]
        size = src.stat().st_size

        def send(number_offset: tuple[int, int]) -> dict[str, Any]:
            number, offset = number_offset
            if deadline:
                deadline.check()
            with ReadFileChunk.from_filename(str(src), offset, self._chunk, enable_callbacks=False) as body:
                part = self._client.upload_part(**args, UploadId=upload_id, PartNumber=number, Body=body)
            return {"PartNumber": number, "ETag": part["ETag"]}

        try:
            with ThreadPoolExecutor(max_workers=self._threads, thread_name_prefix="s3-part") as pool:
                parts = list(pool.map(send, enumerate(range(0, size, self._chunk), start=1)))
            return self._client.complete_multipart_upload(
                **args, UploadId=upload_id, MultipartUpload={"Parts": parts}, **conditions)
        except BaseException:
            with contextlib.suppress(*SDK_ERRORS):  # else the bucket's rule for incomplete uploads cleans it up
                self._client.abort_multipart_upload(**args, UploadId=upload_id)
            raise
