"""A depth estimator plugged in by import path that hangs on one segment, under the real converter
(``MODEL=stereo``): the stall watch kills its model process, the segment is dead-lettered after
``MAX_DELIVERIES`` with the stall named, and the other segments are converted meanwhile."""

from __future__ import annotations

import time
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest

from tests.faults.conftest import Outcome, Report, dead_letters, settle
from tests.support.stack import Aws, Processes, wait_until
from video_worker.keys import build_segment_key
from video_worker.models.stereo.synthetic import write_clip

pytestmark = pytest.mark.integration



def _black_clip(path: Path, frames: int = 25, size: tuple[int, int] = (160, 96)) -> None:
    """A 1 s H.264 clip of black frames: the segment the estimator hangs on."""
    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=Fraction(25))
        stream.width, stream.height, stream.pix_fmt = *size, "yuv420p"
        black = np.zeros((size[1], size[0], 3), np.uint8)
        for _ in range(frames):
            out.mux(stream.encode(av.VideoFrame.from_ndarray(black, format="rgb24")))
        out.mux(stream.encode(None))


def test_a_hung_estimator_is_dead_lettered_by_the_stall_watch_while_other_segments_convert(
        aws: Aws, procs: Processes, report: Report, tmp_path: Path) -> None:
    worker = procs.worker(MODEL="stereo", STEREO_DEPTH="tests.support.depth_plugins:hangs_on_dark",
                          STEREO_STALL_SECONDS="3", INFER_CONCURRENCY="2", TASK_RETRY_BASE_SECONDS="0.5")
    procs.bridge()
    wait_until(lambda: "ready." in worker.log(), 120, "worker ready")
    pid = worker.popen.pid
    _black_clip(tmp_path / "black.mp4")
    started = time.monotonic()
    aws.s3.put_object(Bucket=aws.resources.input_bucket, Key=build_segment_key("hung", 0, 1, "sbs"),
                      Body=(tmp_path / "black.mp4").read_bytes())
    good = {}
    for i in range(3):
        clip = tmp_path / f"good-{i}.mp4"
        write_clip(clip, seconds=1.0, width=160, height=96, audio=False, seed=i)
        good[i] = clip.read_bytes()
        aws.s3.put_object(Bucket=aws.resources.input_bucket, Key=build_segment_key("good", i, 3, "sbs"), Body=good[i])
    [letter] = wait_until(lambda: dead_letters(procs), 180, "the hung segment's dead letter")
    dead_after = time.monotonic() - started
    settle(aws, "good", good, 120)
    report.outcomes.append(Outcome(
        "a depth estimator plugged in by import path that hangs on one segment (MODEL=stereo, "
        "STEREO_STALL_SECONDS=3), beside 3 good segments", 4, aws.completion_count("good"), 1, 0, 0,
        "3 stalls, each model process killed after 3 s without progress", dead_after,
        f"dead letter: {letter['error'][:90]}"))
    assert letter["error_type"] == "ModelStalled" and letter["failed_task"] == "video_worker.infer"
    assert letter["payload"]["job_id"] == "hung" and letter["attempts"] == 3
    assert "made no progress for" in letter["error"] and "(STEREO_STALL_SECONDS=3)" in letter["error"]
    assert dead_after < 150, "three stalls of 3 s, backoffs and model restarts, not three infer time limits"
    assert aws.completion_count("good") == 3 and aws.completion_count("hung") == 0
    assert worker.alive() and worker.popen.pid == pid  # the model process died, never the worker
