"""JSON Schemas of the task payloads, for services that publish by task name."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from video_worker.payloads import Downloaded, Inferred, SegmentCompletion, Uploaded, VideoWorkerPayload

# task name → (argument model, return model)
TASK_PAYLOADS: dict[str, tuple[type[BaseModel], type[BaseModel] | None]] = {
    "video_worker.download": (VideoWorkerPayload, Downloaded),
    "video_worker.infer": (Downloaded, Inferred),
    "video_worker.upload": (Inferred, Uploaded),
    "video_worker.record": (Uploaded, SegmentCompletion),
    "video_worker.process": (VideoWorkerPayload, None),
}


def all_schemas() -> dict[str, dict[str, Any]]:
    """File name → JSON Schema, one per payload model."""
    models: list[type[BaseModel]] = [VideoWorkerPayload, Downloaded, Inferred, Uploaded, SegmentCompletion]
    return {f"{m.__name__}.schema.json": m.model_json_schema() for m in models}


def write_schemas(out: Path) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for name, schema in all_schemas().items():
        path = out / name
        path.write_text(json.dumps(schema, indent=2, sort_keys=True) + "\n", encoding="utf-8")
        written.append(path)
    return written
