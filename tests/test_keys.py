"""keys: parse_segment_key / why_not_segment_key / build_output_segment_key (decoded keys)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from video_worker.keys import build_output_segment_key, parse_segment_key, why_not_segment_key
from video_worker.segments import JOB_ID_MAX_LENGTH, Segment, check_job_id

BUCKET = "video-input"
FILE_NAME_REASON = "file name is not {index:05d}_{total:05d}_{mode}.mp4"
INDEX_REASON = "segment index is not below total segments"

# (key, job_id, index, total, mode)
VALID = [
    ("segments/job-1/00000_00003_sbs.mp4", "job-1", 0, 3, "sbs"),
    ("segments/job-1/00002_00003_anaglyph.mp4", "job-1", 2, 3, "anaglyph"),
    ("segments/j/99998_99999_sbs.mp4", "j", 99998, 99999, "sbs"),
    ("segments/j/00000_00001_sbs.mp4", "j", 0, 1, "sbs"),
    ("segments/my job/00000_00001_sbs.mp4", "my job", 0, 1, "sbs"),
    ("segments/c++/00000_00001_sbs.mp4", "c++", 0, 1, "sbs"),
    ("segments/100%/00000_00001_sbs.mp4", "100%", 0, 1, "sbs"),
    ("segments/a%2Bb/00000_00001_sbs.mp4", "a%2Bb", 0, 1, "sbs"),  # keys are decoded: % is literal
    ("segments/a@b=c/00000_00001_sbs.mp4", "a@b=c", 0, 1, "sbs"),
    ("segments/日本/00000_00001_anaglyph.mp4", "日本", 0, 1, "anaglyph"),
    ("segments/café.v2/00000_00001_sbs.mp4", "café.v2", 0, 1, "sbs"),
    ("segments/" + "x" * JOB_ID_MAX_LENGTH + "/00000_00001_sbs.mp4", "x" * JOB_ID_MAX_LENGTH, 0, 1, "sbs"),
]


@pytest.mark.parametrize(("key", "job_id", "index", "total", "mode"), VALID, ids=[v[0][:40] for v in VALID])
def test_parse_valid_segment_keys(key: str, job_id: str, index: int, total: int, mode: str) -> None:
    payload = parse_segment_key(BUCKET, key)
    assert payload == Segment(
        job_id=job_id, segment_index=index, total_segments=total,
        segment_s3_uri=f"s3://{BUCKET}/{key}", mode=mode,
    )
    assert why_not_segment_key(key) == "not a segment key"  # no specific objection


# (key, exact why_not_segment_key reason)
INVALID = [
    # padding: exactly five ASCII digits each
    ("segments/j/0_1_sbs.mp4", FILE_NAME_REASON),
    ("segments/j/0000_00001_sbs.mp4", FILE_NAME_REASON),
    ("segments/j/000000_00001_sbs.mp4", FILE_NAME_REASON),  # 6-digit index
    ("segments/j/00000_000001_sbs.mp4", FILE_NAME_REASON),  # 6-digit total
    ("segments/j/" + "\uff10" * 5 + "_00001_sbs.mp4", FILE_NAME_REASON),  # fullwidth digits
    ("segments/j/" + "\u0660" * 5 + "_00001_sbs.mp4", FILE_NAME_REASON),  # Arabic-Indic digits
    ("segments/j/00000_0000\uff11_sbs.mp4", FILE_NAME_REASON),
    ("segments/j/-0000_00001_sbs.mp4", FILE_NAME_REASON),
    # index / total
    ("segments/j/00001_00001_sbs.mp4", INDEX_REASON),  # index == total
    ("segments/j/00005_00002_sbs.mp4", INDEX_REASON),  # index > total
    ("segments/j/00000_00000_sbs.mp4", INDEX_REASON),  # total 00000
    # mode
    ("segments/j/00000_00001_SBS.mp4", "mode 'SBS' is not anaglyph or sbs"),
    ("segments/j/00000_00001_Sbs.mp4", "mode 'Sbs' is not anaglyph or sbs"),
    ("segments/j/00000_00001_mono.mp4", "mode 'mono' is not anaglyph or sbs"),
    ("segments/j/00000_00001_.mp4", FILE_NAME_REASON),
    ("segments/j/00000_00001_sb-s.mp4", FILE_NAME_REASON),
    # suffix
    ("segments/j/00000_00001_sbs", FILE_NAME_REASON),
    ("segments/j/00000_00001_sbs.MP4", FILE_NAME_REASON),
    ("segments/j/00000_00001_sbs.mov", FILE_NAME_REASON),
    ("segments/j/00000_00001_sbs.mp4\n", FILE_NAME_REASON),
    ("segments/j/00000_00001_sbs.mp4.mp4", FILE_NAME_REASON),
    ("segments/j/x00000_00001_sbs.mp4", FILE_NAME_REASON),
    # layout
    ("segments/a/b/00000_00001_sbs.mp4", "job id contains a path separator"),  # extra path depth
    ("segments/00000_00001_sbs.mp4", "key has no job id folder"),
    ("segments/", "key has no job id folder"),
    ("uploads/j/00000_00001_sbs.mp4", "key is not under 'segments/'"),
    ("Segments/j/00000_00001_sbs.mp4", "key is not under 'segments/'"),
    ("/segments/j/00000_00001_sbs.mp4", "key is not under 'segments/'"),
    ("", "key is not under 'segments/'"),
    # hostile job ids
    ("segments/../00000_00001_sbs.mp4", "job id contains '..' or is '.'"),
    ("segments/./00000_00001_sbs.mp4", "job id contains '..' or is '.'"),
    ("segments/a..b/00000_00001_sbs.mp4", "job id contains '..' or is '.'"),
    ("segments//00000_00001_sbs.mp4", "job id is empty"),
    ("segments/a\\b/00000_00001_sbs.mp4", "job id contains a path separator"),
    ("segments/a\x00b/00000_00001_sbs.mp4", "job id contains a control character"),
    ("segments/a\nb/00000_00001_sbs.mp4", "job id contains a control character"),
    ("segments/a\rb/00000_00001_sbs.mp4", "job id contains a control character"),
    ("segments/\u202eevil/00000_00001_sbs.mp4", "job id contains a control character"),  # bidi override
    ("segments/a\u2028b/00000_00001_sbs.mp4", "job id contains a control character"),
    ("segments/a\ud800/00000_00001_sbs.mp4", "job id contains a control character"),  # lone surrogate
    ("segments/" + "x" * 129 + "/00000_00001_sbs.mp4", "job id is longer than 128 characters"),
    ("segments/" + "x" * 200 + "/00000_00001_sbs.mp4", "job id is longer than 128 characters"),
]


@pytest.mark.parametrize(("key", "reason"), INVALID, ids=[repr(k[:40]) for k, _ in INVALID])
def test_invalid_segment_keys(key: str, reason: str) -> None:
    assert parse_segment_key(BUCKET, key) is None
    assert why_not_segment_key(key) == reason


def test_empty_bucket_is_never_a_segment() -> None:
    assert parse_segment_key("", "segments/j/00000_00001_sbs.mp4") is None
    assert parse_segment_key(BUCKET, "segments/j/00000_00001_sbs.mp4") is not None


@pytest.mark.parametrize(("job_id", "index", "key"), [
    ("j", 7, "jobs/j/segments/7.mp4"),
    ("j", 0, "jobs/j/segments/0.mp4"),
    ("j", 12345, "jobs/j/segments/12345.mp4"),  # not padded
    ("j", 100000, "jobs/j/segments/100000.mp4"),
    ("my job", 3, "jobs/my job/segments/3.mp4"),
    ("日本", 1, "jobs/日本/segments/1.mp4"),
])
def test_build_output_segment_key(job_id: str, index: int, key: str) -> None:
    assert build_output_segment_key(job_id, index) == key


@pytest.mark.parametrize(("job_id", "index", "message"), [
    ("j", -1, "segment_index must be an integer >= 0"),
    ("", 0, "job id is empty"),
    ("..", 0, "'..'"),
    (".", 0, "'..'"),
    ("a/b", 0, "path separator"),
    ("a\\b", 0, "path separator"),
    ("a\x00", 0, "control character"),
    ("a\n", 0, "control character"),
    ("x" * 129, 0, "longer than 128"),
])
def test_build_output_segment_key_rejects(job_id: str, index: int, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        build_output_segment_key(job_id, index)


PARTS = st.builds(
    lambda job, index, total, mode, ext: f"segments/{job}/{index}_{total}_{mode}{ext}",
    st.text(max_size=10) | st.sampled_from(["..", ".", "a/b", "a\\b", "x" * 129, "ok"]),
    st.from_regex(r"[0-9]{5}", fullmatch=True) | st.text(max_size=6),
    st.from_regex(r"[0-9]{5}", fullmatch=True),
    st.sampled_from(["sbs", "anaglyph", "SBS", "mono", "3d", ""]),
    st.sampled_from([".mp4", ".mp4\n", ".MP4", ""]),
)


@settings(max_examples=300, deadline=None)
@given(PARTS | st.text(max_size=30))
def test_why_not_agrees_with_parse(key: str) -> None:
    payload = parse_segment_key(BUCKET, key)
    reason = why_not_segment_key(key)
    assert (payload is None) == (reason != "not a segment key"), (key, reason)
    if payload is not None:
        assert payload.segment_s3_uri == f"s3://{BUCKET}/{key}"


@settings(max_examples=300, deadline=None)
@given(
    st.text(min_size=1, max_size=JOB_ID_MAX_LENGTH),
    st.integers(1, 99999).flatmap(lambda total: st.tuples(st.integers(0, total - 1), st.just(total))),
    st.sampled_from(["sbs", "anaglyph"]),
)
def test_valid_parts_round_trip(job_id: str, index_total: tuple[int, int], mode: str) -> None:
    index, total = index_total
    key = f"segments/{job_id}/{index:05d}_{total:05d}_{mode}.mp4"
    try:
        check_job_id(job_id)
    except ValueError:
        assert parse_segment_key(BUCKET, key) is None
        return
    payload = parse_segment_key(BUCKET, key)
    assert payload is not None
    assert (payload.job_id, payload.segment_index, payload.total_segments, payload.mode) == (
        job_id, index, total, mode)
    assert build_output_segment_key(payload.job_id, payload.segment_index) == f"jobs/{job_id}/segments/{index}.mp4"


@pytest.mark.parametrize("bad_index", [True, False, -1, 1.0, "1"])
def test_output_key_rejects_non_integer_indexes(bad_index: object) -> None:
    with pytest.raises(ValueError, match="segment_index must be an integer"):
        build_output_segment_key("j", bad_index)  # type: ignore[arg-type]
