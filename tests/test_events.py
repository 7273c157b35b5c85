"""events.parse_message over real S3 payloads, hand-made edge cases and random input.

Fixtures live in tests/fixtures/s3-events/ (copied from the shared collection; see its
SOURCES.md). Files under ``derived/`` are NOT verbatim captures: they were extracted
or transcribed from the sources SOURCES.md names. Test ids keep the sub-folder, so a
``derived/...`` id marks a derived payload.
"""

from __future__ import annotations

import copy
import json
import unicodedata
from pathlib import Path
from typing import Any
from urllib.parse import quote_plus

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.support.events import s3_notification_body
from video_worker.errors import MalformedMessage
from video_worker.events import ParsedMessage, SegmentEvent, Skip, parse_message
from video_worker.keys import parse_segment_key, why_not_segment_key
from video_worker.segments import Segment, check_job_id

FIXTURES = Path(__file__).parent / "fixtures" / "s3-events"
BUCKET = "video-input"
NOT_UNDER = "not a segment key: key is not under 'segments/'"

# Lambda SQS events (``Records[].eventSource == "aws:sqs"``) are not queue bodies: only
# their ``Records[0].body`` is what our SQS consumer receives.
LAMBDA_SQS_WRAPPED = {
    "powertools/s3SqsEvent.json",
    "powertools/snsSqsEvent.json",
    "derived/pr4069__sqs_eb_s3_event.json",
    "derived/pr4069__sqs_rawsns_s3_event.json",
    "derived/pr4069__sqs_s3_event.json",
    "derived/pr4069__sqs_sns_s3_event.json",
}


def fixture_text(name: str) -> str:
    return (FIXTURES / name).read_text(encoding="utf-8")


def body_of(name: str) -> str:
    """The SQS message body a fixture stands for (verbatim text, not re-serialised)."""
    if name not in LAMBDA_SQS_WRAPPED:
        return fixture_text(name)
    (record,) = json.loads(fixture_text(name))["Records"]
    assert record["eventSource"] == "aws:sqs"
    body = record["body"]
    assert isinstance(body, str)
    return body


def one_line(text: str) -> bool:
    return not any(unicodedata.category(ch) in ("Cc", "Zl", "Zp") for ch in text)


def parse_ok(body: str | bytes, bucket: str = BUCKET) -> ParsedMessage:
    parsed = parse_message(body, bucket)
    assert parsed.segments or parsed.skipped, "every parsed message must account for something"
    for skip in parsed.skipped:
        assert one_line(skip.reason) and len(skip.reason) <= 240, skip.reason
    return parsed


def only_skip(body: str | bytes, bucket: str = BUCKET) -> Skip:
    parsed = parse_ok(body, bucket)
    assert parsed.segments == []
    (skip,) = parsed.skipped
    return skip


def only_segment(body: str | bytes, bucket: str = BUCKET) -> SegmentEvent:
    parsed = parse_ok(body, bucket)
    assert parsed.skipped == [], parsed.skipped
    (segment,) = parsed.segments
    return segment


def malformed(body: str | bytes, bucket: str = BUCKET) -> str:
    with pytest.raises(MalformedMessage) as info:
        parse_message(body, bucket)
    message = str(info.value)
    assert message and one_line(message) and len(message) <= 300, message
    return message


# --- real fixtures as they are -------------------------------------------------------------

# (fixture, input bucket, expected skip reason, skip bucket, skip key (decoded)) — all real
# fixture keys are not segment keys, so every one is exactly one Skip.
REAL_SKIPS = [
    ("powertools/s3Event.json", "lambda-artifacts-deafc19498e3f2df", NOT_UNDER,
     "lambda-artifacts-deafc19498e3f2df", "b21b84d653bb07b05b1e6b33684dc11b"),
    ("powertools/s3SqsEvent.json", "xxx", NOT_UNDER, "xxx", "test.pdf"),
    ("powertools/s3EventBridgeNotificationObjectCreatedEvent.json", "example-bucket", NOT_UNDER,
     "example-bucket", "IMG_m7fzo3.jpg"),
    ("powertools/s3EventDeleteObject.json", "lambda-artifacts-deafc19498e3f2df",
     "event ObjectRemoved:Delete is not ObjectCreated", "lambda-artifacts-deafc19498e3f2df",
     "b21b84d653bb07b05b1e6b33684dc11b"),
    ("powertools/s3EventGlacier.json", "lambda-artifacts-deafc19498e3f2df", NOT_UNDER,
     "lambda-artifacts-deafc19498e3f2df", "b21b84d653bb07b05b1e6b33684dc11b"),
    # %20 decodes to a space too (real S3 would send "+", both decode the same).
    ("aws-lambda-go/s3-event.json", "sourcebucket", NOT_UNDER, "sourcebucket", "Happy Face.jpg"),
    ("aws-lambda-go/s3-replication-event.json", "amzn-s3-demo-bucket1",
     "event Replication:OperationFailedReplication is not ObjectCreated", "amzn-s3-demo-bucket1",
     "replication-test.png"),
    ("aws-lambda-go/s3-restore-event.json", "example-bucket",
     "event ObjectRestore:Completed is not ObjectCreated", "example-bucket", "glacier-test.txt"),
    ("derived/awsdocs__s3-test-event.json", BUCKET, "s3:TestEvent", "bucketname", None),
    ("derived/pr4069__eb_s3_event.json", "s3-eb-unwrap-sourcebucket-7mop1gqlyrzu", NOT_UNDER,
     "s3-eb-unwrap-sourcebucket-7mop1gqlyrzu", "s3-eb-template.yaml"),
    ("derived/pr4069__sqs_eb_s3_event.json", "s3-eb-unwrap-sourcebucket-7mop1gqlyrzu", NOT_UNDER,
     "s3-eb-unwrap-sourcebucket-7mop1gqlyrzu", "__init__.py"),
    ("derived/pr4069__sqs_rawsns_s3_event.json", "unwraptestevents-bucket-683517028648", NOT_UNDER,
     "unwraptestevents-bucket-683517028648", "samconfig.toml"),
    ("derived/pr4069__sqs_s3_event.json", "sqs-s3-unwrap-bucket-683517028648", NOT_UNDER,
     "sqs-s3-unwrap-bucket-683517028648", "samconfig.toml"),
    ("derived/pr4069__sqs_sns_s3_event.json", "unwraptestevents-bucket-683517028648", NOT_UNDER,
     "unwraptestevents-bucket-683517028648", "firehose-s3-template.json"),
]


@pytest.mark.parametrize(("name", "bucket", "reason", "skip_bucket", "skip_key"), REAL_SKIPS,
                         ids=[row[0] for row in REAL_SKIPS])
def test_real_fixture_outcome(
    name: str, bucket: str, reason: str, skip_bucket: str, skip_key: str | None
) -> None:
    assert only_skip(body_of(name), bucket) == Skip(reason, skip_bucket, skip_key)
    assert only_skip(body_of(name).encode("utf-8"), bucket) == Skip(reason, skip_bucket, skip_key)


@pytest.mark.parametrize("name", ["aws-lambda-go/s3-replication-event.json",
                                  "aws-lambda-go/s3-restore-event.json"])
def test_decoded_key_matches_aws_lambda_go_url_decoded_key(name: str) -> None:
    record = json.loads(fixture_text(name))["Records"][0]
    assert "%2D" in record["s3"]["object"]["key"]
    assert only_skip(body_of(name)).key == record["s3"]["object"]["urlDecodedKey"]


@pytest.mark.parametrize("name", [row[0] for row in REAL_SKIPS if row[2] == NOT_UNDER])
def test_real_object_created_in_another_bucket_is_skipped_for_the_bucket(name: str) -> None:
    skip = only_skip(body_of(name), "some-other-bucket")
    assert skip.reason.startswith("bucket '") and skip.reason.endswith("is not the input bucket 'some-other-bucket'")


def test_sns_envelope_around_a_non_s3_message_is_malformed() -> None:
    message = malformed(body_of("powertools/snsSqsEvent.json"))
    assert message.startswith("SNS Message is not a known event shape (keys: message, username)")


def test_a_whole_lambda_sqs_event_is_not_a_body_its_records_are_skipped() -> None:
    skip = only_skip(fixture_text("powertools/s3SqsEvent.json"))
    assert skip == Skip("record eventSource 'aws:sqs' is not 'aws:s3'", None, None)


# --- the same real payloads, retargeted at a segment key -------------------------------------

SEGMENT_KEY = "segments/job 7+a/00003_00010_anaglyph.mp4"
ENCODED_SEGMENT_KEY = "segments/job+7%2Ba/00003_00010_anaglyph.mp4"  # what S3 puts on the wire


def _retarget(document: dict[str, Any], bucket: str, encoded_key: str) -> dict[str, Any]:
    """Swap bucket name and object key in the right field, keeping everything else."""
    entity = document["Records"][0]["s3"] if "Records" in document else document["detail"]
    assert isinstance(entity["bucket"]["name"], str) and isinstance(entity["object"]["key"], str)
    entity["bucket"]["name"] = bucket
    entity["object"]["key"] = encoded_key
    return entity["object"]  # type: ignore[no-any-return]


def retargeted_body(name: str, bucket: str, encoded_key: str) -> tuple[str, dict[str, Any]]:
    """The fixture's body with a new bucket and key; returns (body, wire object fields)."""
    document = json.loads(body_of(name))
    if document.get("Type") == "Notification":
        inner = json.loads(document["Message"])
        obj = _retarget(inner, bucket, encoded_key)
        document["Message"] = json.dumps(inner, separators=(",", ":"))
        assert isinstance(document["Message"], str)  # the envelope stays a JSON *string*
    else:
        obj = _retarget(document, bucket, encoded_key)
    return json.dumps(document, indent=2), obj


SHAPES = [
    pytest.param("powertools/s3Event.json", "ObjectCreated:Put", id="bare/powertools"),
    pytest.param("derived/pr4069__sqs_s3_event.json", "ObjectCreated:Put", id="bare/derived-s3-sqs"),
    pytest.param("powertools/s3SqsEvent.json", "ObjectCreated:Put", id="bare-versioned/powertools"),
    pytest.param("aws-lambda-go/s3-event.json", "ObjectCreated:Put", id="bare/aws-lambda-go"),
    pytest.param("derived/pr4069__sqs_sns_s3_event.json", "ObjectCreated:Put", id="sns-envelope/derived"),
    pytest.param("derived/pr4069__sqs_rawsns_s3_event.json", "ObjectCreated:Put", id="raw-sns/derived"),
    pytest.param("powertools/s3EventBridgeNotificationObjectCreatedEvent.json", "ObjectCreated:Put",
                 id="eventbridge/powertools"),
    pytest.param("derived/pr4069__eb_s3_event.json", "ObjectCreated:Put", id="eventbridge/derived"),
    pytest.param("derived/pr4069__sqs_eb_s3_event.json", "ObjectCreated:Put", id="eventbridge-via-sqs/derived"),
]


@pytest.mark.parametrize(("name", "event_name"), SHAPES)
def test_every_real_shape_yields_the_segment_payload(name: str, event_name: str) -> None:
    body, obj = retargeted_body(name, BUCKET, ENCODED_SEGMENT_KEY)
    segment = only_segment(body)
    assert segment.payload == Segment(
        job_id="job 7+a", segment_index=3, total_segments=10,
        segment_s3_uri=f"s3://{BUCKET}/{SEGMENT_KEY}", mode="anaglyph",
    )
    assert segment.event_name == event_name
    assert segment.size == obj["size"] and isinstance(segment.size, int)
    assert segment.etag == obj.get("eTag", obj.get("etag")) and segment.etag
    assert segment.sequencer == obj["sequencer"]
    assert segment.version_id == obj.get("versionId", obj.get("version-id"))


def test_versioned_real_record_keeps_its_version_id() -> None:
    body, _ = retargeted_body("powertools/s3SqsEvent.json", BUCKET, ENCODED_SEGMENT_KEY)
    assert only_segment(body).version_id == "yd3d4HaWOT2zguDLvIQLU6ptDTwKBnQV"


@pytest.mark.parametrize(("name", "event_name"), SHAPES)
def test_every_real_shape_retargeted_at_another_bucket_is_skipped(name: str, event_name: str) -> None:
    body, _ = retargeted_body(name, "elsewhere", ENCODED_SEGMENT_KEY)
    assert only_skip(body) == Skip(
        f"bucket 'elsewhere' is not the input bucket '{BUCKET}'", "elsewhere", SEGMENT_KEY
    )


@pytest.mark.parametrize(("name", "event_name"), SHAPES)
def test_every_real_shape_decodes_the_key_exactly_once(name: str, event_name: str) -> None:
    body, _ = retargeted_body(name, BUCKET, "segments/a%252Bb/00000_00001_sbs.mp4")
    assert only_segment(body).payload.job_id == "a%2Bb"


# --- localstack snapshots (normalised captures against real AWS) -----------------------------


def _walk(node: Any) -> Any:
    if isinstance(node, dict):
        yield node
        for value in node.values():
            yield from _walk(value)
    elif isinstance(node, list):
        for value in node:
            yield from _walk(value)


def _snapshot(name: str) -> Any:
    return json.loads(fixture_text(f"localstack/{name}"))


def test_localstack_sqs_records_every_event_name() -> None:
    records = [n for n in _walk(_snapshot("test_s3_notifications_sqs.snapshot.json")) if "eventSource" in n]
    seen = set()
    for record in records:
        name = record["eventName"]
        seen.add(name)
        bucket = record["s3"]["bucket"]["name"]
        skip = only_skip(json.dumps({"Records": [record]}), bucket)
        if name.startswith("ObjectCreated:"):
            assert skip.reason.startswith("not a segment key: ")
            retargeted = copy.deepcopy(record)
            retargeted["s3"]["object"]["key"] = ENCODED_SEGMENT_KEY
            segment = only_segment(json.dumps({"Records": [retargeted]}), bucket)
            assert (segment.event_name, segment.payload.job_id) == (name, "job 7+a")
            assert segment.size == record["s3"]["object"]["size"]
        else:
            assert skip.reason == f"event {name} is not ObjectCreated"
    assert seen == {
        "ObjectCreated:Put", "ObjectCreated:Copy", "ObjectCreated:CompleteMultipartUpload",
        "ObjectRemoved:Delete", "ObjectRemoved:DeleteMarkerCreated", "ObjectRestore:Post",
        "ObjectRestore:Completed", "ObjectTagging:Put", "ObjectTagging:Delete", "ObjectAcl:Put",
    }


def test_localstack_key_encoding_record_is_decoded() -> None:
    records = [n for n in _walk(_snapshot("test_s3_notifications_sqs.snapshot.json"))
               if n.get("s3", {}).get("object", {}).get("key") == "a%40b"]
    assert len(records) == 1
    assert only_skip(json.dumps({"Records": records})).key == "a@b"


def test_localstack_eventbridge_detail_types() -> None:
    events = [n for n in _walk(_snapshot("test_s3_notifications_eventbridge.snapshot.json"))
              if n.get("source") == "aws.s3"]
    seen = set()
    for event in events:
        kind = event["detail-type"]
        seen.add(kind)
        skip = only_skip(json.dumps(event), event["detail"]["bucket"]["name"])
        if kind == "Object Created":
            assert skip.reason.startswith("not a segment key: ")
            retargeted = copy.deepcopy(event)
            retargeted["detail"]["object"]["key"] = ENCODED_SEGMENT_KEY
            segment = only_segment(json.dumps(retargeted), event["detail"]["bucket"]["name"])
            assert segment.event_name == "ObjectCreated:Put"  # reason "PutObject"
        else:
            assert skip.reason == f"event {kind} is not ObjectCreated"
    assert seen == {"Object Created", "Object Deleted", "Object ACL Updated",
                    "Object Restore Initiated", "Object Restore Completed"}


def test_localstack_sns_snapshot_message_must_be_a_string_on_the_wire() -> None:
    envelopes = [n for n in _walk(_snapshot("test_s3_notifications_sns.snapshot.json"))
                 if n.get("Type") == "Notification"]
    assert len(envelopes) == 3
    for envelope in envelopes:
        # the snapshot stores Message already parsed; real SNS sends a JSON string
        assert "Message: Input should be a valid string" in malformed(json.dumps(envelope))
        wire = dict(envelope, Message=json.dumps(envelope["Message"]))
        skip = only_skip(json.dumps(wire), "<resource:1>")
        assert skip.reason.startswith("not a segment key: ")
        assert skip.key in {"bucket-key", "testupload/dir1/testfile.txt"}


# --- own table: keys ----------------------------------------------------------------------------


def record(key: str, *, bucket: str = BUCKET, event_name: str = "ObjectCreated:Put",
           source: str = "aws:s3") -> dict[str, Any]:
    """A record whose wire key is ``key`` exactly (already encoded)."""
    doc = json.loads(s3_notification_body(bucket, "placeholder", size=1, etag="e", event_name=event_name))
    rec: dict[str, Any] = doc["Records"][0]
    rec["s3"]["object"]["key"] = key
    rec["eventSource"] = source
    return rec


def body(*records: dict[str, Any]) -> str:
    return json.dumps({"Records": list(records)})


# (wire key, expected job id) — segments
SEGMENT_KEYS = [
    ("segments/my+job/00000_00002_sbs.mp4", "my job"),
    ("segments/c%2B%2B/00001_00002_sbs.mp4", "c++"),
    ("segments/100%25/00000_00001_sbs.mp4", "100%"),
    ("segments/%E6%97%A5%E6%9C%AC/00000_00001_anaglyph.mp4", "日本"),
    ("segments/caf%C3%A9/00000_00001_sbs.mp4", "café"),
    ("segments/a%40b%3Dc/00000_00001_sbs.mp4", "a@b=c"),
    ("segments/a%252Bb/00000_00001_sbs.mp4", "a%2Bb"),  # double-encoded: decoded ONCE
    ("segments/%F0%9F%8E%AC/99998_99999_sbs.mp4", "🎬"),
    ("segments/" + "x" * 128 + "/00000_00001_sbs.mp4", "x" * 128),
]


@pytest.mark.parametrize(("wire_key", "job_id"), SEGMENT_KEYS, ids=[k[9:40] for k, _ in SEGMENT_KEYS])
def test_segment_keys(wire_key: str, job_id: str) -> None:
    segment = only_segment(body(record(wire_key)))
    assert segment.payload.job_id == job_id
    assert segment.payload.segment_s3_uri == f"s3://{BUCKET}/segments/{job_id}/" + wire_key.rsplit("/", 1)[1]


@pytest.mark.parametrize(("key", "job_id"), [
    ("segments/my job/00000_00002_sbs.mp4", "my job"),
    ("segments/c++/00001_00002_sbs.mp4", "c++"),
    ("segments/100%/00000_00001_sbs.mp4", "100%"),
    ("segments/日本/00000_00001_anaglyph.mp4", "日本"),
    ("segments/a%2Bb/00000_00001_sbs.mp4", "a%2Bb"),
])
def test_helper_encodes_like_s3_and_parse_decodes_back(key: str, job_id: str) -> None:
    wire = s3_notification_body(BUCKET, key, size=5, etag="abc")
    assert json.loads(wire)["Records"][0]["s3"]["object"]["key"] == quote_plus(key, safe="/")
    segment = only_segment(wire)
    assert segment.payload.job_id == job_id
    assert segment.payload.segment_s3_uri == f"s3://{BUCKET}/{key}"
    assert (segment.size, segment.etag, segment.sequencer) == (5, "abc", "0A1B2C3D4E5F678901")


def test_helper_has_the_shape_of_a_real_s3_record() -> None:
    real = json.loads(fixture_text("powertools/s3Event.json"))["Records"][0]
    made = json.loads(s3_notification_body("b", "k", size=1, etag="e"))["Records"][0]
    assert made.keys() == real.keys()
    assert made["s3"].keys() == real["s3"].keys()
    assert made["s3"]["bucket"].keys() == real["s3"]["bucket"].keys()
    assert made["s3"]["object"].keys() == real["s3"]["object"].keys()
    assert made["s3"]["bucket"]["arn"] == "arn:aws:s3:::b"


# (wire key, decoded key, a fragment of the expected reason; the exact wording is
# keys.why_not_segment_key's and is pinned in test_keys.py)
SKIPPED_KEYS = [
    ("segments/j/00002_00002_sbs.mp4", None, "index is not below total"),
    ("segments/j/00003_00002_sbs.mp4", None, "index is not below total"),
    ("segments/j/00000_00000_sbs.mp4", None, "index is not below total"),
    ("segments/j/00000_00001_mono.mp4", None, "mode 'mono'"),
    ("segments/j/00000_00001_SBS.mp4", None, "SBS"),
    ("segments/j/00000_00001_sbs", None, "file name"),
    ("segments/j/00000_00001_sbs.mov", None, "file name"),
    ("segments/j/0_1_sbs.mp4", None, "file name"),
    ("segments/j/00000_00001_sbs.mp4%0A", "segments/j/00000_00001_sbs.mp4\n", "file name"),
    ("segments/j/%EF%BC%90%EF%BC%90%EF%BC%90%EF%BC%90%EF%BC%90_00001_sbs.mp4",
     "segments/j/\uff10\uff10\uff10\uff10\uff10_00001_sbs.mp4", "file name"),
    ("segments/a/b/00000_00001_sbs.mp4", None, "path separator"),
    ("segments/a%2Fb/00000_00001_sbs.mp4", "segments/a/b/00000_00001_sbs.mp4", "path separator"),
    ("segments/a%5Cb/00000_00001_sbs.mp4", "segments/a\\b/00000_00001_sbs.mp4", "path separator"),
    ("segments/../00000_00001_sbs.mp4", None, "'..'"),
    ("segments/%2E%2E/00000_00001_sbs.mp4", "segments/../00000_00001_sbs.mp4", "'..'"),
    ("segments/./00000_00001_sbs.mp4", None, "'..' or is '.'"),
    ("segments//00000_00001_sbs.mp4", None, "empty"),
    ("segments/a%00b/00000_00001_sbs.mp4", "segments/a\x00b/00000_00001_sbs.mp4", "control character"),
    ("segments/a%0Ab/00000_00001_sbs.mp4", "segments/a\nb/00000_00001_sbs.mp4", "control character"),
    ("segments/%E2%80%AEevil/00000_00001_sbs.mp4", "segments/\u202eevil/00000_00001_sbs.mp4",
     "control character"),
    ("segments/" + "x" * 200 + "/00000_00001_sbs.mp4", None, "longer than 128"),
    ("segments/00000_00001_sbs.mp4", None, "no job id folder"),
    ("uploads/j/00000_00001_sbs.mp4", None, "not under 'segments/'"),
    ("Segments/j/00000_00001_sbs.mp4", None, "not under 'segments/'"),
    ("%2Fsegments/j/00000_00001_sbs.mp4", "/segments/j/00000_00001_sbs.mp4", "not under 'segments/'"),
    ("segments/my+job/00000_00001_3d.mp4", "segments/my job/00000_00001_3d.mp4", "3d"),
]


@pytest.mark.parametrize(("wire_key", "decoded", "fragment"), SKIPPED_KEYS,
                         ids=[k[:40] for k, _, _ in SKIPPED_KEYS])
def test_not_segment_keys_are_skipped_with_the_reason(wire_key: str, decoded: str | None, fragment: str) -> None:
    skip = only_skip(body(record(wire_key)))
    decoded_key = wire_key if decoded is None else decoded
    assert skip == Skip(f"not a segment key: {why_not_segment_key(decoded_key)}", BUCKET, decoded_key)
    assert fragment in skip.reason


def test_invalid_utf8_escape_in_key_is_malformed() -> None:
    assert "is not percent-encoded UTF-8" in malformed(body(record("segments/%FF/00000_00001_sbs.mp4")))


def test_lone_surrogate_in_key_is_skipped_not_crashing() -> None:
    skip = only_skip(body(record("segments/a\ud800/00000_00001_sbs.mp4")))
    assert skip.reason == "not a segment key: job id contains a control character"


# --- own table: events, buckets, several records ------------------------------------------------


@pytest.mark.parametrize(("event_name", "expected"), [
    ("ObjectCreated:Put", "ObjectCreated:Put"),
    ("ObjectCreated:Post", "ObjectCreated:Post"),
    ("ObjectCreated:Copy", "ObjectCreated:Copy"),
    ("ObjectCreated:CompleteMultipartUpload", "ObjectCreated:CompleteMultipartUpload"),
    ("s3:ObjectCreated:Put", "ObjectCreated:Put"),
])
def test_object_created_events_are_work(event_name: str, expected: str) -> None:
    rec = record("segments/j/00000_00001_sbs.mp4", event_name=event_name)
    assert only_segment(body(rec)).event_name == expected


@pytest.mark.parametrize("event_name", [
    "ObjectRemoved:Delete", "ObjectRemoved:DeleteMarkerCreated", "s3:ObjectRemoved:Delete",
    "ObjectRestore:Completed", "ObjectCreated", "objectcreated:Put", "LifecycleExpiration:Delete", "",
])
def test_other_events_are_skipped(event_name: str) -> None:
    skip = only_skip(body(record("segments/j/00000_00001_sbs.mp4", event_name=event_name)))
    assert skip.reason == f"event {event_name.removeprefix('s3:')} is not ObjectCreated"
    assert skip.key == "segments/j/00000_00001_sbs.mp4"


def test_wrong_bucket_is_skipped() -> None:
    skip = only_skip(body(record("segments/j/00000_00001_sbs.mp4", bucket="other")))
    assert skip == Skip(f"bucket 'other' is not the input bucket '{BUCKET}'", "other",
                        "segments/j/00000_00001_sbs.mp4")


def test_several_records_keep_their_order_and_are_classified_one_by_one() -> None:
    parsed = parse_ok(body(
        record("segments/a/00000_00002_sbs.mp4"),
        record("segments/a/00001_00002_sbs.mp4", bucket="other"),
        record("segments/a/00001_00002_sbs.mp4", event_name="ObjectRemoved:Delete"),
        record("segments/b/00001_00002_anaglyph.mp4"),
        record("whatever", source="aws:sqs"),
        record("segments/c/00005_00002_sbs.mp4"),
    ))
    assert [(s.payload.job_id, s.payload.segment_index) for s in parsed.segments] == [("a", 0), ("b", 1)]
    assert [s.reason for s in parsed.skipped] == [
        f"bucket 'other' is not the input bucket '{BUCKET}'",
        "event ObjectRemoved:Delete is not ObjectCreated",
        "record eventSource 'aws:sqs' is not 'aws:s3'",
        "not a segment key: segment index is not below total segments",
    ]


def test_one_bad_record_makes_the_whole_message_malformed() -> None:
    bad = record("segments/a/00000_00002_sbs.mp4")
    del bad["s3"]["bucket"]["name"]
    message = malformed(body(record("segments/a/00000_00002_sbs.mp4"), bad))
    assert message == "message body Records[1]: s3.bucket.name: Field required"


def test_skip_reasons_quote_hostile_input_on_one_short_line() -> None:
    hostile = "evil\nbucket\u2028" + "b" * 500
    skip = only_skip(body(record("segments/j/00000_00001_sbs.mp4", bucket=hostile)))
    assert skip.bucket == hostile  # the data is kept, only the reason is clipped
    assert "\n" not in skip.reason and "\u2028" not in skip.reason and len(skip.reason) < 220
    skip = only_skip(body(record("k", event_name="ObjectRemoved:" + "\r\n" * 300)))
    assert one_line(skip.reason) and len(skip.reason) < 120


# --- test events, SNS, EventBridge -------------------------------------------------------------

TEST_EVENT = fixture_text("derived/awsdocs__s3-test-event.json")


def sns(message: str, **extra: Any) -> str:
    return json.dumps({"Type": "Notification", "MessageId": "m", "TopicArn": "arn:aws:sns:us-east-1:1:t",
                       "Subject": "Amazon S3 Notification", "Message": message, **extra}, indent=2)


def test_test_event_and_sns_wrapped_test_event_are_one_skip() -> None:
    expected = Skip("s3:TestEvent", "bucketname", None)
    assert only_skip(TEST_EVENT) == expected
    assert only_skip(sns(TEST_EVENT)) == expected


def test_sns_wrapped_segment_record() -> None:
    inner = s3_notification_body(BUCKET, "segments/j k/00001_00003_sbs.mp4", size=9, etag="x")
    assert only_segment(sns(inner)).payload.job_id == "j k"


def eventbridge(detail_type: str = "Object Created", reason: str | None = "PutObject",
                key: str = "segments/j/00000_00001_sbs.mp4", **object_fields: Any) -> str:
    detail: dict[str, Any] = {"version": "0", "bucket": {"name": BUCKET},
                              "object": {"key": key, "size": 4, "etag": "e", **object_fields}}
    if reason is not None:
        detail["reason"] = reason
    return json.dumps({"version": "0", "id": "i", "detail-type": detail_type, "source": "aws.s3",
                       "account": "1", "region": "us-east-1", "resources": [], "detail": detail})


@pytest.mark.parametrize(("reason", "event_name"), [
    ("PutObject", "ObjectCreated:Put"),
    ("POST Object", "ObjectCreated:Post"),
    ("CopyObject", "ObjectCreated:Copy"),
    ("CompleteMultipartUpload", "ObjectCreated:CompleteMultipartUpload"),
    ("SomethingNew", "ObjectCreated:SomethingNew"),
    (None, "ObjectCreated:*"),
])
def test_eventbridge_reason_becomes_the_s3_event_name(reason: str | None, event_name: str) -> None:
    assert only_segment(eventbridge(reason=reason)).event_name == event_name


def test_eventbridge_fields_and_key_decoding() -> None:
    segment = only_segment(eventbridge(key="segments/a+b%2Bc/00000_00001_sbs.mp4", **{"version-id": "v1"}))
    assert segment.payload.job_id == "a b+c"
    assert (segment.version_id, segment.etag, segment.size) == ("v1", "e", 4)


@pytest.mark.parametrize("detail_type", ["Object Deleted", "Object Restore Completed", "Object Tags Added"])
def test_other_eventbridge_detail_types_are_skipped(detail_type: str) -> None:
    skip = only_skip(eventbridge(detail_type=detail_type, reason="DeleteObject"))
    assert skip == Skip(f"event {detail_type} is not ObjectCreated", BUCKET, "segments/j/00000_00001_sbs.mp4")


# --- malformed ------------------------------------------------------------------------------------

MALFORMED = [
    ("not-json", "not json", "message body is not JSON: Expecting value"),
    ("empty", "", "message body is not JSON"),
    ("whitespace", "  \n ", "message body is not JSON"),
    ("array", "[]", "message body is an array in JSON, not an object"),
    ("null", "null", "message body is null in JSON, not an object"),
    ("number", "42", "message body is a number in JSON, not an object"),
    ("string", '"{}"', "message body is a string in JSON, not an object"),
    ("empty-object", "{}", "message body is not a known event shape (keys: none)"),
    ("unknown-shape", '{"foo": 1, "bar": 2}', "message body is not a known event shape (keys: bar, foo)"),
    ("records-not-list", '{"Records": {"a": 1}}', "message body: Records: Input should be a valid list"),
    ("records-empty", '{"Records": []}', "message body: Records: List should have at least 1 item"),
    ("record-null", '{"Records": [null]}', "message body: Records[0]: Input should be a valid dictionary"),
    ("record-no-source", '{"Records": [{"eventName": "ObjectCreated:Put"}]}',
     "message body Records[0]: eventSource: Field required"),
    ("record-missing-s3", '{"Records": [{"eventSource": "aws:s3", "eventName": "ObjectCreated:Put"}]}',
     "message body Records[0]: s3: Field required"),
    ("nan", '{"Records": [{"eventSource": NaN}]}', "message body is not JSON: NaN is not JSON"),
    ("huge-int", "1" * 5000, "message body is not JSON: Exceeds the limit"),
    ("deep", "[" * 100_000 + "]" * 100_000, "message body is nested too deeply"),
    ("sns-not-json", json.dumps({"Type": "Notification", "Message": "hello"}), "SNS Message is not JSON"),
    ("sns-message-object", json.dumps({"Type": "Notification", "Message": {"Records": []}}),
     "message body: Message: Input should be a valid string"),
    ("sns-in-sns", sns(sns(TEST_EVENT)), "SNS Message is an SNS envelope inside an SNS envelope"),
    ("sns-subscription", json.dumps({"Type": "SubscriptionConfirmation", "Message": "{}"}),
     "message body: Type: Input should be 'Notification'"),
    ("test-event-other", json.dumps({"Service": "Amazon S3", "Event": "s3:Other"}),
     "message body: Event: Input should be 's3:TestEvent'"),
    ("eventbridge-other-source", json.dumps({"source": "aws.ec2", "detail-type": "x", "detail": {}}),
     "message body: source: Input should be 'aws.s3'"),
    ("eventbridge-no-key", json.dumps({"source": "aws.s3", "detail-type": "Object Created",
                                        "detail": {"bucket": {"name": "b"}, "object": {}}}),
     "message body: detail.object.key: Field required"),
    ("bom", "\ufeff" + TEST_EVENT, "message body is not JSON: Unexpected UTF-8 BOM"),
]


@pytest.mark.parametrize(("text", "expected"), [row[1:] for row in MALFORMED], ids=[row[0] for row in MALFORMED])
def test_malformed_bodies(text: str, expected: str) -> None:
    assert malformed(text).startswith(expected)


def _bad_object(**changes: Any) -> str:
    rec = record("segments/j/00000_00001_sbs.mp4")
    rec["s3"]["object"].update(changes)
    return body(rec)


@pytest.mark.parametrize(("changes", "field"), [
    ({"key": None}, "s3.object.key: Input should be a valid string"),
    ({"key": 5}, "s3.object.key: Input should be a valid string"),
    ({"key": ["a"]}, "s3.object.key: Input should be a valid string"),
    ({"size": "12"}, "s3.object.size: Input should be a valid integer"),
    ({"size": True}, "s3.object.size: Input should be a valid integer"),
    ({"size": 1.5}, "s3.object.size: Input should be a valid integer"),
    ({"size": -1}, "s3.object.size: Input should be greater than or equal to 0"),
    ({"eTag": 7}, "s3.object.eTag: Input should be a valid string"),
])
def test_wrongly_typed_record_fields_are_malformed(changes: dict[str, Any], field: str) -> None:
    assert malformed(_bad_object(**changes)) == f"message body Records[0]: {field}"


def test_null_optional_fields_are_accepted() -> None:
    segment = only_segment(_bad_object(size=None, eTag=None, versionId=None, sequencer=None))
    assert (segment.size, segment.etag, segment.version_id, segment.sequencer) == (None, None, None, None)


def test_huge_size_is_kept_exactly() -> None:
    assert only_segment(_bad_object(size=10**30)).size == 10**30


@pytest.mark.parametrize("raw", [b"\xff\xfe\x00", b'{"Records": "\xe9"}', b"\xc3"])
def test_bytes_that_are_not_utf8_are_malformed(raw: bytes) -> None:
    assert malformed(raw).startswith("message body is not UTF-8")


def test_hostile_text_in_malformed_messages_is_clipped_to_one_line() -> None:
    message = malformed(json.dumps({("k\n" * 400): 1}))
    assert message.startswith("message body is not a known event shape (keys: k\\nk\\n")
    assert len(message) < 150


# --- properties ----------------------------------------------------------------------------------

VOCABULARY = ["Records", "eventSource", "eventName", "s3", "bucket", "object", "name", "key", "size",
              "eTag", "Type", "Message", "Service", "Event", "source", "detail-type", "detail"]
SCALARS = st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20) | st.sampled_from(
    ["aws:s3", "ObjectCreated:Put", "Notification", "aws.s3", "Object Created", "Amazon S3",
     "s3:TestEvent", BUCKET, "segments/j/00000_00001_sbs.mp4", "segments/%2E%2E/00000_00001_sbs.mp4"])
JSON = st.recursive(
    SCALARS,
    lambda children: st.lists(children, max_size=4)
    | st.dictionaries(st.sampled_from(VOCABULARY) | st.text(max_size=8), children, max_size=5),
    max_leaves=25,
)


def assert_safe(parsed: ParsedMessage) -> None:
    assert parsed.segments or parsed.skipped
    for segment in parsed.segments:
        job_id = segment.payload.job_id
        assert check_job_id(job_id) == job_id
        assert "/" not in job_id and ".." not in job_id
        assert not any(unicodedata.category(ch) in ("Cc", "Cf", "Cs", "Zl", "Zp") for ch in job_id)
    for skip in parsed.skipped:
        assert one_line(skip.reason)


def parse_or_malformed(text: str | bytes) -> ParsedMessage | None:
    try:
        parsed = parse_message(text, BUCKET)
    except MalformedMessage as exc:
        assert one_line(str(exc)) and len(str(exc)) <= 300
        return None
    assert_safe(parsed)
    return parsed


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(JSON)
def test_any_json_parses_or_is_malformed(value: Any) -> None:
    parse_or_malformed(json.dumps(value))


@settings(max_examples=300, deadline=None)
@given(JSON)
def test_any_json_inside_an_sns_envelope_parses_or_is_malformed(value: Any) -> None:
    parse_or_malformed(sns(json.dumps(value)))


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=64))
def test_any_bytes_parse_or_are_malformed(raw: bytes) -> None:
    parse_or_malformed(raw)


SEGMENTISH_KEYS = st.builds(
    lambda job, index, total, mode, ext: f"segments/{job}/{index}_{total}_{mode}{ext}",
    st.text(max_size=12) | st.sampled_from(["..", ".", "a/b", "a\\b", "x" * 129, "ok"]),
    st.from_regex(r"[0-9]{5}", fullmatch=True) | st.text(max_size=6),
    st.from_regex(r"[0-9]{5}", fullmatch=True),
    st.sampled_from(["sbs", "anaglyph", "SBS", "mono", ""]),
    st.sampled_from([".mp4", ".mp4\n", ""]),
)


@settings(max_examples=300, deadline=None)
@given(SEGMENTISH_KEYS | st.text(max_size=40).filter(lambda s: not any("\ud800" <= c <= "\udfff" for c in s)))
def test_encoded_keys_round_trip_to_exactly_one_outcome(key: str) -> None:
    parsed = parse_or_malformed(s3_notification_body(BUCKET, key, size=1, etag="e"))
    assert parsed is not None  # a key S3 could hold always parses
    expected = parse_segment_key(BUCKET, key)
    if expected is None:
        assert parsed.segments == [] and len(parsed.skipped) == 1
        assert parsed.skipped[0].key == key and parsed.skipped[0].reason.startswith("not a segment key: ")
    else:
        assert parsed.skipped == [] and [s.payload for s in parsed.segments] == [expected]
        assert expected.segment_s3_uri == f"s3://{BUCKET}/{key}"


@settings(max_examples=300, deadline=None)
@given(st.lists(SEGMENTISH_KEYS | st.text(max_size=40), min_size=1, max_size=4),
       st.sampled_from(["ObjectCreated:Put", "s3:ObjectCreated:Copy", "ObjectRemoved:Delete"]))
def test_raw_wire_keys_never_crash(wire_keys: list[str], event_name: str) -> None:
    parsed = parse_or_malformed(body(*(record(k, event_name=event_name) for k in wire_keys)))
    if parsed is not None:
        assert len(parsed.segments) + len(parsed.skipped) == len(wire_keys)
        if event_name == "ObjectRemoved:Delete":
            assert parsed.segments == []
