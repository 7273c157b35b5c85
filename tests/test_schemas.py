import json
from pathlib import Path

from video_worker.app import TASK_NAMES
from video_worker.schemas import TASK_PAYLOADS, all_schemas

DOCS = Path(__file__).resolve().parent.parent / "docs" / "schemas"


def test_committed_schemas_match_the_models() -> None:
    for name, schema in all_schemas().items():
        committed = json.loads((DOCS / name).read_text(encoding="utf-8"))
        assert committed == schema, f"docs/schemas/{name} is stale: run `video-worker schemas`"


def test_every_task_has_documented_payloads() -> None:
    assert set(TASK_NAMES) < set(TASK_PAYLOADS)
    schema = all_schemas()["VideoWorkerPayload.schema.json"]
    assert schema["properties"]["mode"]["enum"] == ["anaglyph", "sbs"]
    assert set(schema["required"]) == {"job_id", "segment_index", "total_segments", "segment_s3_uri", "mode"}
