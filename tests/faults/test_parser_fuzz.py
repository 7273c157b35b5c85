"""The raw-event parser under fuzzing: it never raises anything but MalformedMessage, never lets an unsafe job id in."""


from __future__ import annotations

import json

import pytest

from tests.faults.conftest import Outcome, Report
from tests.support.events import s3_notification_body

pytestmark = pytest.mark.integration

def test_parser_fuzz_never_raises_and_never_lets_an_unsafe_job_id_in(report: Report) -> None:
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    from video_worker.errors import MalformedMessage
    from video_worker.events import parse_message
    from video_worker.segments import check_job_id

    tried = {"inputs": 0, "segments": 0}
    json_values = st.recursive(
        st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
        lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4),
        max_leaves=20)
    hostile_keys = st.text(min_size=0, max_size=300).map(lambda t: "segments/" + t + "/00000_00002_sbs.mp4")

    @settings(max_examples=1500, deadline=None, suppress_health_check=list(HealthCheck))
    @given(st.one_of(json_values.map(json.dumps),
                     hostile_keys.map(lambda k: s3_notification_body("in-bucket", k, size=1, etag="e")),
                     st.binary(max_size=200)))
    def run(body: str | bytes) -> None:
        tried["inputs"] += 1
        try:
            parsed = parse_message(body, "in-bucket")
        except MalformedMessage:
            return
        for event in parsed.segments:
            tried["segments"] += 1
            check_job_id(event.payload.job_id)
            assert "/" not in event.payload.job_id and ".." not in event.payload.job_id

    run()
    report.outcomes.append(Outcome(f"parser fuzz (hypothesis): {tried['inputs']} random JSON documents, "
                                   "S3 events with hostile keys, raw bytes", 0, 0, 0, 0, 0, "none", 0.0,
                                   f"0 crashes, 0 unsafe job ids; {tried['segments']} inputs parsed as segments"))
    assert tried["inputs"] >= 1500
