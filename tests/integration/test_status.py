"""``video-worker status``, run as a command against a real moto server and real workers."""

from __future__ import annotations

import itertools
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.support.stack import Aws, Processes, wait_until
from video_worker.keys import build_segment_key
from video_worker.ops.sample import sample_segment

pytestmark = pytest.mark.integration


def _put(aws: Aws, job: str, index: int, total: int, data: bytes) -> None:
    aws.s3.put_object(Bucket=aws.resources.input_bucket, Key=build_segment_key(job, index, total, "sbs"), Body=data)


def _status(procs: Processes, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "video_worker", "status", *args], env=procs.env(),
                          capture_output=True, text=True, timeout=120)


def _visible(aws: Aws, url: str) -> int:
    attrs = aws.sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["ApproximateNumberOfMessages"])
    return int(attrs["Attributes"]["ApproximateNumberOfMessages"])


def test_status_names_the_completed_missing_and_dead_lettered_segments(aws: Aws, procs: Processes) -> None:
    procs.worker(MODEL="tests.support.models:misbehaving")
    procs.bridge()
    # Three of four segments arrive; the model rejects segment 1 (dead-lettered), segment 3 never comes.
    for index in (0, 1, 2):
        _put(aws, "partial", index, 4, (b"REJECT" if index == 1 else b"") + sample_segment(20_000, seed=index))
    for index in (0, 1):
        _put(aws, "whole", index, 2, sample_segment(20_000 + index, seed=index))
    dlq = aws.resources.dlq_url
    wait_until(lambda: aws.completion_count("partial") == 2 and aws.completion_count("whole") == 2
               and aws.queue_depth(dlq) == 1, 120, "four rows and the dead letter")

    out = _status(procs, "partial", "--json")
    assert out.returncode == 0, out.stderr
    status: dict[str, Any] = json.loads(out.stdout)
    assert (status["job_id"], status["state"], status["total_segments"]) == ("partial", "in_progress", 4)
    assert (status["completed"], status["missing"], status["resolved_dead_letters"]) == ([0, 2], [1, 3], [])
    [letter] = status["dead_lettered"]
    assert {k: letter[k] for k in ("segment_index", "failed_task", "error_type", "attempts")} == {
        "segment_index": 1, "failed_task": "video_worker.infer", "error_type": "ModelRejected", "attempts": 1}
    assert letter["error"] == "the model cannot convert this segment" and letter["id"]
    assert status["models"] == [{"model": "tests.support.models:misbehaving", "model_fingerprint": None,
                                 "segments": [0, 2]}]
    assert status["fingerprint_mismatch"] is False and status["last_completed_at"] > 1_700_000_000
    assert _visible(aws, dlq) == 1, "the status read released the dead letter for other readers"

    human = _status(procs, "partial")
    assert human.returncode == 0, human.stderr
    lines = human.stdout.splitlines()
    assert lines[:2] == ["job partial: 2/4 segments complete (50%), in progress", "missing: 1, 3"]
    assert lines[2] == (f"dead-lettered: segment 1 at video_worker.infer after 1 attempt: ModelRejected: "
                        f"the model cannot convert this segment (id {letter['id']})")
    assert lines[3] == "models: tests.support.models:misbehaving (2 segments)"
    assert _visible(aws, dlq) == 1

    whole = _status(procs, "whole", "--json")
    assert whole.returncode == 0, whole.stderr
    done = json.loads(whole.stdout)
    assert (done["state"], done["completed"], done["missing"], done["dead_lettered"]) == ("complete", [0, 1], [], [])
    assert _status(procs, "whole").stdout.splitlines()[0] == "job whole: 2/2 segments complete (100%), complete"

    unknown = _status(procs, "nobody")
    assert (unknown.returncode, unknown.stdout) == (1, "")
    assert unknown.stderr.strip().splitlines()[-1] == "video-worker: no completion rows or dead letters for job nobody"
    as_json = _status(procs, "nobody", "--json")
    assert as_json.returncode == 1 and json.loads(as_json.stdout)["state"] == "unknown"
    idle = _status(procs, "nobody", "--watch", "--interval", "0.2", "--idle-timeout", "1")
    assert idle.returncode == 1
    assert idle.stdout.splitlines()[-1] == "stopped: nothing changed for 1s; no completion rows or dead letters " \
                                           "for job nobody"


def test_watch_follows_a_job_until_it_is_complete(aws: Aws, procs: Processes, tmp_path: Path) -> None:
    procs.worker()
    procs.bridge()
    log = tmp_path / "watch.out"
    with log.open("w") as out:
        watcher = subprocess.Popen([sys.executable, "-m", "video_worker", "status", "watched", "--watch",
                                    "--interval", "0.5", "--idle-timeout", "120"],
                                   env=procs.env(), stdout=out, stderr=subprocess.PIPE, text=True)
    try:
        wait_until(lambda: "no completion rows or dead letters yet" in log.read_text(), 60, "the watch to start")
        for index in range(3):
            _put(aws, "watched", index, 3, sample_segment(20_000 + index, seed=index))
        _, err = watcher.communicate(timeout=180)
    finally:
        if watcher.poll() is None:
            watcher.kill()
            watcher.wait(30)
    text = log.read_text()
    assert watcher.returncode == 0, f"{text}\n{err}"
    assert "\r" not in text, "not a TTY: lines, no redrawing"
    lines = text.splitlines()
    assert lines[0] == "job watched: no completion rows or dead letters yet"
    bars = [line for line in lines if line.startswith("job watched [")]
    assert bars[-1] == f"job watched [{'#' * 30}] 3/3 (100%), complete"
    assert all(a != b for a, b in itertools.pairwise(bars)), "a line only when something changed"
    assert "job watched: 3/3 segments complete (100%), complete" in lines
    assert "models: passthrough (3 segments)" in lines
