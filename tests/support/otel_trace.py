"""A ``celery worker -I`` module: OpenTelemetry's Celery instrumentation, spans written to ``OTEL_TEST_SPANS``.

The SDK's in-memory exporter, kept in the worker process, is drained to a file
(one JSON object per span) as each span ends, so a test can read what a real
worker traced.
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Sequence

from opentelemetry import trace
from opentelemetry.instrumentation.celery import CeleryInstrumentor
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExporter, SpanExportResult
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

_lock = threading.Lock()


class DrainToFile(SpanExporter):
    """The in-memory exporter, drained to a JSON-lines file on every export."""

    def __init__(self, path: str) -> None:
        self.memory = InMemorySpanExporter()
        self.path = path

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        self.memory.export(spans)
        with _lock, open(self.path, "a", encoding="utf-8") as out:
            for span in self.memory.get_finished_spans():
                parent = span.parent.span_id if span.parent else None
                out.write(json.dumps({"name": span.name, "trace_id": span.context.trace_id,
                                      "span_id": span.context.span_id, "parent_id": parent,
                                      "start": span.start_time, "end": span.end_time,
                                      "attributes": {k: str(v) for k, v in (span.attributes or {}).items()}}) + "\n")
            self.memory.clear()
        return SpanExportResult.SUCCESS


provider = TracerProvider()
provider.add_span_processor(SimpleSpanProcessor(DrainToFile(os.environ["OTEL_TEST_SPANS"])))
trace.set_tracer_provider(provider)
CeleryInstrumentor().instrument()
