"""Flower as a child process of ``video-worker dev``."""

from __future__ import annotations

import socket
import subprocess
import sys

DEFAULT_PORT = 5555


def free_port(preferred: int = DEFAULT_PORT) -> int:
    """``preferred`` if it is free on loopback, else any free port."""
    for port in (preferred, 0):
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            return int(sock.getsockname()[1])
    raise OSError("no free port on 127.0.0.1")


def start_flower(env: dict[str, str], port: int = DEFAULT_PORT) -> tuple[subprocess.Popen[bytes], str]:
    """Start ``celery -A video_worker flower`` on loopback; return it and its URL.

    The local emulator's Flower opens its HTTP API (``FLOWER_UNAUTHENTICATED_API``),
    which Flower otherwise keeps closed without ``--basic-auth``/``--auth``.
    """
    port = free_port(port)
    argv = [sys.executable, "-m", "celery", "-A", "video_worker", "flower", f"--port={port}",
            "--address=127.0.0.1", "--logging=warning"]
    proc = subprocess.Popen(argv, env={"FLOWER_UNAUTHENTICATED_API": "true", **env})
    return proc, f"http://127.0.0.1:{port}"
