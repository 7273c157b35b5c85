"""Real clips through real workers with ``MODEL=stereo`` on a moto server: formats, concat, bad input.

Clips are generated with PyAV (``models/stereo/synthetic.py``) and cut at
keyframes as the upstream chunker does; outputs are read back with PyAV.
"""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pytest

from tests.faults.conftest import dead_letters
from tests.support.stack import Aws, Processes, wait_until
from video_worker.keys import build_output_segment_key, build_segment_key
from video_worker.models.stereo.chunks import concat, split_at_keyframes
from video_worker.models.stereo.model import StereoModel
from video_worker.models.stereo.quality import joined_disparity, jumps, near_disparity, ordinary_change
from video_worker.models.stereo.settings import load_settings
from video_worker.models.stereo.synthetic import write_clip
from video_worker.models.stereo.verify import problems, read_streams

pytestmark = pytest.mark.integration

STEREO = {"MODEL": "stereo"}


@pytest.fixture(scope="module")
def segments(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """A 2 s 320x180 clip with audio, cut into two 1 s segments at keyframes."""
    root = tmp_path_factory.mktemp("clips")
    clip = root / "clip.mp4"
    write_clip(clip, seconds=2.0, width=320, height=180, fps=25, audio=True, gop=25, seed=3)
    return split_at_keyframes(clip, root / "cut", seconds=1.0)


def _upload(aws: Aws, job: str, paths: list[Path], mode: str) -> None:
    for index, path in enumerate(paths):
        aws.s3.upload_file(str(path), aws.resources.input_bucket, build_segment_key(job, index, len(paths), mode))


def _output(aws: Aws, job: str, index: int, into: Path) -> Path:
    path = into / f"{job}-{index}.mp4"
    aws.s3.download_file(aws.resources.output_bucket, build_output_segment_key(job, index), str(path))
    return path


@pytest.mark.parametrize("mode", ["sbs", "anaglyph"])
def test_segments_become_stereo_that_reassembly_can_concatenate(
        aws: Aws, procs: Processes, segments: list[Path], tmp_path: Path, mode: str) -> None:
    worker = procs.worker(**STEREO)
    procs.bridge()
    job = f"stereo-{mode}"
    _upload(aws, job, segments, mode)
    rows = wait_until(lambda: (r := aws.completion_rows(job)) and len(r) == len(segments) and r, 120, "two rows")
    outputs = [_output(aws, job, i, tmp_path) for i in range(len(segments))]
    for src, out in zip(segments, outputs, strict=True):
        frames, wrong = problems(src, out, mode)
        assert wrong == [] and frames == len(read_streams(src).pts) > 0
    joined = read_streams(concat(outputs, tmp_path / "joined.mp4")).pts
    assert len(joined) == sum(len(read_streams(s).pts) for s in segments)
    assert all(b > a for a, b in itertools.pairwise(joined)), "monotonic timestamps across the cut"
    fingerprints = {row["model_fingerprint"]["S"] for row in rows}
    assert {row["model"]["S"] for row in rows} == {"stereo"} and len(fingerprints) == 1
    log = worker.log()
    assert log.index("model stereo ready in process") < log.index(" ready."), "built and warmed up at start-up"


def test_input_that_is_not_a_video_is_dead_lettered_and_the_worker_carries_on(
        aws: Aws, procs: Processes, segments: list[Path], tmp_path: Path) -> None:
    worker = procs.worker(**STEREO, MAX_FRAME_PIXELS="20000")
    procs.bridge()
    aws.s3.put_object(Bucket=aws.resources.input_bucket, Key=build_segment_key("bad-input", 0, 3, "sbs"),
                      Body=b"this is not a video, just text " * 100)
    _upload(aws, "too-big", segments[:1], "sbs")  # 320x180 = 57 600 pixels > MAX_FRAME_PIXELS
    letters = wait_until(lambda: (d := dead_letters(procs)) and len(d) == 2 and d, 120, "two dead letters")
    by_job = {letter["payload"]["job_id"]: letter for letter in letters}
    assert by_job["bad-input"]["error_type"] == "ModelRejected" and by_job["bad-input"]["failed_task"] == \
        "video_worker.infer"
    assert "not a readable video" in by_job["bad-input"]["error"] and by_job["bad-input"]["attempts"] == 1
    assert by_job["too-big"]["error_type"] == "ModelRejected" and "MAX_FRAME_PIXELS" in by_job["too-big"]["error"]
    assert aws.completion_rows("bad-input") == [] and aws.output(build_output_segment_key("bad-input", 0)) is None
    aws.s3.put_object(Bucket=aws.resources.input_bucket, Key=build_segment_key("after-bad", 0, 1, "anaglyph"),
                      Body=_small_clip(tmp_path).read_bytes())
    wait_until(lambda: aws.completion_rows("after-bad"), 120, "a good segment after the bad ones")
    assert worker.alive()


def _small_clip(root: Path) -> Path:
    path = root / "small.mp4"
    write_clip(path, seconds=0.5, width=96, height=64, fps=10, audio=False, gop=5, seed=1)
    return path


def test_segments_uploaded_out_of_order_join_without_a_jump_in_depth(
        aws: Aws, procs: Processes, tmp_path: Path) -> None:
    """A continuous scene cut into three segments; the first is uploaded last, while the others wait for it."""
    clip = tmp_path / "clip.mp4"
    scene = write_clip(clip, seconds=3.0, width=320, height=180, fps=25, audio=True, gop=25, seed=0)
    cut = split_at_keyframes(clip, tmp_path / "cut", seconds=1.0)
    whole = tmp_path / "whole.mp4"
    StereoModel(load_settings({})).convert(clip, whole, "sbs")  # the reference: the clip as one segment
    worker = procs.worker(**STEREO, WORKER_CONCURRENCY="3", INFER_CONCURRENCY="2")
    procs.bridge()
    job = "seams"
    for index in (2, 1):
        aws.s3.upload_file(str(cut[index]), aws.resources.input_bucket, build_segment_key(job, index, 3, "sbs"))
    wait_until(lambda: "waiting up to 60s for the previous segment" in worker.log(), 60, "a segment waiting")
    aws.s3.upload_file(str(cut[0]), aws.resources.input_bucket, build_segment_key(job, 0, 3, "sbs"))
    rows = wait_until(lambda: (r := aws.completion_rows(job)) and len(r) == 3 and r, 180, "three rows")
    by_index = {int(row["segment_index"]["N"]): row for row in rows}
    assert "seam_context" not in by_index[0]
    assert by_index[1]["seam_context"] == by_index[2]["seam_context"] == {"S": "previous"}
    joined, cuts = joined_disparity(scene, [_output(aws, job, i, tmp_path) for i in range(3)])
    reference = np.array(near_disparity(scene, whole))
    assert cuts == [25, 50] and len(joined) == len(reference) == 75
    assert float(np.abs(joined - reference).max()) <= 0.5
    assert max(jumps(joined, cuts)) <= ordinary_change(joined, cuts)
