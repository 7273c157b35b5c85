"""One settings object, built once at the entry point and passed down.

Nothing is read from the environment at import time: ``load_settings()`` is
called by the CLI, by the Celery app when its configuration is first needed,
or by tests that build ``Settings(...)`` directly.
"""

from __future__ import annotations

import importlib.util
import re
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

from pydantic import AliasChoices, Field, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from video_worker.errors import ConfigError
from video_worker.inference import (
    available_models,
    default_infer_concurrency,
    default_infer_per_process,
    is_import_path,
)
from video_worker.logs import LogFormat
from video_worker.retry_policy import RetryPolicy, RetryRule
from video_worker.stages import STAGE_NAMES, stage_limits

AWS_SERVICES = ("s3", "sqs", "sns", "dynamodb")


@dataclass(frozen=True)
class AwsConfig:
    """What the AWS clients need: region, endpoints, connection pool size (built from ``Settings``)."""

    region: str
    endpoint_url: str | None = None
    service_endpoints: dict[str, str] = field(default_factory=dict)
    max_pool_connections: int = 10

    def endpoint(self, service: str) -> str | None:
        """``AWS_ENDPOINT_URL_<SERVICE>``, else ``AWS_ENDPOINT_URL``, else AWS's own (as boto3 resolves them)."""
        return self.service_endpoints.get(service) or self.endpoint_url


class Settings(BaseSettings):
    """Every knob of the worker and the bridge, with its environment variable."""

    model_config = SettingsConfigDict(
        case_sensitive=False, populate_by_name=True, extra="ignore", frozen=True
    )

    # The pipeline's existing contract.
    input_bucket_name: str = Field(min_length=3, validation_alias="INPUT_BUCKET_NAME",
        description="bucket the segments are uploaded to; events for other buckets are skipped")
    output_bucket_name: str = Field(min_length=3, validation_alias="OUTPUT_BUCKET_NAME",
        description="bucket the results are written to, at `jobs/{job_id}/segments/{segment_index}.mp4`")
    segment_completions_table_name: str = Field(min_length=3, validation_alias="SEGMENT_COMPLETIONS_TABLE_NAME",
        description="DynamoDB table of the completion rows (`job_id` S, `segment_index` N)")
    video_worker_queue_url: str | None = Field(None, validation_alias="VIDEO_WORKER_QUEUE_URL",
        description="the raw S3-event queue; required by the bridge")
    aws_region: str = Field("us-east-1", validation_alias=AliasChoices("AWS_REGION", "AWS_DEFAULT_REGION"),
        description="region of every client and of the SQS broker")
    aws_endpoint_url: str | None = Field(None, validation_alias="AWS_ENDPOINT_URL",
        description="one endpoint for S3, DynamoDB, SQS, SNS and the broker (moto, LocalStack)")
    aws_endpoint_url_s3: str | None = Field(None, validation_alias="AWS_ENDPOINT_URL_S3",
        description="S3's own endpoint; wins over `AWS_ENDPOINT_URL`, as in boto3")
    aws_endpoint_url_sqs: str | None = Field(None, validation_alias="AWS_ENDPOINT_URL_SQS",
        description="SQS's own endpoint (the broker follows it); wins over `AWS_ENDPOINT_URL`")
    aws_endpoint_url_sns: str | None = Field(None, validation_alias="AWS_ENDPOINT_URL_SNS",
        description="SNS's own endpoint (monitoring's fanout follows it); wins over `AWS_ENDPOINT_URL`")
    aws_endpoint_url_dynamodb: str | None = Field(None, validation_alias="AWS_ENDPOINT_URL_DYNAMODB",
        description="DynamoDB's own endpoint (e.g. another emulator than LocalStack); wins over `AWS_ENDPOINT_URL`")

    # Broker.
    celery_broker_url: str | None = Field(None, validation_alias="CELERY_BROKER_URL",
        description="the broker, e.g. `sqs://` (credentials from the usual AWS chain); unset: SQS in `AWS_REGION`, "
                    "at the SQS endpoint if one is set")
    broker_use_tls: bool | None = Field(None, validation_alias="BROKER_USE_TLS",
        description="force HTTPS (`true`) or plain HTTP (`false`) to the broker; unset: from the SQS endpoint's "
                    "scheme")
    broker_queue_prefix: str = Field(
        "video-worker-", pattern=r"^[A-Za-z0-9_-]{0,40}$", validation_alias="BROKER_QUEUE_PREFIX",
        description="prefix of the broker's SQS queue and SNS topic names")
    task_queue: str = Field("tasks", pattern=r"^[A-Za-z0-9_-]{1,40}$", validation_alias="VIDEO_WORKER_TASK_QUEUE",
        description="the broker queue of the chain's tasks (SQS name: prefix + this)")
    broker_wait_time_seconds: int = Field(10, ge=0, le=20, validation_alias="BROKER_WAIT_TIME_SECONDS",
        description="the worker's SQS long-poll wait (0-20)")
    broker_polling_interval: float = Field(0.0, ge=0, le=60, validation_alias="BROKER_POLLING_INTERVAL",
        description="extra sleep after an empty poll (adds to the wait)")
    broker_visibility_timeout: int = Field(120, ge=10, le=43200, validation_alias="BROKER_VISIBILITY_TIMEOUT",
        description="seconds a held task message stays invisible; the worker extends it while the task runs or "
                    "waits, so this is how soon a dead worker's task is redelivered. Set it alike everywhere: the "
                    "process that first creates a broker queue sets its default")
    video_worker_dlq_url: str | None = Field(None, validation_alias="VIDEO_WORKER_DLQ_URL",
        description="where chains that failed for good are written; unset: the queue "
                    "`{BROKER_QUEUE_PREFIX}dead-letters`")
    monitoring: bool = Field(True, validation_alias="MONITORING",
        description="events and remote control over SNS, for Flower and `celery inspect` (video_worker/monitoring/); "
                    "`off`: plain SQS, no SNS topic")

    # Worker.
    scratch_dir: Path = Field(Path(tempfile.gettempdir()) / "video-worker", validation_alias="VIDEO_WORKER_SCRATCH_DIR",
        description="where segments live between tasks on this host")
    scratch_max_age_seconds: int = Field(3 * 3600, ge=60, validation_alias="SCRATCH_MAX_AGE_SECONDS",
        description="scratch files older than this are orphans (a chain that moved host or failed): removed at "
                    "start, then every 15 minutes")
    # The converter by default: a worker deployed for 2D->3D that silently copied 2D bytes to the 3D output keys
    # would be the worst surprise. A bare install (no stereo extra) stops at start-up with one line naming the
    # extra; MODEL=passthrough (copy the segment unchanged) is there to test the plumbing without it.
    model: str = Field("stereo", min_length=1, validation_alias="MODEL",
        description="the inference model: `stereo` (the 2D-to-3D converter; a worker without the stereo extra stops "
                    "at start-up saying so), `passthrough` (copies each segment unchanged: for testing the "
                    "plumbing), `simulated`, an entry-point name, or `package.module:factory`")
    simulated_infer_seconds: float = Field(1.0, ge=0, le=3600, validation_alias="SIMULATED_INFER_SECONDS",
        description="busy seconds per segment of `MODEL=simulated` (a stand-in for a GPU model in benchmarks)")
    worker_pool: Literal["threads", "prefork", "solo"] = Field("threads", validation_alias="WORKER_POOL",
        description="Celery pool: one process per host with a few task slots, one segment on the accelerator while "
                    "the others download or upload (BENCHMARKS.md); `-P threads`/`-P solo` override it, but "
                    "`-P prefork` does not (Celery cannot tell it from its own default): use `WORKER_POOL=prefork`")
    configured_worker_concurrency: int | None = Field(None, ge=1, le=64, validation_alias="WORKER_CONCURRENCY",
        description="task slots: segments in progress per worker (Celery's `-c` overrides); unset: "
                    "`INFER_CONCURRENCY` + 2 and at least 3, so two segments download or upload while the model "
                    "is busy")
    configured_infer_concurrency: int | None = Field(None, ge=1, le=64, validation_alias="INFER_CONCURRENCY",
        description="inferences at a time per worker process; unset: the model's default: 1 (one model, one "
                    "accelerator); `MODEL=stereo`: one per core, or with its depth network on an accelerator "
                    "(`STEREO_DEVICE`) ceil(2/3 x cores) + 1, enough to keep the cores encoding while the device "
                    "serves them all (measured: docs/stereo.md)")
    configured_infer_per_process: int | None = Field(None, ge=1, le=64, validation_alias="INFER_PER_PROCESS",
        description="inferences at a time in one model process, in threads sharing its one loaded model (one "
                    "network in GPU memory); the worker starts ceil(INFER_CONCURRENCY / INFER_PER_PROCESS) "
                    "processes; unset: all in one process for `MODEL=stereo` with `STEREO_DEVICE` not `cpu`, else 1")
    stereo_device: str | None = Field(None, validation_alias="STEREO_DEVICE",
        description="read here only for the `INFER_PER_PROCESS` default (not `cpu`: an accelerator whose network "
                    "all inferences share in one process); the converter's own setting of the same name is where "
                    "its network runs")
    stall_seconds: float = Field(120.0, ge=0, le=43200, validation_alias="STEREO_STALL_SECONDS",
        description="a model that reports progress (`MODEL=stereo`) and makes none for this long is killed "
                    "(`ModelStalled`: retried, dead-lettered after `MAX_DELIVERIES`); 0: off. The stage time limit "
                    "stays the outer bound")
    chain_affinity: bool = Field(True, validation_alias="CHAIN_AFFINITY",
        description="run a chain's next stages on the host that ran the previous one (`off`: hop by hop through the "
                    "broker)")
    worker_prefetch_multiplier: int = Field(1, ge=1, le=16, validation_alias="WORKER_PREFETCH_MULTIPLIER",
        description="messages reserved per slot")
    transfer_chunk_mib: int = Field(8, ge=5, le=512, validation_alias="TRANSFER_CHUNK_MIB",
        description="multipart threshold and part size of S3 transfers, MiB")
    transfer_threads: int = Field(4, ge=1, le=32, validation_alias="TRANSFER_THREADS",
        description="parallel parts per transfer")
    max_retries: int = Field(5, ge=0, le=100, validation_alias="TASK_MAX_RETRIES",
        description="retries of a task after a transient error")
    retry_base_seconds: float = Field(2.0, ge=0, le=900, validation_alias="TASK_RETRY_BASE_SECONDS",
        description="first retry delay; doubles per retry, with jitter")
    retry_max_delay_seconds: int = Field(300, ge=0, le=900, validation_alias="TASK_RETRY_MAX_DELAY_SECONDS",
        description="cap of one retry delay (at most 900, SQS's `DelaySeconds` limit)")
    retry_overrides: dict[str, RetryRule] = Field(default_factory=dict, validation_alias="TASK_RETRY_OVERRIDES",
        description='per task, JSON: `{"video_worker.infer": {"max_retries": 2, "base_seconds": 30, '
                    '"max_delay_seconds": 900}}`')
    max_segment_bytes: int = Field(2 * 1024**3, ge=1, validation_alias="MAX_SEGMENT_BYTES",
        description="larger source objects are dead-lettered before any byte is downloaded")
    context_wait_seconds: float = Field(60.0, ge=0, le=900, validation_alias="CONTEXT_WAIT_SECONDS",
        description="how long a segment whose model reads the previous one (`MODEL=stereo`) waits for it to be "
                    "uploaded before converting without it (the completion row then says `seam_context=missing`)")
    max_deliveries: int = Field(3, ge=1, le=100, validation_alias="MAX_DELIVERIES",
        description="a message received more often (its workers died holding it), or a segment whose model process "
                    "died this many times, is dead-lettered (video_worker/failure_policy.py)")
    publish_patience_seconds: float = Field(60.0, ge=0, le=600, validation_alias="PUBLISH_PATIENCE_SECONDS",
        description="how long a refused publish (retry, hand-off, dead letter, replay) is tried again before its "
                    "message goes back to the queue (the bridge: at most 10)")
    stage_time_limit_overrides: dict[str, float] = Field(default_factory=dict, validation_alias="STAGE_TIME_LIMITS",
        description='seconds per stage, JSON: `{"video_worker.infer": 7200}`; defaults download 900, infer 3600, '
                    "upload 900, record 120 (`Stage.time_limit` in video_worker/stages.py)")
    model_isolation: Literal["process", "inline"] = Field("process", validation_alias="MODEL_ISOLATION",
        description="`process`: the model in `INFER_CONCURRENCY` child processes (a crash or hang is contained and "
                    "killed there, not the worker); `inline`: in the worker's threads")
    model_start_timeout_seconds: float = Field(600.0, gt=0, validation_alias="MODEL_START_TIMEOUT_SECONDS",
        description="how long a model process may take to build and warm up its model")

    log_format: LogFormat = Field("text", validation_alias="LOG_FORMAT",
        description="`text`: human-readable; `json`: every log line of the worker and the bridge is one JSON object "
                    "(`time`, `level`, `logger`, `message`, and `job_id`, `segment_index`, `task_id`, `stage` "
                    "whenever known; video_worker/logs.py)")

    # Bridge.
    bridge_wait_time_seconds: int = Field(20, ge=0, le=20, validation_alias="BRIDGE_WAIT_TIME_SECONDS",
        description="the bridge's long-poll wait")
    bridge_batch_size: int = Field(10, ge=1, le=10, validation_alias="BRIDGE_BATCH_SIZE",
        description="messages per receive (1-10)")

    # Prometheus metrics over HTTP (video_worker/worker/metrics/, video_worker/ops/bridge_metrics.py).
    metrics_port: int | None = Field(None, ge=1, le=65535, validation_alias="METRICS_PORT",
        description="the worker serves Prometheus metrics on this port (1-65535), `/metrics`; unset: off")
    bridge_metrics_port: int | None = Field(None, ge=1, le=65535, validation_alias="BRIDGE_METRICS_PORT",
        description="the bridge serves its Prometheus metrics on this port (1-65535); unset: off")

    @field_validator("metrics_port", "bridge_metrics_port", mode="before")
    @classmethod
    def _empty_port_is_unset(cls, value: object) -> object:
        return None if isinstance(value, str) and not value.strip() else value

    @field_validator("aws_endpoint_url", "aws_endpoint_url_s3", "aws_endpoint_url_sqs", "aws_endpoint_url_sns",
                     "aws_endpoint_url_dynamodb", "celery_broker_url", "video_worker_queue_url",
                     "video_worker_dlq_url")
    @classmethod
    def _empty_is_unset(cls, value: str | None) -> str | None:
        return value or None

    @field_validator("aws_endpoint_url", "aws_endpoint_url_s3", "aws_endpoint_url_sqs", "aws_endpoint_url_sns",
                     "aws_endpoint_url_dynamodb")
    @classmethod
    def _endpoint_is_url(cls, value: str | None) -> str | None:
        if value is not None:
            parts = urlsplit(value)
            if parts.scheme not in ("http", "https") or not parts.hostname:
                raise ValueError("must be an http(s):// URL")
        return value

    @field_validator("celery_broker_url")
    @classmethod
    def _broker_is_sqs(cls, value: str | None) -> str | None:
        if value is not None and urlsplit(value).scheme not in ("sqs", "memory"):
            raise ValueError("must be an sqs:// URL")
        return value

    @field_validator("model")
    @classmethod
    def _model_is_known(cls, value: str) -> str:
        known = available_models()
        if is_import_path(value):
            if importlib.util.find_spec(value.partition(":")[0].split(".")[0]) is None:
                raise ValueError(f"model module of {value!r} is not importable")
        elif value not in known:
            raise ValueError(
                f"unknown model {value!r}; available: {', '.join(sorted(known))} (or package.module:factory)"
            )
        return value

    @field_validator("retry_overrides")
    @classmethod
    def _overrides_name_tasks(cls, value: dict[str, RetryRule]) -> dict[str, RetryRule]:
        unknown = sorted(name for name in value if not name.startswith("video_worker."))
        if unknown:
            raise ValueError(f"keys must be task names like 'video_worker.infer', not {unknown}")
        return value

    @field_validator("stage_time_limit_overrides")
    @classmethod
    def _limits_name_stages(cls, value: dict[str, float]) -> dict[str, float]:
        unknown = sorted(name for name in value if name not in STAGE_NAMES)
        if unknown:
            raise ValueError(f"keys must be stage names ({', '.join(STAGE_NAMES)}), not {unknown}")
        bad = sorted(name for name, seconds in value.items() if not 0 < seconds <= 43200)
        if bad:
            raise ValueError(f"limits must be between 0 and 43200 seconds (SQS's 12 h cap): {bad}")
        return value

    @property
    def infer_concurrency(self) -> int:
        """``INFER_CONCURRENCY``, else the model's default (``inference.default_infer_concurrency``): 1, one per
        core for ``MODEL=stereo`` (measured 1.57x the segments/s of one on two cores, BENCHMARKS.md), or
        ceil(2/3 x cores) + 1 with its depth network on an accelerator."""
        if self.configured_infer_concurrency is not None:
            return self.configured_infer_concurrency
        return default_infer_concurrency(self.model, device=self.stereo_device)

    @property
    def worker_concurrency(self) -> int:
        """``WORKER_CONCURRENCY``, else ``infer_concurrency`` + 2 and at least 3: every model slot busy while two
        more segments download or upload (the accelerator-bound benchmark's 3 for one model slot)."""
        if self.configured_worker_concurrency is not None:
            return self.configured_worker_concurrency
        return max(3, self.infer_concurrency + 2)

    @property
    def infer_per_process(self) -> int:
        """``INFER_PER_PROCESS``, else 1, or all of ``infer_concurrency`` for a depth network on an accelerator
        (``inference.default_infer_per_process``); never more than ``infer_concurrency``."""
        per_process = self.configured_infer_per_process or default_infer_per_process(
            self.model, self.infer_concurrency, self.stereo_device)
        return min(per_process, self.infer_concurrency)

    @property
    def model_processes(self) -> int:
        """Model processes a worker process starts (``MODEL_ISOLATION=process``)."""
        return -(-self.infer_concurrency // self.infer_per_process)

    @property
    def stage_time_limits(self) -> dict[str, float]:
        return stage_limits(self.stage_time_limit_overrides)

    @property
    def aws(self) -> AwsConfig:
        endpoints = {name: url for name in AWS_SERVICES if (url := getattr(self, f"aws_endpoint_url_{name}"))}
        return AwsConfig(self.aws_region, self.aws_endpoint_url, endpoints, max(10, self.transfer_threads * 2))

    @property
    def retry_policy(self) -> RetryPolicy:
        default = RetryRule(
            max_retries=self.max_retries,
            base_seconds=self.retry_base_seconds,
            max_delay_seconds=self.retry_max_delay_seconds,
        )
        return RetryPolicy(default=default, overrides=dict(self.retry_overrides))

    def require_queue_url(self) -> str:
        if not self.video_worker_queue_url:
            raise ConfigError("VIDEO_WORKER_QUEUE_URL is not set (the bridge needs it)")
        return self.video_worker_queue_url

    @property
    def broker_url(self) -> str:
        """``CELERY_BROKER_URL``, or an SQS broker at the SQS endpoint (``AWS_ENDPOINT_URL_SQS``,
        ``AWS_ENDPOINT_URL``), or in the region."""
        if self.celery_broker_url:
            return self.celery_broker_url
        endpoint = self.aws.endpoint("sqs")
        if endpoint:
            parts = urlsplit(endpoint)
            port = f":{parts.port}" if parts.port else ""
            return f"sqs://{parts.hostname}{port}"
        return "sqs://"

    @property
    def broker_is_secure(self) -> bool:
        """HTTPS to the broker unless ``BROKER_USE_TLS=false`` or the SQS endpoint is plain http."""
        if self.broker_use_tls is not None:
            return self.broker_use_tls
        endpoint = self.aws.endpoint("sqs")
        return not endpoint or urlsplit(endpoint).scheme == "https"


_USERINFO = re.compile(r"(://)[^@/\s]*@")


def mask_credentials(text: str) -> str:
    """Hide the ``user:password@`` part of any URL in ``text``."""
    return _USERINFO.sub(r"\1***@", text)


def _field_env_name(settings_cls: type[BaseSettings], field: str) -> str:
    info = settings_cls.model_fields.get(field)
    alias = info.validation_alias if info else None
    if isinstance(alias, str):
        return alias
    if isinstance(alias, AliasChoices) and alias.choices:
        first = alias.choices[0]
        return first if isinstance(first, str) else field.upper()
    return field.upper()


def describe_validation_error(exc: ValidationError, settings_cls: type[BaseSettings]) -> str:
    """One line naming every bad setting by its environment variable."""
    problems = []
    for err in exc.errors():
        field = str(err["loc"][0]) if err["loc"] else "?"
        name = _field_env_name(settings_cls, field)
        message = "is required but not set" if err["type"] == "missing" else err["msg"]
        message = message.removeprefix("Value error, ")
        if err["type"] != "missing" and "input" in err:
            message = f"{message} (got {mask_credentials(str(err['input']))[:60]!r})"
        problems.append(f"{name} {message}")
    return "invalid configuration: " + "; ".join(problems)


def load_settings(**overrides: Any) -> Settings:
    """Build ``Settings`` from the environment; raise ``ConfigError`` with one line."""
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        raise ConfigError(describe_validation_error(exc, Settings)) from None
