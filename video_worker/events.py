"""Raw queue message body → segment events: the only place an S3 event is parsed.

Pure, no I/O, powertools-parser style: unwrap the envelope (SNS ``Message`` string),
validate the wire format with pydantic models of only the fields we read, convert
each record into ONE internal representation (``_ObjectEvent``, key URL-decoded in
``_decode_key`` only) and classify it as a ``SegmentEvent`` or a ``Skip``. Any body
of no known shape raises ``MalformedMessage`` (one line); nothing else is raised.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Annotated, Any, Literal, NoReturn, TypeVar
from urllib.parse import unquote_plus

from pydantic import BaseModel, ConfigDict, Field, StrictInt, StrictStr, ValidationError

from video_worker.errors import MalformedMessage
from video_worker.keys import parse_segment_key, why_not_segment_key
from video_worker.segments import Segment

CREATED_PREFIX = "ObjectCreated:"


@dataclass(frozen=True)
class SegmentEvent:
    """One ``ObjectCreated`` record for a segment key in the input bucket: work."""

    payload: Segment
    event_name: str  # as S3 sends it, minus a leading "s3:" (e.g. "ObjectCreated:Put")
    etag: str | None
    version_id: str | None
    sequencer: str | None
    size: int | None

    def work(self) -> Segment:
        """The chain's input: the segment plus the uploaded object's version.

        Version fields that do not validate are dropped (``download`` then
        reads them from S3) rather than losing the segment.
        """
        source = {
            "source_etag": self.etag.strip('"') if self.etag else None,
            "source_version_id": self.version_id,
            "source_sequencer": self.sequencer,
            "source_size": self.size,
        }
        try:
            return Segment.model_validate({**self.payload.model_dump(), **source})
        except ValidationError:
            return self.payload


@dataclass(frozen=True)
class Skip:
    """One record (or a whole test message) that is deliberately not work."""

    reason: str  # short, one line
    bucket: str | None
    key: str | None  # decoded


@dataclass(frozen=True)
class ParsedMessage:
    segments: list[SegmentEvent]
    skipped: list[Skip]


class _Wire(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)


_Size = Annotated[StrictInt, Field(ge=0)]


class _Bucket(_Wire):
    name: StrictStr


class _S3Object(_Wire):
    key: StrictStr
    size: _Size | None = None
    etag: StrictStr | None = Field(default=None, alias="eTag")
    version_id: StrictStr | None = Field(default=None, alias="versionId")
    sequencer: StrictStr | None = None


class _S3Entity(_Wire):
    bucket: _Bucket
    obj: _S3Object = Field(alias="object")


class _RecordSource(_Wire):
    event_source: StrictStr = Field(alias="eventSource")


class _S3Record(_Wire):
    event_name: StrictStr = Field(alias="eventName")
    s3: _S3Entity


class _S3Notification(_Wire):  # records are validated one by one: a foreign one is skipped
    records: list[dict[str, Any]] = Field(alias="Records", min_length=1)


class _S3TestEvent(_Wire):
    service: Literal["Amazon S3"] = Field(alias="Service")
    event: Literal["s3:TestEvent"] = Field(alias="Event")
    bucket: StrictStr | None = Field(default=None, alias="Bucket")


class _SnsNotification(_Wire):
    type: Literal["Notification"] = Field(alias="Type")
    message: StrictStr = Field(alias="Message")  # a JSON *string* on the wire, never an object


class _EventBridgeObject(_Wire):
    key: StrictStr
    size: _Size | None = None
    etag: StrictStr | None = None
    version_id: StrictStr | None = Field(default=None, alias="version-id")
    sequencer: StrictStr | None = None


class _EventBridgeDetail(_Wire):
    bucket: _Bucket
    obj: _EventBridgeObject = Field(alias="object")
    reason: StrictStr | None = None


class _EventBridgeEvent(_Wire):
    source: Literal["aws.s3"]
    detail_type: StrictStr = Field(alias="detail-type")
    detail: _EventBridgeDetail


# EventBridge "Object Created" ``reason`` → the S3 notification eventName suffix.
_EVENTBRIDGE_REASONS = {"PutObject": "Put", "POST Object": "Post", "CopyObject": "Copy",
                        "CompleteMultipartUpload": "CompleteMultipartUpload"}


@dataclass(frozen=True)
class _ObjectEvent:
    event_name: str
    bucket: str
    key: str  # decoded
    etag: str | None
    version_id: str | None
    sequencer: str | None
    size: int | None


def _decode_key(encoded: str) -> str:
    """The one place an object key is URL-decoded (form encoding: ``+`` is a space).

    S3 records encode keys with ``quote_plus`` (``/`` kept): ``a%40b`` in
    localstack/test_s3_notifications_sqs.snapshot.json, ``replication%2Dtest.png`` in
    aws-lambda-go/s3-replication-event.json. EventBridge keys get the same decoding: the
    EventBridge fixtures (powertools/s3EventBridgeNotificationObjectCreatedEvent.json,
    derived/pr4069__eb_s3_event.json, derived/pr4069__sqs_eb_s3_event.json, localstack/
    test_s3_notifications_eventbridge.snapshot.json) only hold keys without reserved
    characters, so they cannot settle it; Powertools' S3EventBridgeNotificationObject.key
    applies unquote_plus and LocalStack (AWS-validated) emits the same encoded key to
    EventBridge as to SQS. Invalid UTF-8 escapes are rejected (S3 keys are UTF-8).
    """
    try:
        return unquote_plus(encoded, errors="strict")
    except UnicodeDecodeError:
        _malformed(f"object key {_quote(encoded)} is not percent-encoded UTF-8")


def _from_s3_record(record: _S3Record) -> _ObjectEvent:
    obj, name = record.s3.obj, record.event_name.removeprefix("s3:")
    key = _decode_key(obj.key)
    return _ObjectEvent(name, record.s3.bucket.name, key, obj.etag, obj.version_id, obj.sequencer, obj.size)


def _from_eventbridge(event: _EventBridgeEvent) -> _ObjectEvent:
    detail, obj = event.detail, event.detail.obj
    name = event.detail_type  # "Object Deleted", "Object Restore Completed", ...: never work
    if name == "Object Created":
        reason = detail.reason or "*"
        name = CREATED_PREFIX + _EVENTBRIDGE_REASONS.get(reason, reason)
    key = _decode_key(obj.key)
    return _ObjectEvent(name, detail.bucket.name, key, obj.etag, obj.version_id, obj.sequencer, obj.size)


def _classify(event: _ObjectEvent, input_bucket: str) -> SegmentEvent | Skip:
    def skip(reason: str) -> Skip:
        return Skip(reason=reason, bucket=event.bucket, key=event.key)

    if not event.event_name.startswith(CREATED_PREFIX):
        return skip(f"event {_clip(event.event_name)} is not ObjectCreated")
    if event.bucket != input_bucket:
        return skip(f"bucket {_quote(event.bucket)} is not the input bucket {_quote(input_bucket)}")
    payload = parse_segment_key(event.bucket, event.key)
    if payload is None:
        return skip(f"not a segment key: {_clip(why_not_segment_key(event.key))}")
    return SegmentEvent(payload, event.event_name, event.etag, event.version_id, event.sequencer, event.size)


def parse_message(body: str | bytes, input_bucket: str) -> ParsedMessage:
    """Parse one SQS message body; raise ``MalformedMessage`` (and only that) if it is
    not JSON or not of a known shape (the one-line message names the problem)."""
    segments: list[SegmentEvent] = []
    skipped: list[Skip] = []
    for outcome in _parse_document(_load_json(body, "message body"), "message body", inside_sns=False):
        result = outcome if isinstance(outcome, Skip) else _classify(outcome, input_bucket)
        if isinstance(result, SegmentEvent):
            segments.append(result)
        else:
            skipped.append(result)
    return ParsedMessage(segments=segments, skipped=skipped)


def _parse_document(document: object, what: str, *, inside_sns: bool) -> list[_ObjectEvent | Skip]:
    if not isinstance(document, dict):
        kind = {list: "an array", str: "a string", bool: "a boolean", type(None): "null"}
        _malformed(f"{what} is {kind.get(type(document), 'a number')} in JSON, not an object")
    if "Records" in document:
        return _parse_records(_validate(_S3Notification, document, what), what)
    if "Event" in document or "Service" in document:
        test = _validate(_S3TestEvent, document, what)
        return [Skip(reason=test.event, bucket=test.bucket, key=None)]
    if "Type" in document or "Message" in document:
        if inside_sns:
            _malformed(f"{what} is an SNS envelope inside an SNS envelope")
        envelope = _validate(_SnsNotification, document, what)
        return _parse_document(_load_json(envelope.message, "SNS Message"), "SNS Message", inside_sns=True)
    if "source" in document or "detail-type" in document:
        return [_from_eventbridge(_validate(_EventBridgeEvent, document, what))]
    _malformed(f"{what} is not a known event shape (keys: {_clip(', '.join(sorted(document)) or 'none')})")


def _parse_records(notification: _S3Notification, what: str) -> list[_ObjectEvent | Skip]:
    outcomes: list[_ObjectEvent | Skip] = []
    for index, raw in enumerate(notification.records):
        where = f"{what} Records[{index}]"
        source = _validate(_RecordSource, raw, where).event_source
        if source == "aws:s3":
            outcomes.append(_from_s3_record(_validate(_S3Record, raw, where)))
        else:
            outcomes.append(Skip(f"record eventSource {_quote(source)} is not 'aws:s3'", None, None))
    return outcomes


_M = TypeVar("_M", bound=_Wire)


def _reject_constant(name: str) -> NoReturn:
    raise ValueError(f"{name} is not JSON")


def _load_json(text: str | bytes, what: str) -> object:
    if isinstance(text, bytes):
        try:
            text = text.decode("utf-8")
        except UnicodeDecodeError as exc:
            _malformed(f"{what} is not UTF-8 ({exc.reason} at byte {exc.start})")
    if not isinstance(text, str):
        _malformed(f"{what} is a {type(text).__name__}, not text")
    try:
        return json.loads(text, parse_constant=_reject_constant)
    except RecursionError:
        _malformed(f"{what} is nested too deeply")
    except ValueError as exc:  # JSONDecodeError, NaN/Infinity, too many integer digits
        _malformed(f"{what} is not JSON: {_clip(str(exc))}")


def _validate(model: type[_M], data: object, where: str) -> _M:
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        errors = exc.errors(include_url=False, include_input=False)
        loc = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in errors[0]["loc"]).lstrip(".")
        more = f" (+{len(errors) - 1} more)" if len(errors) > 1 else ""
        _malformed(f"{where}: {_clip(loc) + ': ' if loc else ''}{_clip(errors[0]['msg'])}{more}")


def _clip(text: str, limit: int = 80) -> str:
    """One line of at most ``limit`` characters (control characters escaped)."""
    if not text.isprintable():
        text = repr(text)[1:-1]
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _quote(text: str) -> str:
    return f"'{_clip(text)}'"


def _malformed(message: str) -> NoReturn:
    raise MalformedMessage(" ".join(message.split()) or "malformed message") from None
