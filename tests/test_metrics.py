"""The metrics' parts on their own: skip reasons, the bridge's outcomes, the metered dependencies, the settings,
the multiprocess directory's cleaning (real parsers, in-process moto, real files; the endpoints end to end are
in ``tests/integration/test_metrics.py``)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from tests.support.events import s3_notification_body
from tests.support.unit import dependencies, put_segment
from video_worker import stages
from video_worker.adapters.sqs import SqsQueue
from video_worker.bridge import Bridge
from video_worker.events import parse_message
from video_worker.ops.bridge_metrics import SKIP_REASONS, BridgeMetrics, skip_reason
from video_worker.ops.sample import sample_segment
from video_worker.settings import Settings
from video_worker.worker.metrics import metered, multiprocess, series

BUCKET = "in-bucket"
REQUIRED: dict[str, Any] = {"input_bucket_name": "in-bucket", "output_bucket_name": "out-bucket",
                            "segment_completions_table_name": "completions"}


@pytest.mark.parametrize(("body", "reason"), [
    (json.dumps({"Service": "Amazon S3", "Event": "s3:TestEvent", "Bucket": BUCKET}), "test_event"),
    (s3_notification_body(BUCKET, "segments/j/00000_00001_sbs.mp4", size=1, etag="e",
                          event_name="ObjectRemoved:Delete"), "not_object_created"),
    (s3_notification_body("another-bucket", "segments/j/00000_00001_sbs.mp4", size=1, etag="e"), "other_bucket"),
    (s3_notification_body(BUCKET, "segments/j/00003_00003_sbs.mp4", size=1, etag="e"), "not_segment_key"),
    (s3_notification_body(BUCKET, "elsewhere/file.mp4", size=1, etag="e"), "not_segment_key"),
    (json.dumps({"Records": [{"eventSource": "aws:sqs"}]}), "not_s3_record"),
])
def test_every_skip_the_parser_makes_has_its_own_reason_label(body: str, reason: str) -> None:
    [skip] = parse_message(body, BUCKET).skipped
    assert skip_reason(skip) == reason and reason in SKIP_REASONS


def test_the_bridge_reports_each_message_once_with_its_outcome(raw_queue: tuple[Any, str]) -> None:
    client, url = raw_queue
    for body in (s3_notification_body(BUCKET, "segments/j/00000_00002_sbs.mp4", size=10, etag="e1"),
                 json.dumps({"Service": "Amazon S3", "Event": "s3:TestEvent", "Bucket": BUCKET}),
                 s3_notification_body(BUCKET, "segments/j/00000_00001_3d.mp4", size=10, etag="e2"),
                 "not json"):
        client.send_message(QueueUrl=url, MessageBody=body)
    seen = BridgeMetrics()
    bridge = Bridge(SqsQueue(client, url), BUCKET, lambda _event: None, wait_time_seconds=0, observe=seen.observe)
    received = 0
    while received < 4:
        received += bridge.poll_once().received

    def count(name: str, **labels: str) -> float | None:
        return seen.registry.get_sample_value(name, labels)

    assert count("video_worker_bridge_messages_total", outcome="published") == 1
    assert count("video_worker_bridge_messages_total", outcome="skipped") == 2
    assert count("video_worker_bridge_messages_total", outcome="invalid") == 1
    assert count("video_worker_bridge_skipped_records_total", reason="test_event") == 1
    assert count("video_worker_bridge_skipped_records_total", reason="not_segment_key") == 1
    assert count("video_worker_bridge_skipped_records_total", reason="other") == 0


def test_metered_dependencies_count_bytes_model_time_and_rows(clients: dict[str, Any], tmp_path: Path) -> None:
    from prometheus_client import CollectorRegistry

    registry = CollectorRegistry()
    rt = metered.instrument(dependencies(clients, tmp_path / "s"), series.WorkerMetrics(registry))
    data = sample_segment(6 * 1024 * 1024 + 7)  # multipart on the way out (5 MiB parts)
    uploaded = stages.upload(stages.infer(stages.download(put_segment(clients, data), rt), rt), rt)
    stages.record(uploaded, rt)
    stages.record(uploaded, rt)  # a second delivery: the row is there already

    def count(name: str, **labels: str) -> float | None:
        return registry.get_sample_value(name, labels)

    assert count("video_worker_bytes_total", direction="in") == len(data)
    assert count("video_worker_bytes_total", direction="out") == len(data)
    assert (count("video_worker_model_seconds_total") or 0) > 0
    assert count("video_worker_segments_total", outcome="completed") == 1
    assert count("video_worker_segments_total", outcome="skipped") == 1
    assert count("video_worker_segments_total", outcome="dead_lettered") == 0
    assert metered.instrument(rt, None) is rt, "off: nothing is wrapped"


def test_metrics_ports_are_optional_ports() -> None:
    assert Settings(**REQUIRED).metrics_port is None and Settings(**REQUIRED).bridge_metrics_port is None
    assert Settings(**REQUIRED, metrics_port="9100", bridge_metrics_port="").bridge_metrics_port is None
    assert Settings(**REQUIRED, metrics_port="9100").metrics_port == 9100
    for bad in ("0", "65536", "http"):
        with pytest.raises(ValidationError, match=r"(?i)metrics_port"):
            Settings(**REQUIRED, metrics_port=bad)


def test_cleaning_removes_stale_files_but_not_a_live_process_s(tmp_path: Path) -> None:
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True,
                          check=True)
    dead, alive = int(gone.stdout), os.getpid()
    for name in (f"counter_{dead}.db", f"gauge_livesum_{dead}.db", f"counter_{alive}.db"):
        (tmp_path / "user" / name).parent.mkdir(exist_ok=True)
        (tmp_path / "user" / name).write_bytes(b"")
    multiprocess.clean(tmp_path / "user", ours=False)  # the user's directory: only the files of dead processes
    assert sorted(p.name for p in (tmp_path / "user").iterdir()) == [f"counter_{alive}.db"]
    multiprocess.clean(tmp_path / "user", ours=True)  # ours: everything from an earlier run
    assert list((tmp_path / "user").iterdir()) == []


def test_a_segment_is_in_progress_from_its_first_stage_to_the_last_its_slot_runs() -> None:
    """The gauge follows the lifecycle's ``segment_entered``/``segment_left`` around each message's trace (the
    stages chain affinity runs after it included), whatever order the stages' own signals come in."""
    from prometheus_client import CollectorRegistry

    from video_worker.celery_app import create_app

    registry = CollectorRegistry()
    m = series.WorkerMetrics(registry)
    series.connect(m)
    lifecycle = create_app(Settings(**REQUIRED)).tasks["video_worker.download"].lifecycle
    assert lifecycle is not None

    def held() -> float | None:
        return registry.get_sample_value("video_worker_segments_in_progress")

    assert lifecycle.trace_message("video_worker.download", "download-a", held) == 1, "held while it runs"
    assert held() == 0
    with pytest.raises(RuntimeError):
        lifecycle.trace_message("video_worker.download", "download-b", lambda: (_ for _ in ()).throw(RuntimeError()))
    assert held() == 0, "a trace that raised lets go too"
    assert lifecycle.trace_message("video_worker.process", "entry", held) == 0, "the entry task holds no segment"
    m.stage_started("download-c")
    m.stage_ended("download-c", "download")
    assert registry.get_sample_value("video_worker_stage_seconds_count", {"stage": "download"}) == 1


def test_series_made_after_collect_from_files_write_their_values_in_files(tmp_path: Path) -> None:
    """``multiprocess.collect_from_files``: prometheus_client chose where values live at import and offers no hook;
    choosing again (``values.ValueClass = values.get_value_class()``) with ``PROMETHEUS_MULTIPROC_DIR`` set sends
    the series made afterwards to files, which the returned registry adds up (a fresh process: it is global)."""
    code = (f"import os; from pathlib import Path; from prometheus_client import Counter\n"
            f"from video_worker.worker.metrics.multiprocess import collect_from_files\n"
            f"registry = collect_from_files(Path({str(tmp_path)!r}))\n"
            f"Counter('contract_total', 'c', registry=None).inc(3)\n"
            f"print(registry.get_sample_value('contract_total'), sorted(os.listdir({str(tmp_path)!r})))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env={k: v for k, v in os.environ.items() if k != multiprocess.MULTIPROC_ENV})
    assert out.stdout.split(" ", 1)[0] == "3.0" and "counter_" in out.stdout, out.stdout + out.stderr
