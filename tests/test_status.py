"""``video-worker status``: the pure ``job_status``, its rendering, the DLQ read and ``--watch`` (fakes, no AWS)."""

from __future__ import annotations

import io
import json
from collections.abc import Callable, Iterator

import pytest

from video_worker.dead_letter import DeadLetter, Received
from video_worker.errors import TransientError
from video_worker.ops.status import (
    LETTERS_EVERY_SECONDS,
    JobStatus,
    StatusReader,
    compress,
    job_status,
    progress_line,
    read_letters,
    render_human,
    show_status,
    watch,
)
from video_worker.segments import Segment, SegmentCompletion

JOB = "job-1"
T0 = 1_800_000_000


def row(index: int, total: int = 4, job: str = JOB, model: str | None = "stereo",
        fingerprint: str | None = "abc123def4567890", at: int = T0) -> SegmentCompletion:
    return SegmentCompletion(job_id=job, segment_index=index, total_segments=total, completed_at=at + index,
                             output_s3_uri=f"s3://out/jobs/{job}/segments/{index}.mp4", model=model,
                             model_fingerprint=fingerprint)


def letter(index: int, total: int = 4, job: str = JOB, *, task: str = "video_worker.infer", attempts: int = 3,
           error: str = "boom", at: int = T0, id: str | None = None) -> DeadLetter:
    segment = Segment(job_id=job, segment_index=index, total_segments=total, mode="sbs",
                      segment_s3_uri=f"s3://in/segments/{job}/{index:05d}_{total:05d}_sbs.mp4")
    return DeadLetter(payload=segment, failed_task=task, error_type="RuntimeError", error=error, attempts=attempts,
                      failed_at=at, **({"id": id} if id else {}))


def test_a_complete_job() -> None:
    status = job_status(JOB, [row(i) for i in range(4)], [])
    assert status.state == "complete"
    assert (status.total_segments, status.completed, status.missing) == (4, [0, 1, 2, 3], [])
    assert (status.completed_count, status.percent, status.dead_lettered) == (4, 100, [])
    assert not status.fingerprint_mismatch and status.fingerprints == ["abc123def4567890"]
    assert [g.model_dump() for g in status.models] == [
        {"model": "stereo", "model_fingerprint": "abc123def4567890", "segments": [0, 1, 2, 3]}]
    assert (status.first_completed_at, status.last_completed_at) == (T0, T0 + 3)
    assert render_human(status) == [
        "job job-1: 4/4 segments complete (100%), complete",
        "models: stereo@abc123def456 (4 segments)",
        "last completed: 2027-01-15T08:00:03Z",
    ]


def test_gaps_are_missing_and_the_job_is_in_progress() -> None:
    rows = [row(i, total=10) for i in (0, 1, 2, 6, 7, 9)]
    status = job_status(JOB, rows, [])
    assert status.state == "in_progress"
    assert status.missing == [3, 4, 5, 8] and status.completed_count == 6 and status.percent == 60
    assert render_human(status)[:2] == ["job job-1: 6/10 segments complete (60%), in progress", "missing: 3-5, 8"]


def test_rows_of_other_jobs_are_ignored() -> None:
    assert job_status(JOB, [row(0, total=2), row(1, total=2, job="other")], []).missing == [1]


def test_dead_letters_duplicates_included_and_a_job_whose_every_gap_is_dead_lettered_has_failed() -> None:
    letters = [letter(2, id="b", at=T0 + 5), letter(2, id="a", attempts=1, error="once\nmore"),
               letter(1, job="other")]
    status = job_status(JOB, [row(0), row(1), row(3)], letters)
    assert status.state == "failed"
    assert status.missing == [2]
    assert [(s.segment_index, s.id, s.attempts) for s in status.dead_lettered] == [(2, "a", 1), (2, "b", 3)]
    assert status.dead_lettered[0].model_dump() == {
        "segment_index": 2, "failed_task": "video_worker.infer", "error_type": "RuntimeError", "error": "once\nmore",
        "attempts": 1, "id": "a", "failed_at": T0}
    lines = render_human(status)
    assert lines[0] == ("job job-1: 3/4 segments complete (75%), failed: every missing segment is dead-lettered "
                        "(video-worker dlq replay)")
    assert "dead-lettered: segment 2 at video_worker.infer after 1 attempt: RuntimeError: once more (id a)" in lines
    assert "dead-lettered: segment 2 at video_worker.infer after 3 attempts: RuntimeError: boom (id b)" in lines


def test_some_gaps_without_a_letter_are_still_in_progress() -> None:
    status = job_status(JOB, [row(0)], [letter(1)])
    assert status.state == "in_progress" and status.missing == [1, 2, 3]


def test_a_letter_of_a_segment_that_completed_later_is_resolved_not_counted() -> None:
    status = job_status(JOB, [row(i) for i in range(4)], [letter(1, id="stale")])
    assert status.state == "complete" and status.dead_lettered == []
    assert [s.id for s in status.resolved_dead_letters] == ["stale"]
    assert ("resolved (completed since; stale letter): segment 1 at video_worker.infer after 3 attempts: "
            "RuntimeError: boom (id stale)") in render_human(status)


def test_segments_made_by_different_fingerprints_are_flagged() -> None:
    rows = [row(0), row(1), row(2, fingerprint="fffeee"), row(3, model="passthrough", fingerprint=None)]
    status = job_status(JOB, rows, [])
    assert status.state == "complete" and status.fingerprint_mismatch
    assert status.fingerprints == ["abc123def4567890", "fffeee", None]
    assert [(g.model, g.model_fingerprint, g.segments) for g in status.models] == [
        ("stereo", "abc123def4567890", [0, 1]), ("stereo", "fffeee", [2]), ("passthrough", None, [3])]
    lines = render_human(status)
    assert "models: stereo@abc123def456 (2 segments), stereo@fffeee (1 segment), passthrough (1 segment)" in lines
    assert ("WARNING: segments made by 3 different model fingerprints: stereo@abc123def456 (0-1); stereo@fffeee (2); "
            "passthrough (3); reassembly would mix them") in lines


def test_an_unknown_job() -> None:
    status = job_status(JOB, [row(0, job="other")], [letter(0, job="other")])
    assert status.state == "unknown" and not status.known
    assert (status.total_segments, status.completed, status.missing, status.percent) == (None, [], [], 0)
    assert progress_line(status) == "job job-1: no completion rows or dead letters yet"


def test_without_rows_the_letters_give_the_total() -> None:
    status = job_status(JOB, [], [letter(3, total=5)])
    assert status.known and status.total_segments == 5 and status.missing == [0, 1, 2, 3, 4]
    assert status.state == "in_progress"


def test_a_letter_without_a_valid_segment_is_attributed_from_its_raw_payload() -> None:
    raw = DeadLetter(payload=None, raw_payload={"segment": {"job_id": JOB, "segment_index": 1, "mode": "3d"}},
                     failed_task="video_worker.upload", error_type="InvalidPayload", error="bad", attempts=1,
                     failed_at=T0, id="raw")
    status = job_status(JOB, [row(0, total=2)], [raw])
    assert [(s.segment_index, s.id) for s in status.dead_lettered] == [(1, "raw")]
    assert status.state == "failed"


def test_disagreeing_totals_and_stray_rows_are_warnings() -> None:
    status = job_status(JOB, [row(0, total=2), row(1, total=2), row(2, total=3)], [])
    assert status.total_segments == 3 and status.state == "complete"
    assert status.warnings == ["rows and dead letters disagree on the number of segments: 2, 3"]
    stray = job_status(JOB, [row(0, total=1), row(5, total=1)], [])
    assert stray.completed_count == 1 and stray.percent == 100
    assert stray.warnings[-1] == "rows for segments beyond the last one (0): 5"


@pytest.mark.parametrize(("indices", "text"), [
    ([], ""), ([4], "4"), ([3, 4, 5, 8], "3-5, 8"), ([8, 3, 5, 4, 4], "3-5, 8"), ([0, 2, 4], "0, 2, 4"),
    ([0, 1, 3, 4, 9, 10, 11], "0-1, 3-4, 9-11"),
])
def test_range_compression(indices: list[int], text: str) -> None:
    assert compress(indices) == text


def test_the_json_has_the_documented_fields() -> None:
    doc = json.loads(job_status(JOB, [row(0)], [letter(1, id="x")]).model_dump_json())
    assert {"job_id", "state", "total_segments", "completed", "missing", "dead_lettered", "resolved_dead_letters",
            "models", "fingerprint_mismatch", "fingerprints", "last_completed_at"} <= set(doc)
    assert doc["dead_lettered"][0]["segment_index"] == 1 and doc["dead_lettered"][0]["id"] == "x"


class FakeLetters:
    """A ``DeadLetterStore`` whose scan may fail part-way; records what is held and released."""

    url = "fake://dlq"

    def __init__(self, letters: list[DeadLetter], fail_after: int | None = None) -> None:
        self.letters, self.fail_after = letters, fail_after
        self.held: set[str] = set()

    def receive_all(self, hold_seconds: int = 30, limit: int = 10_000) -> Iterator[Received]:
        for n, one in enumerate(self.letters):
            if n == self.fail_after:
                raise TransientError("receive from the dead-letter queue: throttled")
            self.held.add(one.id)
            yield Received(one, one.model_dump_json(), one.id, one.id)
        self.held.add("junk")
        yield Received(None, "not a letter", "junk", "junk")

    def release(self, receipt_handle: str) -> None:
        self.held.discard(receipt_handle)

    def put(self, letter: DeadLetter) -> None:
        raise AssertionError("a status read writes nothing")

    def delete(self, receipt_handle: str) -> None:
        raise AssertionError("a status read deletes nothing")


class FakeRows:
    def __init__(self, *rows: SegmentCompletion) -> None:
        self.rows_ = list(rows)

    def rows(self, job_id: str) -> list[SegmentCompletion]:
        return [r for r in self.rows_ if r.job_id == job_id]

    def get(self, job_id: str, segment_index: int) -> SegmentCompletion | None:
        raise AssertionError

    def put(self, completion: SegmentCompletion) -> bool:
        raise AssertionError


def test_reading_the_letters_releases_every_one_also_when_the_scan_fails() -> None:
    store = FakeLetters([letter(0, id="a"), letter(1, id="b")])
    assert [one.id for one in read_letters(store)] == ["a", "b"] and store.held == set()
    failing = FakeLetters([letter(0, id="a"), letter(1, id="b")], fail_after=1)
    with pytest.raises(TransientError):
        read_letters(failing)
    assert failing.held == set()


def test_status_once_prints_the_facts_or_says_the_job_is_unknown(capsys: pytest.CaptureFixture[str]) -> None:
    out = io.StringIO()
    assert show_status(FakeRows(row(0, total=2)), FakeLetters([letter(1, total=2)]), JOB, out=out) == 0
    assert out.getvalue().splitlines()[:2] == ["job job-1: 1/2 segments complete (50%), failed: every missing "
                                               "segment is dead-lettered (video-worker dlq replay)", "missing: 1"]
    out = io.StringIO()
    assert show_status(FakeRows(), FakeLetters([]), "nope", as_json=True, out=out) == 1
    assert json.loads(out.getvalue())["state"] == "unknown"
    assert capsys.readouterr().err.strip() == "video-worker: no completion rows or dead letters for job nope"


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


def _reads(statuses: list[JobStatus]) -> tuple[list[float], Callable[[float], JobStatus]]:
    ages: list[float] = []

    def read(max_age: float) -> JobStatus:
        ages.append(max_age)
        return statuses.pop(0) if len(statuses) > 1 else statuses[0]
    return ages, read


def test_watch_prints_a_line_per_change_and_exits_0_once_complete() -> None:
    steps = [job_status(JOB, [], []), job_status(JOB, [row(0, total=2)], []), job_status(JOB, [row(0, total=2)], []),
             job_status(JOB, [row(0, total=2), row(1, total=2)], [])]
    ages, read = _reads(steps)
    clock, out = Clock(), io.StringIO()
    assert watch(read, out, interval=2, idle_timeout=60, clock=clock, sleep=clock.sleep) == 0
    lines = out.getvalue().splitlines()
    assert lines[:3] == ["job job-1: no completion rows or dead letters yet",
                         f"job job-1 [{'#' * 15}{'-' * 15}] 1/2 (50%), in progress",
                         f"job job-1 [{'#' * 30}] 2/2 (100%), complete"]
    assert lines[3] == "job job-1: 2/2 segments complete (100%), complete" and clock.now == 6
    assert set(ages) == {LETTERS_EVERY_SECONDS}, "a watch re-reads the dead letters only now and then"


def test_the_reader_keeps_the_letters_it_read_for_as_long_as_it_is_told() -> None:
    store, clock = FakeLetters([letter(1, total=2, id="a")]), Clock()
    scans = 0
    scan = store.receive_all

    def counting(hold_seconds: int = 30, limit: int = 10_000) -> Iterator[Received]:
        nonlocal scans
        scans += 1
        return scan(hold_seconds, limit)
    store.receive_all = counting  # type: ignore[method-assign]
    reader = StatusReader(FakeRows(row(0, total=2)), store, JOB, clock=clock)
    assert [s.id for s in reader.read(15).dead_lettered] == ["a"] and scans == 1
    clock.now = 14
    reader.read(15)
    assert scans == 1
    clock.now = 15
    reader.read(15)
    reader.read()
    assert scans == 3 and store.held == set()


def test_watch_on_a_tty_redraws_one_line() -> None:
    _, read = _reads([job_status(JOB, [row(0, total=2)], []), job_status(JOB, [row(0, total=2), row(1, total=2)], [])])
    clock, out = Clock(), io.StringIO()
    assert watch(read, out, tty=True, clock=clock, sleep=clock.sleep) == 0
    text = out.getvalue()
    assert text.count("\r\x1b[2K") == 2 and "\n" not in text.split("complete\n")[0]
    assert "job job-1: 2/2 segments complete (100%), complete" in text.splitlines()


def test_watch_gives_up_after_the_idle_timeout_and_rides_out_a_failed_read(
        capsys: pytest.CaptureFixture[str]) -> None:
    calls = 0

    def read(max_age: float) -> JobStatus:
        nonlocal calls
        calls += 1
        if calls == 2:
            raise TransientError("query completions: throttled")
        return job_status(JOB, [row(0, total=2)], [])
    clock, out = Clock(), io.StringIO()
    assert watch(read, out, interval=5, idle_timeout=20, as_json=True, clock=clock, sleep=clock.sleep) == 1
    assert [json.loads(line)["completed"] for line in out.getvalue().splitlines()] == [[0]]
    err = capsys.readouterr().err
    assert "status read failed (query completions: throttled)" in err
    assert "stopped: nothing changed for 20s" in err and clock.now == 20
