from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from video_worker.celery_app import celery_conf
from video_worker.errors import ConfigError
from video_worker.inference import default_infer_concurrency
from video_worker.settings import Settings, load_settings

REQUIRED = {
    "INPUT_BUCKET_NAME": "in-bucket",
    "OUTPUT_BUCKET_NAME": "out-bucket",
    "SEGMENT_COMPLETIONS_TABLE_NAME": "completions",
}


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    for name in (*REQUIRED, "VIDEO_WORKER_QUEUE_URL", "AWS_REGION", "AWS_DEFAULT_REGION",
                 "AWS_ENDPOINT_URL", "CELERY_BROKER_URL", "MODEL"):
        monkeypatch.delenv(name, raising=False)
    for name, value in REQUIRED.items():
        monkeypatch.setenv(name, value)
    return monkeypatch


def test_seed_env_vars_are_read(env: pytest.MonkeyPatch) -> None:
    env.setenv("VIDEO_WORKER_QUEUE_URL", "https://sqs.eu-west-1.amazonaws.com/1/q")
    env.setenv("AWS_REGION", "eu-west-1")
    s = load_settings()
    assert (s.input_bucket_name, s.output_bucket_name, s.segment_completions_table_name) == (
        "in-bucket", "out-bucket", "completions")
    assert s.require_queue_url().endswith("/1/q")
    assert s.aws_region == "eu-west-1"


@pytest.mark.parametrize("missing", sorted(REQUIRED))
def test_missing_required_setting_is_named_on_one_line(env: pytest.MonkeyPatch, missing: str) -> None:
    env.delenv(missing)
    with pytest.raises(ConfigError) as info:
        load_settings()
    message = str(info.value)
    assert f"{missing} is required but not set" in message
    assert "\n" not in message


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("AWS_ENDPOINT_URL", "localhost:4566"),
        ("CELERY_BROKER_URL", "redis://localhost"),
        ("WORKER_CONCURRENCY", "zero"),
        ("BROKER_WAIT_TIME_SECONDS", "21"),
        ("BRIDGE_BATCH_SIZE", "11"),
        ("BROKER_QUEUE_PREFIX", "bad prefix!"),
        ("MODEL", "stereocrafter-not-installed"),
    ],
)
def test_malformed_setting_is_named(env: pytest.MonkeyPatch, name: str, value: str) -> None:
    env.setenv(name, value)
    with pytest.raises(ConfigError) as info:
        load_settings()
    assert str(info.value).startswith(f"invalid configuration: {name} ")
    assert "\n" not in str(info.value)


def test_unknown_model_lists_the_available_ones(env: pytest.MonkeyPatch) -> None:
    env.setenv("MODEL", "nope")
    with pytest.raises(ConfigError, match=r"unknown model 'nope'; available: .*passthrough"):
        load_settings()


def test_bridge_needs_the_queue_url(env: pytest.MonkeyPatch) -> None:
    with pytest.raises(ConfigError, match="VIDEO_WORKER_QUEUE_URL is not set"):
        load_settings().require_queue_url()


@pytest.mark.parametrize(
    ("endpoint", "broker", "secure"),
    [
        (None, "sqs://", True),
        ("http://127.0.0.1:5000", "sqs://127.0.0.1:5000", False),
        ("https://localstack.internal:4566", "sqs://localstack.internal:4566", True),
    ],
)
def test_broker_defaults_to_sqs_at_the_aws_endpoint(
    env: pytest.MonkeyPatch, endpoint: str | None, broker: str, secure: bool
) -> None:
    if endpoint:
        env.setenv("AWS_ENDPOINT_URL", endpoint)
    env.setenv("AWS_REGION", "ap-south-1")
    env.setenv("BROKER_QUEUE_PREFIX", "staging-")
    conf = celery_conf(load_settings())
    assert conf["broker_url"] == broker
    assert conf["broker_transport_options"]["is_secure"] is secure
    assert conf["broker_transport_options"]["region"] == "ap-south-1"
    assert conf["broker_transport_options"]["queue_name_prefix"] == "staging-"


def test_explicit_broker_url_wins(env: pytest.MonkeyPatch) -> None:
    env.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:5000")
    env.setenv("CELERY_BROKER_URL", "sqs://elsewhere:1234")
    assert load_settings().broker_url == "sqs://elsewhere:1234"


def test_settings_are_not_read_at_import() -> None:
    code = "import video_worker, celeryconfig; print(video_worker.app.main)"
    env = {"PATH": "/usr/bin:/bin"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "video_worker"


def test_worker_with_bad_settings_stops_with_one_line(tmp_path: Path) -> None:
    env = {"PATH": "/usr/bin:/bin", **REQUIRED, "MODEL": "nope"}
    out = subprocess.run(
        [sys.executable, "-m", "celery", "-A", "video_worker", "worker"],
        env=env, capture_output=True, text=True, timeout=60, cwd=tmp_path,
    )
    assert out.returncode != 0
    lines = [line for line in out.stderr.splitlines() if line.strip()]
    assert lines == ["video-worker: invalid configuration: MODEL unknown model 'nope'; available: passthrough, "
                     "simulated, stereo (or package.module:factory) (got 'nope')"]


def test_cli_with_missing_setting_exits_2_with_one_line(tmp_path: Path) -> None:
    out = subprocess.run(
        [sys.executable, "-m", "video_worker", "bridge"],
        env={"PATH": "/usr/bin:/bin"}, capture_output=True, text=True, timeout=60, cwd=tmp_path,
    )
    assert out.returncode == 2
    lines = [line for line in out.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("video-worker: invalid configuration: INPUT_BUCKET_NAME")


def test_constructed_settings_need_no_environment(env: pytest.MonkeyPatch) -> None:
    for name in REQUIRED:
        env.delenv(name)
    with pytest.raises(ConfigError):
        load_settings()
    s = Settings(input_bucket_name="a-b", output_bucket_name="c-d", segment_completions_table_name="e-f")
    assert s.aws.endpoint("s3") is None and s.broker_url == "sqs://"


def test_credentials_in_a_bad_url_are_masked(env: pytest.MonkeyPatch) -> None:
    env.setenv("CELERY_BROKER_URL", "redis://admin:hunter2@broker:6379/0")
    with pytest.raises(ConfigError) as info:
        load_settings()
    assert "hunter2" not in str(info.value) and "***@broker" in str(info.value)


@pytest.mark.parametrize(("endpoint", "tls", "secure"), [
    ("http://127.0.0.1:5000", None, False), ("http://127.0.0.1:5000", "true", True), (None, "false", False)])
def test_broker_tls_follows_the_endpoint_unless_set(
    env: pytest.MonkeyPatch, endpoint: str | None, tls: str | None, secure: bool
) -> None:
    env.setenv("CELERY_BROKER_URL", "sqs://key:secret@127.0.0.1:5000")
    if endpoint:
        env.setenv("AWS_ENDPOINT_URL", endpoint)
    if tls:
        env.setenv("BROKER_USE_TLS", tls)
    assert celery_conf(load_settings())["broker_transport_options"]["is_secure"] is secure


def test_infer_concurrency_defaults_to_the_models_own_and_the_setting_wins(
    env: pytest.MonkeyPatch, monkeypatch: pytest.MonkeyPatch
) -> None:
    env.delenv("INFER_CONCURRENCY", raising=False)
    monkeypatch.setattr("os.cpu_count", lambda: 6)
    assert load_settings().infer_concurrency == 6  # the default, stereo, a CPU model: one per core
    env.setenv("MODEL", "simulated")
    assert load_settings().infer_concurrency == 1  # one model, one accelerator
    env.setenv("MODEL", "stereo")
    env.setenv("INFER_CONCURRENCY", "2")
    s = load_settings()
    assert s.infer_concurrency == 2
    assert Settings.model_validate_json(s.model_dump_json()).infer_concurrency == 2  # as the model process gets it


def test_infer_per_process_is_one_on_cpu_and_everything_in_one_process_on_an_accelerator(
    env: pytest.MonkeyPatch, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("INFER_CONCURRENCY", "INFER_PER_PROCESS", "STEREO_DEVICE"):
        env.delenv(name, raising=False)
    monkeypatch.setattr("os.cpu_count", lambda: 6)
    env.setenv("MODEL", "stereo")
    s = load_settings()
    assert (s.infer_concurrency, s.infer_per_process, s.model_processes) == (6, 1, 6)  # processes scale over cores
    env.setenv("STEREO_DEVICE", "cuda:0")
    s = load_settings()
    # ceil(6 x 0.66) + 1 conversions keep 6 cores encoding (bench/pipeline.py), one network on the GPU
    assert (s.infer_concurrency, s.infer_per_process, s.model_processes) == (5, 5, 1)
    env.setenv("STEREO_DEVICE", "cpu")
    assert load_settings().infer_per_process == 1
    env.setenv("INFER_PER_PROCESS", "4")
    s = load_settings()
    assert (s.infer_per_process, s.model_processes) == (4, 2)  # ceil(6 / 4)
    env.setenv("INFER_PER_PROCESS", "16")
    assert load_settings().infer_per_process == 6  # never more than INFER_CONCURRENCY
    env.delenv("INFER_PER_PROCESS")
    env.setenv("MODEL", "tests.support.models:progressing")
    env.setenv("INFER_CONCURRENCY", "3")
    env.setenv("STEREO_DEVICE", "cuda")
    assert load_settings().infer_per_process == 1  # a plug-in is not known to be thread-safe: one per process


@pytest.mark.parametrize(("cores", "device", "conversions"), [
    (1, "cuda", 2), (2, "cuda", 3), (16, "cuda", 12), (64, "cuda:1", 44), (16, "cpu", 16), (16, None, 16),
])
def test_conversions_on_an_accelerator_default_to_what_keeps_the_cores_busy(cores: int, device: str | None,
                                                                          conversions: int) -> None:
    """ceil(cores x the slowest stage's share of a frame's CPU cost) + 1 with a device; one per core without."""
    assert default_infer_concurrency("stereo", cores, device) == conversions
    assert default_infer_concurrency("passthrough", cores, device) == 1


def test_task_slots_default_to_two_more_than_the_model_slots_and_at_least_three(
    env: pytest.MonkeyPatch, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("INFER_CONCURRENCY", "WORKER_CONCURRENCY", "STEREO_DEVICE"):
        env.delenv(name, raising=False)
    monkeypatch.setattr("os.cpu_count", lambda: 16)
    env.setenv("MODEL", "simulated")
    assert load_settings().worker_concurrency == 3  # one accelerator, two segments in transfer
    env.setenv("MODEL", "stereo")
    assert load_settings().worker_concurrency == 18  # 16 conversions on 16 cores, + 2
    env.setenv("STEREO_DEVICE", "cuda")
    assert load_settings().worker_concurrency == 14  # 12 conversions feed the GPU, + 2
    assert celery_conf(load_settings())["worker_concurrency"] == 14
    env.setenv("WORKER_CONCURRENCY", "5")
    assert load_settings().worker_concurrency == 5


def test_the_stall_limit_defaults_to_two_minutes_and_zero_turns_it_off(env: pytest.MonkeyPatch) -> None:
    env.delenv("STEREO_STALL_SECONDS", raising=False)
    assert load_settings().stall_seconds == 120
    env.setenv("STEREO_STALL_SECONDS", "0")
    assert load_settings().stall_seconds == 0
    env.setenv("STEREO_STALL_SECONDS", "-1")
    with pytest.raises(ConfigError, match="STEREO_STALL_SECONDS"):
        load_settings()
