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
    input_bucket_name: str = Field(min_length=3, validation_alias="INPUT_BUCKET_NAME")
    output_bucket_name: str = Field(min_length=3, validation_alias="OUTPUT_BUCKET_NAME")
    segment_completions_table_name: str = Field(
        min_length=3, validation_alias="SEGMENT_COMPLETIONS_TABLE_NAME"
    )
    video_worker_queue_url: str | None = Field(None, validation_alias="VIDEO_WORKER_QUEUE_URL")
    aws_region: str = Field(
        "us-east-1", validation_alias=AliasChoices("AWS_REGION", "AWS_DEFAULT_REGION")
    )
    aws_endpoint_url: str | None = Field(None, validation_alias="AWS_ENDPOINT_URL")
    # Service-specific endpoints win over AWS_ENDPOINT_URL, as in boto3 (e.g. LocalStack for S3/SQS/SNS,
    # another emulator for DynamoDB).
    aws_endpoint_url_s3: str | None = Field(None, validation_alias="AWS_ENDPOINT_URL_S3")
    aws_endpoint_url_sqs: str | None = Field(None, validation_alias="AWS_ENDPOINT_URL_SQS")
    aws_endpoint_url_sns: str | None = Field(None, validation_alias="AWS_ENDPOINT_URL_SNS")
    aws_endpoint_url_dynamodb: str | None = Field(None, validation_alias="AWS_ENDPOINT_URL_DYNAMODB")

    # Broker.
    celery_broker_url: str | None = Field(None, validation_alias="CELERY_BROKER_URL")
    broker_use_tls: bool | None = Field(None, validation_alias="BROKER_USE_TLS")
    broker_queue_prefix: str = Field(
        "video-worker-", pattern=r"^[A-Za-z0-9_-]{0,40}$", validation_alias="BROKER_QUEUE_PREFIX"
    )
    task_queue: str = Field(
        "tasks", pattern=r"^[A-Za-z0-9_-]{1,40}$", validation_alias="VIDEO_WORKER_TASK_QUEUE"
    )
    broker_wait_time_seconds: int = Field(
        10, ge=0, le=20, validation_alias="BROKER_WAIT_TIME_SECONDS"
    )
    broker_polling_interval: float = Field(
        0.0, ge=0, le=60, validation_alias="BROKER_POLLING_INTERVAL"
    )
    broker_visibility_timeout: int = Field(
        120, ge=10, le=43200, validation_alias="BROKER_VISIBILITY_TIMEOUT"
    )
    video_worker_dlq_url: str | None = Field(None, validation_alias="VIDEO_WORKER_DLQ_URL")
    # Flower and `celery inspect`: events and remote control over SNS (video_worker/monitoring).
    monitoring: bool = Field(True, validation_alias="MONITORING")

    # Worker.
    scratch_dir: Path = Field(
        Path(tempfile.gettempdir()) / "video-worker", validation_alias="VIDEO_WORKER_SCRATCH_DIR"
    )
    # Scratch files older than this are orphans (a chain that moved host or failed): swept every 15 minutes.
    scratch_max_age_seconds: int = Field(
        3 * 3600, ge=60, validation_alias="SCRATCH_MAX_AGE_SECONDS"
    )
    model: str = Field("passthrough", min_length=1, validation_alias="MODEL")
    # MODEL=simulated: busy seconds per segment (a stand-in for a GPU model in benchmarks).
    simulated_infer_seconds: float = Field(1.0, ge=0, le=3600, validation_alias="SIMULATED_INFER_SECONDS")
    # One process per host, a few task slots: one segment on the accelerator while the
    # others download or upload (BENCHMARKS.md). Celery's -P / -c override these.
    worker_pool: Literal["threads", "prefork", "solo"] = Field("threads", validation_alias="WORKER_POOL")
    worker_concurrency: int = Field(3, ge=1, le=64, validation_alias="WORKER_CONCURRENCY")
    # Inferences at a time per worker process; unset: the model's default (``infer_concurrency``).
    configured_infer_concurrency: int | None = Field(None, ge=1, le=64, validation_alias="INFER_CONCURRENCY")
    # Inferences at a time in one model process, in threads sharing its one loaded model; unset: the model's
    # default (``infer_per_process``). The worker starts ceil(INFER_CONCURRENCY / INFER_PER_PROCESS) processes.
    configured_infer_per_process: int | None = Field(None, ge=1, le=64, validation_alias="INFER_PER_PROCESS")
    # Where MODEL=stereo runs its depth network (read here only for the INFER_PER_PROCESS default: not "cpu" means
    # an accelerator, whose network all inferences share in one process). The converter reads its own.
    stereo_device: str | None = Field(None, validation_alias="STEREO_DEVICE")
    # A model that reports progress (``reports_progress``) and makes none for this long is killed (ModelStalled,
    # retried, bounded by MAX_DELIVERIES); 0: off. The stage time limit stays the outer bound.
    stall_seconds: float = Field(120.0, ge=0, le=43200, validation_alias="STEREO_STALL_SECONDS")
    # The rest of a segment's chain runs on the host that ran its previous stage.
    chain_affinity: bool = Field(True, validation_alias="CHAIN_AFFINITY")
    worker_prefetch_multiplier: int = Field(
        1, ge=1, le=16, validation_alias="WORKER_PREFETCH_MULTIPLIER"
    )
    transfer_chunk_mib: int = Field(8, ge=5, le=512, validation_alias="TRANSFER_CHUNK_MIB")
    transfer_threads: int = Field(4, ge=1, le=32, validation_alias="TRANSFER_THREADS")
    max_retries: int = Field(5, ge=0, le=100, validation_alias="TASK_MAX_RETRIES")
    retry_base_seconds: float = Field(2.0, ge=0, le=900, validation_alias="TASK_RETRY_BASE_SECONDS")
    retry_max_delay_seconds: int = Field(
        300, ge=0, le=900, validation_alias="TASK_RETRY_MAX_DELAY_SECONDS"
    )
    retry_overrides: dict[str, RetryRule] = Field(
        default_factory=dict, validation_alias="TASK_RETRY_OVERRIDES"
    )
    max_segment_bytes: int = Field(2 * 1024**3, ge=1, validation_alias="MAX_SEGMENT_BYTES")
    # A model that reads the previous segment (MODEL=stereo) waits this long for it to be uploaded, then converts
    # without it (the completion row says seam_context=missing).
    context_wait_seconds: float = Field(60.0, ge=0, le=900, validation_alias="CONTEXT_WAIT_SECONDS")
    # Failures (video_worker/failure_policy.py): a message whose worker (or model process) died this many
    # times is dead-lettered; a publish that fails is tried again for this long before its message goes back.
    max_deliveries: int = Field(3, ge=1, le=100, validation_alias="MAX_DELIVERIES")
    publish_patience_seconds: float = Field(60.0, ge=0, le=600, validation_alias="PUBLISH_PATIENCE_SECONDS")
    # Seconds per stage, JSON: {"video_worker.infer": 7200} (defaults: ``Stage.time_limit`` in video_worker/stages.py).
    stage_time_limit_overrides: dict[str, float] = Field(
        default_factory=dict, validation_alias="STAGE_TIME_LIMITS"
    )
    # The model runs in child processes (a crash or a hang is killed there, not the worker), or in the worker.
    model_isolation: Literal["process", "inline"] = Field("process", validation_alias="MODEL_ISOLATION")
    model_start_timeout_seconds: float = Field(600.0, gt=0, validation_alias="MODEL_START_TIMEOUT_SECONDS")

    # Log lines: human-readable text, or one JSON object each with the segment's identity (video_worker/logs.py).
    log_format: LogFormat = Field("text", validation_alias="LOG_FORMAT")

    # Bridge.
    bridge_wait_time_seconds: int = Field(
        20, ge=0, le=20, validation_alias="BRIDGE_WAIT_TIME_SECONDS"
    )
    bridge_batch_size: int = Field(10, ge=1, le=10, validation_alias="BRIDGE_BATCH_SIZE")

    # Prometheus metrics over HTTP (video_worker/worker/metrics/, video_worker/ops/bridge_metrics.py); unset: off.
    metrics_port: int | None = Field(None, ge=1, le=65535, validation_alias="METRICS_PORT")
    bridge_metrics_port: int | None = Field(None, ge=1, le=65535, validation_alias="BRIDGE_METRICS_PORT")

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
        """``INFER_CONCURRENCY``, else 1 (one model, one accelerator), or one per core for a CPU model
        (``MODEL=stereo``: measured 1.57x the segments/s of one on two cores, BENCHMARKS.md)."""
        if self.configured_infer_concurrency is not None:
            return self.configured_infer_concurrency
        return default_infer_concurrency(self.model)

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
