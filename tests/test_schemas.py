"""``docs/schemas``: one JSON Schema per payload a stage takes or returns, kept in step with the models."""

import json
from pathlib import Path

from video_worker.ops.schemas import all_schemas, payload_models
from video_worker.stages import STAGES

DOCS = Path(__file__).resolve().parent.parent / "docs" / "schemas"


def test_committed_schemas_match_the_models() -> None:
    for name, schema in all_schemas().items():
        committed = json.loads((DOCS / name).read_text(encoding="utf-8"))
        assert committed == schema, f"docs/schemas/{name} is stale: run `video-worker schemas`"
    assert sorted(p.name for p in DOCS.glob("*.schema.json")) == sorted(all_schemas()), "no stale schema files"


def test_every_stage_payload_has_a_schema_and_the_segment_names_its_required_fields() -> None:
    assert {m for stage in STAGES for m in (stage.input, stage.output)} == set(payload_models())
    schema = all_schemas()["Segment.schema.json"]
    assert schema["properties"]["mode"]["enum"] == ["anaglyph", "sbs"]
    assert set(schema["required"]) == {"job_id", "segment_index", "total_segments", "segment_s3_uri", "mode"}
