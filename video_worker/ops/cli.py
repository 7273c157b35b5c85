"""``video-worker``: the bridge, the embedded dev environment, submit, schemas."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from video_worker import logs
from video_worker.errors import ConfigError, VideoWorkerError
from video_worker.segments import MODES

log = logging.getLogger("video_worker")


def _configure_logging(level: str) -> None:
    logging.basicConfig(
        level=level.upper(),
        format="[%(asctime)s: %(levelname)s/%(processName)s] %(name)s: %(message)s",
    )
    logging.getLogger("botocore").setLevel(logging.WARNING)
    logging.getLogger("werkzeug").setLevel(logging.WARNING)


def cmd_bridge(args: argparse.Namespace) -> int:
    from video_worker.adapters.aws import make_client
    from video_worker.adapters.sqs import SqsQueue
    from video_worker.bridge import BRIDGE_PUBLISH_PATIENCE_SECONDS, Bridge
    from video_worker.celery_app import create_app
    from video_worker.settings import load_settings
    from video_worker.worker.chain import chain_publisher

    settings = load_settings()
    logs.use_format(settings.log_format)
    observe = None
    if settings.bridge_metrics_port is not None:
        from video_worker.ops.bridge_metrics import BridgeMetrics

        metrics = BridgeMetrics()
        metrics.serve(settings.bridge_metrics_port)
        log.info("bridge metrics on :%d/metrics", settings.bridge_metrics_port)
        observe = metrics.observe
    bridge = Bridge(
        SqsQueue(make_client("sqs", settings.aws), settings.require_queue_url()),
        settings.input_bucket_name,
        chain_publisher(create_app(settings)),
        wait_time_seconds=settings.bridge_wait_time_seconds,
        batch_size=settings.bridge_batch_size,
        publish_patience=min(BRIDGE_PUBLISH_PATIENCE_SECONDS, settings.publish_patience_seconds),
        observe=observe,
    )
    bridge.install_signal_handlers()
    bridge.run()
    return 0


def cmd_submit(args: argparse.Namespace) -> int:
    from video_worker.adapters.aws import make_client
    from video_worker.ops.submit import submit_segment
    from video_worker.settings import load_settings

    settings = load_settings()
    uri = submit_segment(
        make_client("s3", settings.aws),
        settings.input_bucket_name,
        Path(args.file),
        job_id=args.job_id,
        index=args.index,
        total=args.total,
        mode=args.mode,
    )
    print(uri)
    return 0


def cmd_dev(args: argparse.Namespace) -> int:
    from video_worker.ops.dev import run_dev

    return run_dev(demo=args.demo, port=args.port, timeout=args.timeout, flower=args.flower,
                   flower_port=args.flower_port)


def cmd_provision(args: argparse.Namespace) -> int:
    from video_worker.adapters.aws import make_client
    from video_worker.ops.provision import provision
    from video_worker.settings import load_settings

    settings = load_settings()
    res = provision(
        *(make_client(name, settings.aws) for name in ("s3", "dynamodb", "sqs")),
        prefix=args.prefix,
        input_bucket=settings.input_bucket_name,
        output_bucket=settings.output_bucket_name,
        table=settings.segment_completions_table_name,
    )
    for name, value in res.env().items():
        print(f"{name}={value}")
    return 0


def cmd_dlq(args: argparse.Namespace) -> int:
    from video_worker.celery_app import create_app
    from video_worker.ops.replay import list_dead_letters, replay_dead_letters
    from video_worker.settings import load_settings
    from video_worker.worker.chain import build_chain

    app = create_app(load_settings())
    if args.dlq_command == "list":
        return list_dead_letters(app.context.dead_letters, as_json=args.json)
    if not args.all and not args.ids:
        print("video-worker dlq replay: give dead-letter IDs or --all", file=sys.stderr)
        return 2
    return replay_dead_letters(app.context.dead_letters, lambda segment: build_chain(segment, app).apply_async(),
                               app.settings.publish_patience_seconds, None if args.all else set(args.ids))


def cmd_status(args: argparse.Namespace) -> int:
    from video_worker.adapters.aws import make_client
    from video_worker.adapters.dynamodb import DynamoCompletionStore
    from video_worker.adapters.sqs import dead_letter_store
    from video_worker.ops.status import show_status
    from video_worker.settings import load_settings

    settings = load_settings()
    completions = DynamoCompletionStore(make_client("dynamodb", settings.aws), settings.segment_completions_table_name)
    return show_status(completions, dead_letter_store(settings), args.job_id, as_json=args.json,
                       watching=args.watch, interval=args.interval, idle_timeout=args.idle_timeout)


def _positive_seconds(value: str) -> float:
    seconds = float(value)
    if not seconds > 0:
        raise argparse.ArgumentTypeError(f"{value} is not a positive number of seconds")
    return seconds


def cmd_convert(args: argparse.Namespace) -> int:
    from video_worker.ops.convert import convert

    return convert(Path(args.input), Path(args.output), args.mode, Path(args.preview) if args.preview else None)


def cmd_schemas(args: argparse.Namespace) -> int:
    from video_worker.ops.schemas import write_schemas

    for path in write_schemas(Path(args.out)):
        print(path)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="video-worker", description=__doc__)
    parser.add_argument("--log-level", default="INFO")
    sub = parser.add_subparsers(dest="command", required=True)

    bridge = sub.add_parser("bridge", help="move S3 events from the raw queue to Celery chains")
    bridge.set_defaults(func=cmd_bridge)

    dev = sub.add_parser("dev", help="run everything on an embedded AWS emulator")
    dev.add_argument("--demo", action="store_true", help="process one sample segment and exit")
    dev.add_argument("--port", type=int, default=0, help="emulator port (default: a free one)")
    dev.add_argument("--timeout", type=float, default=120.0, help="--demo: seconds to wait")
    dev.add_argument("--flower", action=argparse.BooleanOptionalAction, default=None,
                     help="start Flower too and print its URL (default: yes, except with --demo)")
    dev.add_argument("--flower-port", type=int, default=5555, help="Flower's port (a free one if taken)")
    dev.set_defaults(func=cmd_dev)

    submit = sub.add_parser("submit", help="upload a segment to the input bucket")
    submit.add_argument("file")
    submit.add_argument("--job-id", required=True)
    submit.add_argument("--index", type=int, required=True)
    submit.add_argument("--total", type=int, required=True)
    submit.add_argument("--mode", choices=MODES, required=True)
    submit.set_defaults(func=cmd_submit)

    conv = sub.add_parser("convert", help="convert a local 2D segment to stereo with MODEL=stereo (no AWS needed)")
    conv.add_argument("input")
    conv.add_argument("output")
    conv.add_argument("--mode", choices=MODES, required=True)
    conv.add_argument("--preview", help="also write one output frame to this PNG")
    conv.set_defaults(func=cmd_convert)

    prov = sub.add_parser(
        "provision", help="create the buckets, table, queues and S3 notification (emulators, sandboxes)"
    )
    prov.add_argument("--prefix", default="video-worker", help="prefix of the queue names")
    prov.set_defaults(func=cmd_provision)

    dlq = sub.add_parser("dlq", help="chains that failed for good: list them, replay them")
    dlq_sub = dlq.add_subparsers(dest="dlq_command", required=True)
    dlq_list = dlq_sub.add_parser("list", help="show every dead letter")
    dlq_list.add_argument("--json", action="store_true", help="one JSON document per line")
    dlq_replay = dlq_sub.add_parser("replay", help="re-run dead letters from the start of the chain")
    dlq_replay.add_argument("ids", nargs="*", metavar="ID")
    dlq_replay.add_argument("--all", action="store_true")
    dlq.set_defaults(func=cmd_dlq)

    status = sub.add_parser("status", help="a job's progress: completed, missing and dead-lettered segments")
    status.add_argument("job_id", metavar="JOB_ID")
    status.add_argument("--json", action="store_true", help="one JSON object (with --watch: one per change)")
    status.add_argument("--watch", action="store_true", help="follow the job until it is complete or idle")
    status.add_argument("--interval", type=_positive_seconds, default=2.0, help="--watch: seconds between reads")
    status.add_argument("--idle-timeout", type=_positive_seconds, default=300.0,
                        help="--watch: stop (exit 1) after this many seconds without a change")
    status.set_defaults(func=cmd_status)

    schemas = sub.add_parser("schemas", help="write the task payloads' JSON Schemas")
    schemas.add_argument("--out", default="docs/schemas")
    schemas.set_defaults(func=cmd_schemas)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    _configure_logging(args.log_level)
    try:
        return int(args.func(args))
    except ConfigError as exc:
        print(f"video-worker: {exc}", file=sys.stderr)
        return 2
    except VideoWorkerError as exc:
        print(f"video-worker: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
