"""JSON Schemas of the task payloads (one per model of ``stages.STAGES``), for services that publish by name."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from video_worker.stages import STAGES


def payload_models() -> list[type[BaseModel]]:
    """Every model a stage takes or returns, in chain order."""
    models: list[type[BaseModel]] = []
    for stage in STAGES:
        models += [m for m in (stage.input, stage.output) if m not in models]
    return models


def all_schemas() -> dict[str, dict[str, Any]]:
    """File name → JSON Schema, one per payload model."""
    return {f"{m.__name__}.schema.json": m.model_json_schema() for m in payload_models()}


def write_schemas(out: Path) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for name, schema in all_schemas().items():
        path = out / name
        path.write_text(json.dumps(schema, indent=2, sort_keys=True) + "\n", encoding="utf-8")
        written.append(path)
    return written
