"""The report: the summary table (figures against ``bench.targets``), the details, and the generated part of
``BENCHMARKS.md`` between its markers."""

from __future__ import annotations

import datetime as dt
import os
import platform
from collections.abc import Callable, Iterator
from importlib.metadata import version
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

from bench import stereo_report
from bench.stack import mib
from bench.tables import in_out, memory_details, num, pct
from bench.targets import BY_NAME, target
from bench.workloads import SHARED_LOOPS, Latency, Outcome, Throughput

if TYPE_CHECKING:
    from bench.run import Results

BEGIN, END = "<!-- bench:begin -->", "<!-- bench:end -->"
R = TypeVar("R", bound=Outcome)
S = TypeVar("S", Throughput, Latency)  # a run of one system: the project, a variant of it, or the reference


def _ratio(a: float | None, b: float | None) -> str:
    return f"{a / b:.2f}x" if a and b else "-"


def _ok(flag: bool | None) -> str:
    return "-" if flag is None else ("yes" if flag else "**no**")


def _valid(run: R | None) -> R | None:
    """``run``, unless it is missing or failed."""
    return run if run is not None and not run.error else None


def summary_table(res: Results) -> list[str]:
    p = res.plan
    lines = ["| workload | figure | project | reference | target | met |", "|---|---|---:|---:|---|---|"]

    def row(workload: str, figure: str, project: str, reference: str = "", target: str = "",
            met: bool | None = None) -> None:
        lines.append(f"| {workload} | {figure} | {project} | {reference} | {target} | {_ok(met)} |")

    a, ar = res.find("accelerator", "project"), res.find("accelerator", "reference")
    if a or ar:
        w = f"accelerator-bound: {p.accel_segments if a is None else a.segments} x {mib(p.accel_size)}, " \
            f"infer {p.accel_infer} s, RTT {p.round_trip * 1000:.0f} ms"
        if (a and a.error) or (ar and ar.error):
            row(w, "error", a.error if a else "", ar.error if ar else "")
        else:
            speed, busy = target("accelerator speed-up"), target("accelerator busy")
            row(w, "segments/s", f"{a.rate:.2f}" if a else "-", f"{ar.rate:.2f}" if ar else "-",
                f"{speed.text()} reference", speed.met(a.rate, of=ar.rate) if a and ar else None)
            row(w, "project ÷ reference", _ratio(a.rate if a else None, ar.rate if ar else None), "", speed.text())
            row(w, "accelerator busy", pct(a.busy if a else None), pct(ar.busy if ar else None), busy.text(),
                busy.met(a.busy or 0) if a else None)
            shared = _valid(res.find("accelerator", SHARED_LOOPS))
            if shared is not None:
                row(w, "3 reference loops sharing the one accelerator (overlap, no pipelining logic): seg/s, busy",
                    "", f"{shared.rate:.2f}, {pct(shared.busy)}")
    base = {t.system: t.rate for t in res.throughput if t.label == "scaling" and t.hosts == 1 and not t.error}
    for t in res.throughput:
        if t.label != "scaling":
            continue
        w = f"scaling: {t.hosts} host(s), {t.segments} segments of {mib(t.size)}, infer {t.infer} s"
        if t.error:
            row(w, "error", t.error if t.system == "project" else "", t.error if t.system == "reference" else "")
            continue
        other = res.find("scaling", "reference" if t.system == "project" else "project", t.hosts)
        if t.system == "reference" and other is not None:
            continue  # shown on the project's rows
        ref = _valid(other if t.system == "project" else t)
        proj = t if t.system == "project" else None
        speedup = (proj.rate / base["project"]) if proj and base.get("project") else None
        ref_speed = ref.rate / base["reference"] if ref and base.get("reference") else None
        row(w, "segments/s", f"{proj.rate:.2f}" if proj else "-", f"{ref.rate:.2f}" if ref else "-")
        goal = BY_NAME.get(f"scaling speed-up, {t.hosts} hosts")
        if t.hosts > 1:
            row(w, "speed-up vs 1 host", f"{speedup:.2f}x" if speedup else "-",
                f"{ref_speed:.2f}x" if ref_speed else "-", goal.text() if goal else "",
                goal.met(speedup) if speedup and goal else None)
        busy = target("scaling busy")
        row(w, "accelerator busy (per host)", pct(proj.busy if proj else None), pct(ref.busy if ref else None),
            busy.text(), busy.met(proj.busy or 0) if proj else None)
        if proj:
            runs, once = 1 + proj.rerun_inferences / proj.segments, target("inferences per segment")
            row(w, "inferences run per segment (upload re-runs the model when it lands on another host)",
                f"{runs:.2f}", "1.00" if ref else "-", once.text(), once.met(runs))
            sent, each = proj.segments * proj.size, target("bytes per segment")
            row(w, "segment bytes in / out over the network", in_out(proj.bytes_in, proj.bytes_out, sent),
                in_out(ref.bytes_in, ref.bytes_out, ref.segments * ref.size) if ref and ref.segments else "-",
                f"{each.text()} / {each.text()}", each.met(proj.bytes_in / sent) and each.met(proj.bytes_out / sent))
    def project_runs(runs: list[S], title: Callable[[S], str]) -> Iterator[tuple[S, str]]:
        """The project's runs (a variant's setting in brackets after its title); an error row for a failed one."""
        for run in runs:
            if run.system == "reference":
                continue
            w = title(run) + ("" if run.system == "project" else f" ({run.system.split(', ')[1]})")
            if run.error:
                row(w, "error", run.error)
            else:
                yield run, w

    ref_o = _valid(res.find("overhead", "reference"))
    for t, w in project_runs([t for t in res.throughput if t.label == "overhead"],
                             lambda t: f"overhead-bound: {t.segments} x {mib(t.size)}, pass-through, no added latency"):
        requests = target("requests per segment")
        row(w, "segments/s", f"{t.rate:.2f}", f"{ref_o.rate:.2f}" if ref_o else "-")
        row(w, "AWS requests per segment (all services, incl. bridge)", f"{t.per_segment():.1f}",
            f"{ref_o.per_segment():.1f}" if ref_o else "-", requests.text(), requests.met(t.per_segment()))
    lat_ref = _valid(next((x for x in res.latency if x.system == "reference"), None))
    for lat, w in project_runs(res.latency, lambda _: f"latency: single {mib(p.latency_size)} uploads, idle, "
                                                      f"RTT {p.round_trip * 1000:.0f} ms"):
        p50, p95 = target("latency p50"), target("latency p95")
        row(w, f"p50 (n={len(lat.samples)})", f"{lat.pct(50):.3f} s", f"{lat_ref.pct(50):.3f} s" if lat_ref else "-",
            p50.text(), p50.met(lat.pct(50)))
        row(w, "p95", f"{lat.pct(95):.3f} s", f"{lat_ref.pct(95):.3f} s" if lat_ref else "-", p95.text(),
            p95.met(lat.pct(95)))
        row(w, "first segment after start (cold)", f"{lat.cold:.3f} s", f"{lat_ref.cold:.3f} s" if lat_ref else "-")
    small = _valid(next((m for m in res.memory if m.size == min(p.memory_sizes)), None))
    for m in res.memory:
        w = f"memory: one {mib(m.size)} segment"
        if m.error:
            row(w, "error", m.error)
            continue
        largest, peak, growth = m.size == max(p.memory_sizes), target("peak memory"), target("memory growth")
        row(w, "peak RSS of the worker's process tree (sum)", f"{m.peak_rss / 1e6:.0f} MB", "",
            peak.text() if largest else "", peak.met(m.peak_rss / 1e6) if largest else None)
        if largest and small and small is not m:
            diff = (m.peak_rss - small.peak_rss) / 1e6
            row(w, f"difference to the {mib(small.size)} figure", f"{diff:+.0f} MB", "", growth.text(),
                growth.met(diff))
    if res.stereo is not None:
        for cells in stereo_report.summary_rows(res.stereo, p.round_trip):
            row(*cells)
    return lines


def _per_segment(runs: list[Throughput], head: tuple[str, ...],
                 rows: list[tuple[tuple[str, ...], list[int]]]) -> list[str]:
    """A table of counts ÷ segments: the ``head`` columns, then one column per run (a blank cell for none)."""
    lines = ["| " + " | ".join(head) + " | " + " | ".join(t.system for t in runs) + " |",
             "|" + "---|" * len(head) + "---:|" * len(runs)]
    for cells, counts in rows:
        lines.append("| " + " | ".join(cells) + " | " + " | ".join(
            f"{n / t.segments:.2f}" if n else "" for n, t in zip(counts, runs, strict=True)) + " |")
    return lines


def details(res: Results) -> list[str]:
    out: list[str] = []
    tp = [t for t in res.throughput if not t.error]
    if tp:
        out += ["### Throughput runs", "",
                "| workload | system | hosts | segments | wall s | seg/s | busy | req/seg | req/s | bytes in/out | "
                "refetched inputs / re-run inferences | rows per host | tasks running (mean) | first inference at s | "
                "CPU (1.00 = one core) | check |",
                "|---|---|---:|---:|---:|---:|---:|---:|---:|---|---|---|---:|---:|---|---|"]
        for t in tp:
            out.append(
                f"| {t.label} | {t.system} | {t.hosts} | {t.segments} | {t.wall:.2f} | {t.rate:.2f} | {pct(t.busy)} | "
                f"{t.per_segment():.1f} | {t.per_segment() * t.rate:.0f} | "
                f"{in_out(t.bytes_in, t.bytes_out, t.segments * t.size)} | "
                f"{t.refetched_inputs} / {t.rerun_inferences} | "
                f"{', '.join(f'{k}: {v}' for k, v in sorted(t.rows_per_host.items()))} | "
                f"{num(t.tasks_running)} | {num(t.first_infer)} | "
                f"{', '.join(f'{k} {v:.2f}' for k, v in sorted(t.cpu.items(), key=lambda kv: -kv[1]))} | "
                f"{t.verified} |")
        out += ["", "Busy = segments x inference time ÷ wall time ÷ hosts. Wall = first receive from the raw "
                "queue → last completion row. Tasks running = the tasks' run times (worker logs) ÷ wall time, "
                "all hosts. CPU = each process's CPU time ÷ wall time, by role (`proxy + benchmark` is this "
                f"process: the proxy's threads); the machine has {os.cpu_count()} cores. "
                "Bytes in/out = S3 GetObject response bytes and PutObject/UploadPart request "
                "bytes ÷ (segments x segment size).", ""]
        out += ["### Time per stage (worker logs, mean seconds)", "",
                "hop = previous stage finished → this task's message received by a worker, or, for a stage "
                "run by chain affinity (log line `continued on this host`), → continued; wait = received → "
                "started (waiting for a slot); run = the stage's own run time (for `infer` it includes waiting "
                "for the accelerator, which is taken inside the run); moved = chains where this stage ran on "
                "another host than the previous one.", "",
                "| workload | system | hosts | stage | n | hop | wait | run | moved |",
                "|---|---|---:|---|---:|---:|---:|---:|---:|"]
        for t in tp:
            for s in t.stages:
                out.append(f"| {t.label} | {t.system} | {t.hosts} | {s.stage} | {s.count} | "
                           f"{'' if s.hop is None else f'{s.hop:.3f}'} | {'' if s.wait is None else f'{s.wait:.3f}'} | "
                           f"{s.run:.3f} | {s.other_host} |")
        out.append("")
    over = [t for t in tp if t.label == "overhead"]
    if over:
        keys = sorted({k for t in over for k in t.requests})
        out += ["### AWS requests per segment, overhead-bound workload, by caller, service and action", "",
                "Every request the bridge, the workers and the reference made from the moment the bridge "
                "(reference) started until 1 s after the last completion, ÷ segments (idle polls and "
                "heartbeats in that window included).", ""]
        out += _per_segment(over, ("caller", "service", "action"), [(k, [t.requests[k] for t in over]) for k in keys])
        out.append("| **total** | | | " + " | ".join(f"**{t.per_segment():.2f}**" for t in over) + " |")
        out += ["", "SQS requests by queue (per segment):", ""]
        out += _per_segment(over, ("caller", "action", "queue"), [
            ((q[0], q[2], q[3] or "(none)"), [t.targets[q] for t in over])
            for q in sorted({q for t in over for q in t.targets if q[1] == "sqs"})])
        out.append("")
        events = sorted({e for t in over for e in t.events})
        if events:
            out += ["SNS `Publish` requests by the Celery event types they carry (per segment; a worker "
                    "sends its task events in batches, once a second: `video_worker/monitoring/batching.py`; "
                    "a batch is listed by the distinct types in it):", ""]
            out += _per_segment(over, ("caller", "event"), [(e, [t.events[e] for t in over]) for e in events])
            out.append("")
        startup = [t for t in over if t.startup]
        if startup:
            out += ["One-time requests of a worker host at start-up (before the workload; not in the figures above):",
                    ""]
            for t in startup:
                out.append(f"- {t.system}: " + ", ".join(f"{s}:{a} {n}" for (_, s, a), n in sorted(t.startup.items())))
            out.append("")
    for lat in res.latency:
        if lat.error or not lat.samples:
            continue
        out += [f"### Latency samples: {lat.system}", "",
                f"{len(lat.samples)} samples after one cold one ({lat.cold:.3f} s): min {min(lat.samples):.3f}, "
                f"p50 {lat.pct(50):.3f}, p95 {lat.pct(95):.3f}, max {max(lat.samples):.3f} s.", ""]
    profs = [x for x in res.latency if x.system != "reference" and x.profile]
    if profs:
        prof = profs[0]
        names = list(dict.fromkeys(name for x in profs for name, _ in x.profile_stages))
        out += ["## Profile of one segment's path", "",
                f"The median sample of each latency run (RTT {res.plan.round_trip * 1000:.0f} ms, 1 MiB, idle "
                "system): " + ", ".join(f"{x.system} {x.profile_latency:.3f} s" for x in profs) + " from the "
                "upload to the row. Stage times come from the worker's log (received, and started = finished - "
                "run time) and the proxy's log; a stage run by chain affinity is \"received\" when the previous "
                "stage's task continues with it on the same host (a difference of ±1 ms is log rounding).", "",
                "Time per stage, ms:", "", "| stage | " + " | ".join(x.system for x in profs) + " |",
                "|---|" + "---:|" * len(profs)]
        for name in names:
            out.append(f"| {name} | " + " | ".join(
                next((f"{sec * 1000:.0f}" for n, sec in x.profile_stages if n == name), "") for x in profs) + " |")
        out += ["", "Time per AWS call kind during that segment, ms (the part of each call between the event and "
                "the row; calls overlap, so the sum can exceed the latency; a long poll counts from the event until "
                "it returns the message; idle polls are left out):", "",
                "| caller service:action | " + " | ".join(f"{x.system}: n | ms" for x in profs) + " |",
                "|---|" + "---:|---:|" * len(profs)]
        calls = [{name: f"{n} | {sec * 1000:.0f}" for name, n, sec in reversed(x.profile_calls)} for x in profs]
        for call in dict.fromkeys(name for x in profs for name, _, _ in x.profile_calls):
            out.append(f"| {call} | " + " | ".join(c.get(call, " | ") for c in calls) + " |")
        out += ["", f"<details><summary>Timeline of the {prof.system} sample</summary>", "",
                "| +ms | who | what | ms |", "|---:|---|---|---:|"]
        out += [f"| {off * 1000:.0f} | {who} | {what} | {sec * 1000:.0f} |" for off, who, what, sec in prof.profile]
        out += ["", "</details>", ""]
    ref_prof = next((x for x in res.latency if x.system == "reference" and x.profile), None)
    if ref_prof:
        out += [f"Reference, median sample ({ref_prof.profile_latency:.3f} s), per AWS call:", "",
                "| caller service:action | n | total ms |", "|---|---:|---:|"]
        out += [f"| {name} | {n} | {sec * 1000:.0f} |" for name, n, sec in ref_prof.profile_calls]
        out.append("")
    out += memory_details("### Memory", [m for m in res.memory if not m.error], lambda m: mib(m.size))
    if res.stereo is not None:
        out += stereo_report.details(res.stereo)
        out += memory_details("### Stereo: memory of the worker's process tree, MODEL=stereo",
                              [m for m in res.stereo.memory if not m.error],
                              lambda m: f"{m.video_seconds:g} s 640x360 ({mib(m.size)})")
    return out


def machine() -> str:
    cpuinfo, meminfo = Path("/proc/cpuinfo"), Path("/proc/meminfo")
    models = [line.split(":", 1)[1].strip() for line in (cpuinfo.read_text().splitlines() if cpuinfo.exists() else [])
              if line.startswith("model name")]
    cpu = models[0] if models else "?"
    mem = f"{int(meminfo.read_text().split()[1]) / 1024 / 1024:.0f} GiB RAM" if meminfo.exists() else "?"
    return f"{platform.platform()}, {os.cpu_count()} cores ({cpu}), {mem}, Python {platform.python_version()}"


def render(res: Results, command: str) -> str:
    versions = ", ".join(f"{p} {version(p)}" for p in ("celery", "kombu", "boto3", "moto"))
    lines = [BEGIN, "", "## Results", "",
             f"Command: `{command}` — run on {dt.datetime.fromtimestamp(res.started, dt.UTC):%Y-%m-%d %H:%M} UTC, "
             f"{res.finished - res.started:.0f} s in all{' (--quick: smaller counts)' if res.quick else ''}.",
             f"Machine: {machine()}; {versions}. Shared with other jobs: load average at the start of each "
             "workload: " + ", ".join(f"{name} {load[0]:.1f}" for name, load in res.load) + ".",
             "Figures are comparable within this run only."]
    if res.overrides.describe():
        lines.append(f"**Not the defaults**: the project ran with {res.overrides.describe()}.")
    lines.append("")
    lines += summary_table(res)
    lines += ["", *details(res), END]
    return "\n".join(lines) + "\n"


def write_report(path: Path, generated: str) -> None:
    """Replace the generated part of ``path`` (between the markers), keeping the rest."""
    if path.exists():
        text = path.read_text(encoding="utf-8")
        if BEGIN in text and END in text:
            head, _, rest = text.partition(BEGIN)
            _, _, tail = rest.partition(END)
            path.write_text(head + generated.rstrip("\n") + tail, encoding="utf-8")
            return
    header = ("# Benchmarks\n\nThe video worker against the reference loop (`bench/reference.py`): "
              "`python -m bench.run` (issue #6). See `bench/run.py` for how each figure is measured.\n\n")
    path.write_text(header + generated, encoding="utf-8")
