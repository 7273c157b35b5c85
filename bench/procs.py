"""Processes of a benchmark run: the emulator, the project's commands, the reference; /proc sampling.

Every child gets its own session (process group) so it can be stopped with
everything it started, and only that.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

PAGE = os.sysconf("SC_PAGE_SIZE")
TICKS = os.sysconf("SC_CLK_TCK")

#: Fake credentials; the access key id names the caller in the proxy's log.
SECRET = {"AWS_SECRET_ACCESS_KEY": "bench", "AWS_SESSION_TOKEN": "bench"}
#: Only these are taken from the benchmark's own environment (no stray settings leak into a child).
INHERITED = ("PATH", "HOME", "LANG", "LC_ALL", "TMPDIR", "VIRTUAL_ENV")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def child_env(caller: str, values: dict[str, str]) -> dict[str, str]:
    """A clean environment: basics, fake credentials whose key id is ``caller``, then ``values``."""
    env = {k: os.environ[k] for k in INHERITED if k in os.environ}
    env.update(SECRET, AWS_ACCESS_KEY_ID=caller, PYTHONUNBUFFERED="1")
    env.update(values)
    return env


@dataclass
class Child:
    name: str
    popen: subprocess.Popen[bytes]
    log_path: Path

    @property
    def pid(self) -> int:
        return self.popen.pid

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def alive(self) -> bool:
        return self.popen.poll() is None

    def wait_for_log(self, text: str, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while text not in self.log():
            if not self.alive():
                raise RuntimeError(f"{self.name} exited ({self.popen.returncode}):\n{self.log()[-3000:]}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"{self.name}: no {text!r} after {timeout:.0f}s:\n{self.log()[-3000:]}")
            time.sleep(0.05)

    def stop(self, timeout: float = 30.0) -> None:
        """SIGTERM (a warm shutdown for Celery), then SIGKILL of its process group."""
        if self.alive():
            self.popen.send_signal(signal.SIGTERM)
        try:
            self.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.popen.pid, signal.SIGKILL)
            self.popen.wait(30)
        with contextlib.suppress(ProcessLookupError):  # anything it left behind in its group
            os.killpg(self.popen.pid, signal.SIGKILL)


def start(name: str, argv: list[str], env: dict[str, str], logs: Path, cwd: Path | None = None) -> Child:
    logs.mkdir(parents=True, exist_ok=True)
    log_path = logs / f"{name}.log"
    with log_path.open("wb") as out:
        popen = subprocess.Popen(argv, env=env, stdout=out, stderr=subprocess.STDOUT, cwd=cwd or logs,
                                 start_new_session=True)
    return Child(name, popen, log_path)


def start_emulator(logs: Path) -> tuple[Child, str]:
    """moto's server in its own process (its CPU is then measurable and not shared with the proxy)."""
    port = free_port()
    env = child_env("emulator", {"MOTO_PORT": str(port)})
    child = start("emulator", [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)], env, logs)
    endpoint = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        try:
            with urllib.request.urlopen(f"{endpoint}/moto-api/data.json", timeout=2):
                return child, endpoint
        except OSError:
            if not child.alive() or time.monotonic() > deadline:
                raise RuntimeError(f"emulator did not start:\n{child.log()[-2000:]}") from None
            time.sleep(0.1)


# --- /proc sampling ---------------------------------------------------------------------------


def _stat(pid: int) -> tuple[int, float] | None:
    """(ppid, cpu seconds) of ``pid``."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = raw[raw.rindex(")") + 2:].split()
    return int(fields[1]), (int(fields[11]) + int(fields[12])) / TICKS


def _children(pid: int) -> list[int] | None:
    """Children of ``pid`` from /proc/PID/task/*/children (None if the kernel does not offer it)."""
    try:
        tids = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return []
    out: list[int] = []
    for tid in tids:
        try:
            out.extend(int(c) for c in Path(f"/proc/{pid}/task/{tid}/children").read_text().split())
        except FileNotFoundError:
            return None
        except OSError:
            continue
    return out


def tree(root: int) -> list[int]:
    """``root`` and all its descendants alive now."""
    out, todo = [], [root]
    while todo:
        pid = todo.pop()
        kids = _children(pid)
        if kids is None:
            return _tree_by_scan(root)
        out.append(pid)
        todo.extend(kids)
    return out


def _tree_by_scan(root: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            st = _stat(int(entry))
            if st is not None:
                children.setdefault(st[0], []).append(int(entry))
    out, todo = [], [root]
    while todo:
        pid = todo.pop()
        out.append(pid)
        todo.extend(children.get(pid, []))
    return out


def _status_kib(pid: int, name: str) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(name):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def rss_bytes(pid: int) -> int:
    return _status_kib(pid, "VmRSS:")


def hwm_bytes(pid: int) -> int:
    """The process's own peak RSS, kept by the kernel (exact, unlike sampling)."""
    return _status_kib(pid, "VmHWM:")


def pss_bytes(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def cpu_seconds(pids: list[int]) -> float:
    return sum(st[1] for st in map(_stat, pids) if st is not None)


@dataclass
class TreeMonitor:
    """Samples a process tree every ``interval`` s: peak summed RSS and PSS, and its CPU seconds."""

    root: int
    interval: float = 0.05
    peak_rss: int = 0
    peak_pss: int = 0
    peak_processes: int = 0
    samples: int = 0
    hwm: dict[int, int] = field(default_factory=dict)  # pid -> VmHWM (per-process peak RSS)
    rss: dict[int, int] = field(default_factory=dict)  # pid -> RSS at the last sample
    _cpu: dict[int, float] = field(default_factory=dict)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def start(self) -> TreeMonitor:
        self._thread = threading.Thread(target=self._run, daemon=True, name=f"monitor-{self.root}")
        self._thread.start()
        return self

    def sample(self) -> None:
        pids = tree(self.root)
        self.rss = {pid: rss_bytes(pid) for pid in pids}
        rss = sum(self.rss.values())
        pss = sum(map(pss_bytes, pids))
        self.peak_rss = max(self.peak_rss, rss)
        self.peak_pss = max(self.peak_pss, pss)
        self.peak_processes = max(self.peak_processes, len(pids))
        for pid in pids:
            st = _stat(pid)
            if st is not None:
                self._cpu[pid] = st[1]
            peak = hwm_bytes(pid)
            if peak:
                self.hwm[pid] = max(peak, self.hwm.get(pid, 0))
        self.samples += 1

    def reset(self) -> None:
        self.peak_rss = self.peak_pss = self.peak_processes = 0
        self.hwm.clear()

    def cpu(self) -> float:
        """CPU seconds of every process seen in the tree (last reading of each)."""
        return sum(self._cpu.values())

    def _run(self) -> None:
        while not self._stop.is_set():
            self.sample()
            self._stop.wait(self.interval)

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)
        self.sample()


def cmdline(pid: int) -> list[str]:
    """The command line of ``pid`` ([] once it has exited)."""
    try:
        return [a.decode(errors="replace") for a in Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0") if a]
    except OSError:
        return []


#: What a worker's model process runs (``video_worker/adapters/model_process.py``).
MODEL_PROCESS = "video_worker.adapters.model_process"


def machine_busy() -> float:
    """CPU seconds the whole machine has been busy (every core, every process: /proc/stat, not idle or iowait)."""
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    return (sum(fields[:8]) - fields[3] - fields[4]) / TICKS
