"""``logs.JsonFormatter``: one JSON object per record, the segment's identity from context, bound fields, extra."""

from __future__ import annotations

import json
import logging
import threading

from video_worker import logs


def _line(record_logger: logging.Logger, formatter: logging.Formatter, emit: object) -> dict[str, object]:
    lines: list[str] = []

    class Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            lines.append(self.format(record))

    handler = Collect()
    handler.setFormatter(formatter)
    record_logger.setLevel(logging.DEBUG)
    record_logger.addHandler(handler)
    try:
        emit()  # type: ignore[operator]
    finally:
        record_logger.removeHandler(handler)
    [line] = lines
    return dict(json.loads(line))


def test_a_line_has_the_base_keys_and_no_identity_outside_a_segment() -> None:
    logger = logging.getLogger("t.plain")
    line = _line(logger, logs.JsonFormatter(), lambda: logger.warning("disk %d%% full", 93))
    assert line["message"] == "disk 93% full" and line["level"] == "WARNING" and line["logger"] == "t.plain"
    assert str(line["time"]).endswith("Z")
    assert not set(logs.IDENTITY) & set(line)


def test_identity_from_context_then_bound_then_extra_each_winning_over_the_last() -> None:
    logger = logging.getLogger("t.identity")
    formatter = logs.JsonFormatter(lambda: {"task_id": "from-task", "stage": "infer", "job_id": "ctx"})
    with logs.bound(job_id="bound-job", segment_index=4, message_id="m-1"):
        line = _line(logger, formatter, lambda: logger.info("x", extra={"segment_index": 5}))
    assert (line["job_id"], line["segment_index"], line["task_id"], line["stage"]) == ("bound-job", 5,
                                                                                         "from-task", "infer")
    assert line["message_id"] == "m-1"
    after = _line(logger, formatter, lambda: logger.info("y"))
    assert after["job_id"] == "ctx" and "segment_index" not in after, "bound only inside the block"


def test_bound_fields_stay_in_their_thread() -> None:
    logger = logging.getLogger("t.threads")
    seen: dict[str, object] = {}

    def other() -> None:
        seen.update(_line(logger, logs.JsonFormatter(), lambda: logger.info("other")))

    with logs.bound(job_id="mine"):
        thread = threading.Thread(target=other)
        thread.start()
        thread.join()
    assert "job_id" not in seen


def test_an_exception_is_one_field_of_the_one_line() -> None:
    logger = logging.getLogger("t.exc")

    def fail() -> None:
        try:
            raise RuntimeError("boom")
        except RuntimeError:
            logger.exception("it failed")

    line = _line(logger, logs.JsonFormatter(), fail)
    assert "RuntimeError: boom" in str(line["exception"]) and line["message"] == "it failed"


def test_the_segment_of_a_payload() -> None:
    segment = {"job_id": "j", "segment_index": 2, "mode": "sbs"}
    assert logs.segment_of(segment) == {"job_id": "j", "segment_index": 2}
    assert logs.segment_of({"segment": segment, "output": {}}) == {"job_id": "j", "segment_index": 2}
    assert logs.segment_of("not a payload") == {} and logs.segment_of({"other": 1}) == {}


def test_text_is_left_as_it_is() -> None:
    logger = logging.getLogger("t.text")
    handler = logging.StreamHandler()
    original = handler.formatter
    logger.addHandler(handler)
    try:
        logs.use_format("text", logger)
        assert handler.formatter is original
        logs.use_format("json", logger)
        assert isinstance(handler.formatter, logs.JsonFormatter)
    finally:
        logger.removeHandler(handler)
