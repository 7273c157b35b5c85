"""The stages as plain functions, with real adapters on in-process moto (unit scope)."""

from __future__ import annotations

import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from tests.support.unit import dependencies, put_segment
from video_worker import stages
from video_worker.adapters.dynamodb import DynamoCompletionStore
from video_worker.adapters.model_process import InlineRunner
from video_worker.adapters.scratch import ScratchDir
from video_worker.errors import ObjectNotFound, PermanentError, UnsafePath
from video_worker.models.passthrough import PassthroughModel
from video_worker.ops.sample import sample_segment
from video_worker.segments import LocalFile, Segment
from video_worker.stages import Dependencies


def test_four_stages_on_one_host(clients: dict[str, Any], tmp_path: Path) -> None:
    rt = dependencies(clients, tmp_path / "s")
    data = sample_segment(11 * 1024 * 1024 + 5)  # multipart on both transfers
    seg = put_segment(clients, data)
    d = stages.download(seg, rt)
    assert Path(d.input.path).read_bytes() == data and d.input.size == len(data)
    i = stages.infer(d, rt)
    assert not Path(d.input.path).exists(), "input removed once inferred"
    u = stages.upload(i, rt)
    assert not Path(i.output.path).exists(), "output removed once uploaded"
    assert u.output_s3_uri == f"s3://{clients['res'].output_bucket}/jobs/job-1/segments/2.mp4"
    out = clients["s3"].get_object(Bucket=clients["res"].output_bucket, Key="jobs/job-1/segments/2.mp4")
    assert out["Body"].read() == data
    completion = stages.record(u, rt)
    item = clients["dynamodb"].get_item(
        TableName=clients["res"].table, Key={"job_id": {"S": "job-1"}, "segment_index": {"N": "2"}}
    )["Item"]
    assert item == {
        "job_id": {"S": "job-1"}, "segment_index": {"N": "2"},
        "output_s3_uri": {"S": u.output_s3_uri}, "completed_at": {"N": "1800000000"},
        "total_segments": {"N": "4"}, "output_generation": {"N": "1"}, "model": {"S": "passthrough"},
        "source_etag": {"S": clients["s3"].head_object(Bucket=clients["res"].input_bucket,
                                                       Key="segments/job-1/00002_00004_sbs.mp4")["ETag"].strip('"')},
    }
    assert completion.completed_at == 1_800_000_000
    assert list((tmp_path / "s").rglob("*.mp4")) == []


def test_stage_on_another_host_fetches_again(clients: dict[str, Any], tmp_path: Path) -> None:
    a, b = dependencies(clients, tmp_path / "a", "host-a"), dependencies(clients, tmp_path / "b", "host-b")
    data = sample_segment(70_000, seed=3)
    seg = put_segment(clients, data)
    d = stages.download(seg, a)
    i = stages.infer(d, b)  # B cannot see A's disk: downloads again
    assert i.output.host == "host-b"
    stages.upload(i, a)  # A cannot see B's output: recomputes from the source
    key = "jobs/job-1/segments/2.mp4"
    assert clients["s3"].get_object(Bucket=clients["res"].output_bucket, Key=key)["Body"].read() == data


def test_a_file_of_the_wrong_size_is_not_trusted(clients: dict[str, Any], tmp_path: Path) -> None:
    rt = dependencies(clients, tmp_path / "s")
    data = sample_segment(5000)
    d = stages.download(put_segment(clients, data), rt)
    Path(d.input.path).write_bytes(b"truncated")
    assert rt.scratch.holds(d.input) is None
    i = stages.infer(d, rt)
    assert Path(i.output.path).read_bytes() == data


def test_missing_source_object_is_permanent(clients: dict[str, Any], tmp_path: Path) -> None:
    rt = dependencies(clients, tmp_path / "s")
    seg = Segment(job_id="j", segment_index=0, total_segments=1,
                             segment_s3_uri=f"s3://{clients['res'].input_bucket}/segments/j/00000_00001_sbs.mp4",
                             mode="sbs")
    with pytest.raises(ObjectNotFound, match=r"head s3://.*00000_00001_sbs.mp4: 404"):
        stages.download(seg, rt)
    # With the version from the event there is no HEAD: the download itself finds it missing.
    seg = seg.model_copy(update={"source_etag": "abc", "source_size": 10})
    with pytest.raises(ObjectNotFound, match=r"download s3://.*: (404|NoSuchKey)"):
        stages.download(seg, rt)
    assert [p for p in (tmp_path / "s").rglob("*") if p.is_file()] == [], "no partial file left"


def test_missing_table_is_a_mapped_error(clients: dict[str, Any], tmp_path: Path) -> None:
    store = DynamoCompletionStore(clients["dynamodb"], "no-such-table")
    rt = dependencies(clients, tmp_path / "s")
    rt.completions = store
    from video_worker.segments import Uploaded
    seg = put_segment(clients, b"x")
    with pytest.raises(PermanentError, match="put completion job-1/2"):
        stages.record(Uploaded(segment=seg, output_s3_uri="s3://o/k"), rt)


@pytest.mark.parametrize(
    "job_id",
    ["plain", "with space", "ünï", "a" * 128, "-leading-dash", "dots.in.name", "x+y%2Fz"],
)
def test_scratch_paths_stay_inside_root(tmp_path: Path, job_id: str) -> None:
    scratch = ScratchDir(tmp_path / "root")
    seg = Segment(job_id=job_id, segment_index=1, total_segments=2,
                             segment_s3_uri="s3://b/k", mode="anaglyph")
    path = scratch.path_for(seg, "input")
    assert path.parent.parent == scratch.root
    assert len(path.parent.name.encode()) <= 255


def test_foreign_paths_are_never_trusted(tmp_path: Path) -> None:
    scratch = ScratchDir(tmp_path / "root", host="h")
    outside = tmp_path / "elsewhere.mp4"
    outside.write_bytes(b"123")
    assert scratch.holds(LocalFile(host="h", path=str(outside), size=3)) is None
    assert scratch.holds(LocalFile(host="h", path=str(scratch.root / ".." / "elsewhere.mp4"), size=3)) is None


def test_unsafe_path_error_exists_for_symlinked_job_dirs(tmp_path: Path) -> None:
    scratch = ScratchDir(tmp_path / "root")
    (tmp_path / "evil").mkdir()
    (scratch.root / "job").symlink_to(tmp_path / "evil")
    seg = Segment(job_id="job", segment_index=0, total_segments=1, segment_s3_uri="s3://b/k", mode="sbs")
    with pytest.raises(UnsafePath):
        scratch.path_for(seg, "input")


def test_sweep_removes_only_old_files(tmp_path: Path) -> None:
    import os

    scratch = ScratchDir(tmp_path / "root")
    old = scratch.root / "job" / "00000.input.mp4"
    new = scratch.root / "job" / "00001.input.mp4"
    old.parent.mkdir()
    old.write_bytes(b"o")
    new.write_bytes(b"n")
    os.utime(old, (time.time() - 7200, time.time() - 7200))
    assert scratch.sweep(3600) == 1
    assert not old.exists() and new.exists()


def test_wrapped_transfer_errors_keep_their_meaning() -> None:
    from boto3.exceptions import S3UploadFailedError
    from botocore.exceptions import ClientError

    from video_worker.adapters.aws import translate
    from video_worker.errors import AccessDenied, TransientError

    def wrapped(code: str, status: int) -> S3UploadFailedError:
        try:
            try:
                raise ClientError({"Error": {"Code": code, "Message": "m"},
                                   "ResponseMetadata": {"HTTPStatusCode": status}}, "PutObject")
            except ClientError as inner:
                raise S3UploadFailedError("Failed to upload") from inner
        except S3UploadFailedError as outer:
            return outer

    assert isinstance(translate(wrapped("InternalError", 500), "upload"), TransientError)
    assert isinstance(translate(wrapped("AccessDenied", 403), "upload"), AccessDenied)


class _Overlap:
    """A model that notes how many inferences run at once; each waits (up to 5 s) until ``expected`` run together,
    so that the overlap the runner allows is reached whatever the threads' timing."""

    def __init__(self, expected: int) -> None:
        self.expected = expected
        self.running = 0
        self.most = 0
        self.changed = threading.Condition()

    def infer(self, src: Path, dst: Path, mode: Any) -> None:
        with self.changed:
            self.running += 1
            self.most = max(self.most, self.running)
            self.changed.notify_all()
            self.changed.wait_for(lambda: self.most >= self.expected, timeout=5)
        PassthroughModel().infer(src, dst, mode)
        with self.changed:
            self.running -= 1


@pytest.mark.parametrize("slots", [1, 2])
def test_threads_share_the_model_at_most_infer_concurrency_at_a_time(
        clients: dict[str, Any], tmp_path: Path, slots: int) -> None:
    rt = dependencies(clients, tmp_path / "s")
    model = _Overlap(expected=slots)
    rt.model = InlineRunner(model, slots)
    downloaded = [stages.download(put_segment(clients, b"v" * 100, index=i), rt) for i in range(4)]
    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(lambda d: stages.infer(d, rt), downloaded))
    assert [Path(r.output.path).read_bytes() for r in results] == [b"v" * 100] * 4
    assert model.most == slots


def test_a_job_folder_removed_by_another_slot_while_writing_is_made_again(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Slot A removes the job's last file (and the then-empty folder) just as slot B starts writing."""
    scratch = ScratchDir(tmp_path / "root")
    seg = Segment(job_id="j", segment_index=1, total_segments=2,
                             segment_s3_uri="s3://b/segments/j/00001_00002_sbs.mp4", mode="sbs")
    other = scratch.path_for(seg, "input")
    other.parent.mkdir(parents=True)
    other.write_bytes(b"a")
    real_mkstemp = tempfile.mkstemp
    races = []

    def mkstemp_after_the_other_slot_removed(**kwargs: Any) -> tuple[int, str]:
        if not races:
            races.append(1)
            scratch.remove(other)  # unlinks the file and the empty folder
        return real_mkstemp(**kwargs)

    monkeypatch.setattr(tempfile, "mkstemp", mkstemp_after_the_other_slot_removed)
    dest = scratch.path_for(seg, "output")
    with scratch.writing(dest) as tmp:
        tmp.write_bytes(b"b")
    assert races and not other.exists() and dest.read_bytes() == b"b"


def _chain_through(rt: Dependencies, seg: Segment) -> Any:
    return stages.upload(stages.infer(stages.download(seg, rt), rt), rt)


def test_output_and_row_follow_the_newest_upload_whatever_order_the_chains_finish(
        clients: dict[str, Any], tmp_path: Path) -> None:
    """Upload A, then B of one key; A's chain reaches ``upload`` only after B's recorded (no sequencers)."""
    rt = dependencies(clients, tmp_path / "s")
    a_bytes, b_bytes = sample_segment(3000, seed=1), sample_segment(3001, seed=2)
    seg_a = put_segment(clients, a_bytes)
    inferred_a = stages.infer(stages.download(seg_a, rt), rt)   # A's chain, slow: stops before upload
    seg_b = put_segment(clients, b_bytes)                               # B replaces A in S3
    done_b = stages.record(_chain_through(rt, seg_b), rt)
    late_a = stages.upload(inferred_a, rt)
    assert late_a.skipped == "a newer upload of this segment has written its output" and late_a.generation is None
    key = "jobs/job-1/segments/2.mp4"
    out = clients["s3"].get_object(Bucket=clients["res"].output_bucket, Key=key)
    assert out["Body"].read() == b_bytes and out["Metadata"]["generation"] == "1"
    assert done_b.output_generation == 1
    row = rt.completions.get("job-1", 2)
    assert row is not None and row.output_generation == 1 and row.source_etag == out["Metadata"]["source-etag"]


def test_a_newer_upload_replaces_the_output_with_the_next_generation(clients: dict[str, Any], tmp_path: Path) -> None:
    rt = dependencies(clients, tmp_path / "s")
    first = stages.record(_chain_through(rt, put_segment(clients, sample_segment(2000, seed=3))), rt)
    again = _chain_through(rt, put_segment(clients, sample_segment(2000, seed=3)))  # the same bytes: the same upload
    assert first.output_generation == 1 and again.generation == 1 and not again.skipped
    assert not rt.completions.put(stages.record(again, rt).model_copy()), "nothing newer to record"
    newer = stages.record(_chain_through(rt, put_segment(clients, sample_segment(2001, seed=4))), rt)
    assert newer.output_generation == 2
    row = rt.completions.get("job-1", 2)
    assert row is not None and row.output_generation == 2 and row.source_etag == newer.source_etag


class ContextModel:
    """A model that reads the previous segment (``context_frames``): records what it was given."""

    context_frames = 4

    def __init__(self) -> None:
        self.contexts: list[bytes | None] = []

    def infer(self, src: Path, dst: Path, mode: str, context: Path | None = None) -> None:
        self.contexts.append(context.read_bytes() if context is not None else None)
        dst.write_bytes(src.read_bytes())


def _with_context_model(rt: Dependencies, model: ContextModel, **fields: Any) -> Dependencies:
    return Dependencies(**{**rt.__dict__, "model": InlineRunner(model), **fields})


def test_a_model_that_reads_context_gets_the_previous_segment_and_the_row_says_so(
        clients: dict[str, Any], tmp_path: Path) -> None:
    model = ContextModel()
    rt = _with_context_model(dependencies(clients, tmp_path / "s"), model)
    before, data = sample_segment(9_000, seed=1), sample_segment(9_000, seed=2)
    put_segment(clients, before, index=1)
    seg = put_segment(clients, data, index=2)
    done = stages.record(stages.upload(stages.infer(stages.download(seg, rt), rt), rt), rt)
    assert model.contexts == [before] and done.seam_context == "previous"
    item = clients["dynamodb"].get_item(
        TableName=clients["res"].table, Key={"job_id": {"S": "job-1"}, "segment_index": {"N": "2"}})["Item"]
    assert item["seam_context"] == {"S": "previous"}
    assert list((tmp_path / "s").rglob("*.mp4")) == [], "the context file is removed too"
    first = put_segment(clients, before, index=0)
    assert stages.infer(stages.download(first, rt), rt).seam_context is None and model.contexts[-1] is None


def test_a_previous_segment_uploaded_late_is_waited_for_then_the_segment_converts_without_it(
        clients: dict[str, Any], tmp_path: Path) -> None:
    model, slept = ContextModel(), []
    before = sample_segment(9_000, seed=1)

    def sleep(seconds: float) -> None:  # the previous segment arrives while the stage waits for it
        slept.append(seconds)
        if len(slept) == 2:
            put_segment(clients, before, job="late", index=1)

    rt = _with_context_model(dependencies(clients, tmp_path / "s"), model, sleep=sleep, context_wait_seconds=30.0)
    seg = put_segment(clients, sample_segment(9_000, seed=2), job="late", index=2)
    assert stages.infer(stages.download(seg, rt), rt).seam_context == "previous"
    assert model.contexts == [before] and slept == [stages.CONTEXT_POLL_SECONDS] * 2

    never = _with_context_model(dependencies(clients, tmp_path / "t"), model, sleep=lambda s: None,
                                context_wait_seconds=0.0)
    alone = put_segment(clients, sample_segment(9_000, seed=3), job="alone", index=3)
    assert stages.infer(stages.download(alone, never), never).seam_context == "missing"
    assert model.contexts[-1] is None


def test_a_model_without_context_costs_no_request_for_the_previous_segment(
        clients: dict[str, Any], tmp_path: Path) -> None:
    rt = dependencies(clients, tmp_path / "s")
    heads: list[str] = []
    storage_head = rt.storage.head
    rt.storage.head = lambda uri: heads.append(uri) or storage_head(uri)  # type: ignore[method-assign]
    seg = put_segment(clients, sample_segment(9_000), index=3)
    assert stages.infer(stages.download(seg, rt), rt).seam_context is None
    assert not any("00002_" in uri for uri in heads)
