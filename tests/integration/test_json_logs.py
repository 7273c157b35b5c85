"""``LOG_FORMAT=json``: every line of the worker and the bridge is one JSON object, with the segment's identity."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.support.stack import Aws, Processes, wait_until
from video_worker.keys import build_segment_key
from video_worker.ops.sample import sample_segment
from video_worker.stages import STAGE_NAMES

pytestmark = pytest.mark.integration


def _objects(text: str) -> list[dict[str, Any]]:
    """Each line as JSON (a line that is not one fails the test, naming it)."""
    out = []
    for line in filter(None, text.splitlines()):
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError:
            pytest.fail(f"not a JSON log line: {line!r}")
    return out


def test_worker_and_bridge_log_json_lines_naming_the_segment(aws: Aws, procs: Processes) -> None:
    worker = procs.worker("json", LOG_FORMAT="json", PYTHONWARNINGS="default")
    bridge = procs.bridge(LOG_FORMAT="json")
    aws.s3.put_object(Bucket=aws.resources.input_bucket, Key=build_segment_key("logged", 3, 5, "anaglyph"),
                      Body=sample_segment(20_000))
    wait_until(lambda: aws.completion_rows("logged"), 60, "the row")
    wait_until(lambda: any(line.get("stage") == "record" and "succeeded" in line["message"]
                           for line in _objects(worker.log())), 30, "record's success line")
    procs.stop_all()

    lines = _objects(worker.log())
    assert all({"time", "level", "logger", "message"} <= set(line) for line in lines)
    stages = {}
    for line in lines:
        if line.get("stage"):
            assert (line["job_id"], line["segment_index"]) == ("logged", 3), line
            assert stages.setdefault(line["stage"], line["task_id"]) == line["task_id"], "one task id per stage"
    assert set(stages) == {name.rsplit(".", 1)[-1] for name in STAGE_NAMES}
    assert len(set(stages.values())) == 4
    succeeded = [line for line in lines if "succeeded" in line["message"] and line.get("stage")]
    assert {line["stage"] for line in succeeded} == set(stages), "Celery's own lines carry the stage too"
    assert any("ready" in line["message"] for line in lines) and any("transport" in line["message"] for line in lines)

    published = [line for line in _objects(bridge.log()) if "published chain" in line["message"]]
    assert [(line["job_id"], line["segment_index"]) for line in published] == [("logged", 3)]
    assert published[0]["message_id"]


def test_the_default_stays_human_readable(aws: Aws, procs: Processes) -> None:
    worker = procs.worker("text")
    wait_until(lambda: " ready." in worker.log(), 60, "the worker")
    assert not worker.log().lstrip().startswith("{")
    assert "[config]" in worker.log(), "Celery's banner"
