"""A segment and the JSON payloads its stages pass on, from the bridge to the completion row.

Every task receives and returns one of these models, dumped to plain JSON
(``parse_payload`` validates one). They are small by construction: they carry
S3 URIs and scratch-file references, never video bytes.
"""

from __future__ import annotations

import unicodedata
from typing import Annotated, Any, Literal, TypeVar, get_args

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError, model_validator

from video_worker.errors import InvalidPayload
from video_worker.ordering import Upload

Mode = Literal["anaglyph", "sbs"]
"""An output layout: red/cyan anaglyph or side-by-side. The one definition; models, keys and the CLI use it."""
MODES: tuple[Mode, ...] = get_args(Mode)
JOB_ID_MAX_LENGTH = 128
SeamContext = Literal["previous", "missing"] | None
"""What a model that reads the previous segment (``ports.Model.context_frames``) had: ``previous``, its last
frames (the cut joins without a jump); ``missing``, nothing (it was not uploaded in time: the cut may show a change
in depth); None for a first segment or a model that reads none."""
_SEAM_DESCRIPTION = ("previous: the model read the previous segment's last frames first; missing: it was not in the "
                     "input bucket in time (the cut may show a change in depth); absent: first segment or no context")


def not_a_mode(value: object) -> str:
    """Why ``value`` is no output mode, in one line (for skip logs and a model's refusal)."""
    return f"mode {value!r} is not {' or '.join(MODES)}"


def check_job_id(value: str) -> str:
    """Accept a job id only if it is one safe path segment.

    Not empty, at most ``JOB_ID_MAX_LENGTH`` characters, no ``/`` or ``\\``,
    no ``..``, not ``.``, no control or format characters (NUL, newlines,
    bidi overrides).
    """
    if not value:
        raise ValueError("job id is empty")
    if len(value) > JOB_ID_MAX_LENGTH:
        raise ValueError(f"job id is longer than {JOB_ID_MAX_LENGTH} characters")
    if "/" in value or "\\" in value:
        raise ValueError("job id contains a path separator")
    if value == "." or ".." in value:
        raise ValueError("job id contains '..' or is '.'")
    if any(unicodedata.category(ch) in ("Cc", "Cf", "Cs", "Zl", "Zp") for ch in value):
        raise ValueError("job id contains a control character")
    return value


JobId = Annotated[str, AfterValidator(check_job_id)]


def check_s3_uri(value: str) -> str:
    if not value.startswith("s3://"):
        raise ValueError("not an s3:// URI")
    bucket, _, key = value[len("s3://") :].partition("/")
    if not bucket or not key:
        raise ValueError("s3 URI needs a bucket and a key")
    return value


S3Uri = Annotated[str, AfterValidator(check_s3_uri)]


def s3_uri(bucket: str, key: str) -> str:
    """The ``s3://bucket/key`` URI of an object (key not encoded)."""
    return f"s3://{bucket}/{key}"


def split_s3_uri(uri: str) -> tuple[str, str]:
    """``s3://bucket/key`` → ``(bucket, key)``."""
    bucket, _, key = check_s3_uri(uri)[len("s3://") :].partition("/")
    return bucket, key


class _Payload(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Segment(_Payload):
    """One segment to process: the input of ``video_worker.download`` (also exported as ``VideoWorkerPayload``,
    its name in the original design).

    The optional ``source_*`` fields identify the uploaded object version (from
    the S3 event). When they are missing, ``download`` asks S3 (one HEAD).
    """

    job_id: JobId
    segment_index: int = Field(ge=0)
    total_segments: int = Field(ge=1)
    segment_s3_uri: S3Uri
    mode: Mode
    source_etag: str | None = Field(None, max_length=128)
    source_version_id: str | None = Field(None, max_length=1024)
    source_sequencer: str | None = Field(None, max_length=64, pattern=r"^[0-9A-Fa-f]*$")
    source_size: int | None = Field(None, ge=0)

    @property
    def upload(self) -> Upload:
        """The upload of the segment key this work is about (``ordering``)."""
        return Upload(self.source_etag, self.source_sequencer, self.source_version_id)

    @model_validator(mode="after")
    def _index_below_total(self) -> Segment:
        if self.segment_index >= self.total_segments:
            raise ValueError(
                f"segment_index {self.segment_index} is not below total_segments {self.total_segments}"
            )
        return self


class LocalFile(_Payload):
    """A file in one worker host's scratch directory."""

    host: str = Field(description="the worker host (and scratch directory) holding the file")
    path: str
    size: int = Field(ge=0)


class Downloaded(_Payload):
    """Output of ``video_worker.download``, input of ``video_worker.infer``.

    ``segment`` carries the source version that was downloaded. ``skipped``
    is set (and ``input`` is ``None``) when the chain stops here because this
    source version already has its completion row.
    """

    segment: Segment
    input: LocalFile | None
    skipped: str | None = None


class Inferred(_Payload):
    """Output of ``video_worker.infer``, input of ``video_worker.upload``."""

    segment: Segment
    output: LocalFile
    model: str
    model_fingerprint: str | None = Field(None, max_length=128, description="what shaped the output (settings, "
                                                                          "versions), as the model reports it")
    seam_context: SeamContext = Field(None, description=_SEAM_DESCRIPTION)


class Uploaded(_Payload):
    """Output of ``video_worker.upload``, input of ``video_worker.record``.

    ``generation`` numbers the outputs written at ``output_s3_uri`` (``ordering``);
    ``skipped`` is set (and the chain stops) when a newer upload's output is there.
    """

    segment: Segment
    output_s3_uri: S3Uri
    generation: int | None = Field(None, ge=1)
    skipped: str | None = None
    model: str | None = None
    model_fingerprint: str | None = Field(None, max_length=128)
    seam_context: SeamContext = Field(None, description=_SEAM_DESCRIPTION)


class SegmentCompletion(_Payload):
    """The DynamoDB row that reassembly counts; output of ``video_worker.record``.

    The ``source_*`` attributes (added to the row when known) identify the
    input version the output was made from; they make repeats detectable.
    ``output_generation`` orders rows like outputs (``ordering``).
    """

    job_id: JobId
    segment_index: int = Field(ge=0)
    output_s3_uri: S3Uri
    completed_at: int = Field(ge=0, description="Unix seconds")
    total_segments: int = Field(ge=1)
    source_etag: str | None = None
    source_sequencer: str | None = None
    source_version_id: str | None = None
    output_generation: int | None = None
    model: str | None = Field(None, description="the MODEL that made the output")
    model_fingerprint: str | None = Field(None, description="the model's hash of its output-shaping settings")
    seam_context: SeamContext = Field(None, description=_SEAM_DESCRIPTION)


#: The segment's name in the original design (and in callers' code).
VideoWorkerPayload = Segment

M = TypeVar("M", bound=BaseModel)


def parse_payload(model: type[M], data: Any) -> M:
    """``data`` as a ``model``; ``InvalidPayload`` (one line naming the first bad field) if it is not one."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or model.__name__
        raise InvalidPayload(f"invalid {model.__name__} payload: {where}: {first['msg']}") from None
