"""The stereo family's part of the report: its rows of the summary table (figures against ``bench.targets``)
and its detail tables (the memory table is ``bench.tables.memory_details``, shared with the memory workload)."""

from __future__ import annotations

import os

from bench.stereo import SEGMENT_SECONDS, SIZE, Pipeline, StereoResults
from bench.tables import num, pct
from bench.targets import BY_NAME, target
from video_worker.models.stereo.timing import PHASES, ConversionReport

#: A summary row: workload, figure, project, reference, target, met.
Row = tuple[str, str, str, str, str, bool | None]
SEGMENT = f"{SEGMENT_SECONDS:g} s {SIZE[0]}x{SIZE[1]} sbs"


def _config(p: Pipeline) -> str:
    return f"INFER_CONCURRENCY={p.infer_concurrency}, STEREO_ENCODER_THREADS={p.encoder_threads}"


def best(grid: list[Pipeline]) -> Pipeline | None:
    ok = [g for g in grid if not g.error and g.wall]
    return max(ok, key=lambda g: g.rate) if ok else None


#: Cores the rest of the machine may use during a run before the summary flags the run as noisy.
NOISY = 0.25


def _noise(other: float) -> str:
    return f" (noisy: other jobs {other:.2f} cores)" if other > NOISY else ""


def summary_rows(res: StereoResults, round_trip: float) -> list[Row]:
    if res.error:
        return [("stereo", "error", res.error, "", "", None)]
    return (_pipeline_rows(res.pipeline, round_trip) + _speed_rows(res) + _grid_rows(res.grid)
            + _memory_rows(res))


def _pipeline_rows(p: Pipeline | None, round_trip: float) -> list[Row]:
    if p is None:
        return []
    w = f"stereo pipeline: {p.segments} x {SEGMENT}, MODEL=stereo, RTT {round_trip * 1000:.0f} ms"
    if p.error:
        return [(w, "error", p.error, "", "", None)]
    eff = target("stereo pipeline efficiency")
    return [(w, "segments/s: worker end to end (project) vs the model alone, one process (reference column; mean "
                f"of {len(p.alone)} pass(es))", f"{p.rate:.3f}{_noise(p.other)}",
             f"{p.alone_rate or 0:.3f}{_noise(max(a.other for a in p.alone))}", "", None),
            (w, "pipeline efficiency: worker ÷ model alone", pct(p.efficiency), "", eff.text(),
             eff.met(p.efficiency or 0.0))]


def _speed_rows(res: StereoResults) -> list[Row]:
    rows: list[Row] = []
    for case in res.speed:
        w = f"stereo model alone: {case.width}x{case.height} {case.mode}, {SEGMENT_SECONDS:g} s clip, x264 veryfast" + (
            ", OpenCV pinned to 1 thread" if case.pinned else "")
        m, top = case.median(), case.best()
        if case.error or m is None or top is None:
            rows.append((w, "error", case.error or "no run", "", "", None))
            continue
        goal = None if case.pinned else BY_NAME.get(f"stereo fps per core, {case.width}x{case.height} {case.mode}")
        rows.append((w, f"frames/s per core (CPU time): median of {len(case.runs)} (best); wall fps of the median",
                     f"{m.fps_per_core:.1f} ({top.fps_per_core:.1f}); {m.fps:.1f} wall", "",
                     goal.text() if goal else "", goal.met(m.fps_per_core) if goal else None))
        if goal and (case.width, case.height, case.mode) == (*SIZE, "sbs"):
            moon = target("stereo fps per core moonshot")
            rows.append((w, "moonshot: frames/s per core, median", "reached" if moon.met(m.fps_per_core) else "not yet",
                         "", moon.text(), None))
    return rows


def _grid_rows(grid: list[Pipeline]) -> list[Row]:
    top, rows = best(grid), list[Row]()
    for g in grid:
        w = f"stereo both cores: {g.segments} x {SEGMENT}, worker end to end"
        rows.append((w, f"{_config(g)}: error", g.error, "", "", None) if g.error else
                    (w, f"{_config(g)}: segments/s", f"{g.rate:.3f}" + (" (best)" if g is top else "")
                     + _noise(g.other), "", "", None))
    return rows


def _memory_rows(res: StereoResults) -> list[Row]:
    rows: list[Row] = []
    for run in res.memory:
        w = f"stereo memory: one {run.video_seconds:g} s {SIZE[0]}x{SIZE[1]} segment"
        rows.append((w, "error", run.error, "", "", None) if run.error else
                    (w, "peak RSS of the worker's process tree (sum)", f"{run.peak_rss / 1e6:.0f} MB", "", "", None))
    ok = sorted((m for m in res.memory if not m.error), key=lambda m: m.video_seconds)
    if len(ok) > 1:
        short, long = ok[0], ok[-1]
        diff, growth = (long.peak_rss - short.peak_rss) / 1e6, target("stereo memory growth")
        rows.append((f"stereo memory: one {long.video_seconds:g} s segment", f"difference to the "
                     f"{short.video_seconds:g} s figure", f"{diff:+.0f} MB", "", growth.text(), growth.met(abs(diff))))
    return rows


def details(res: StereoResults) -> list[str]:
    out = ["## Stereo (`MODEL=stereo`)", "",
           f"Run time {sum(res.seconds.values()):.0f} s: " + ", ".join(f"{k} {v:.0f} s" for k, v in res.seconds.items())
           + ". Segments: one synthetic 640x360 clip (25 fps, a keyframe every 2 s, AAC tone) cut at its keyframes "
           "by stream copy (`split_at_keyframes`); the model's default settings (`STEREO_*`) everywhere unless a "
           "row says otherwise.", ""]
    out += _pipeline(res.pipeline) + _speed(res) + _grid(res.grid)
    return out


def _pipeline(p: Pipeline | None) -> list[str]:
    if p is None or p.error:
        return []
    out = ["### Stereo: the model alone vs the worker, same segments", "",
           f"| run | segments | wall s | segments/s | {CPU_HEAD} | fill s | drain s | s per segment | check |",
           "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|"]
    for i, a in enumerate(p.alone):
        n = len(a.reports)
        out.append(f"| model alone, pass {i + 1} ({'before' if i == 0 else 'after'} the worker) | {n} | "
                   f"{a.wall:.2f} | {a.rate:.3f} | {a.cpu / a.wall:.2f} | {a.cpu / n:.3f} | | | "
                   f"{a.other:.2f} | | | {a.wall / n:.3f} | "
                   f"OpenCV threads {a.cv_threads}, peak RSS {a.peak_rss / 1e6:.0f} MB |")
    out.append(f"| worker (`celery -A video_worker worker`, {_config(p)}) | {p.segments} | {p.wall:.2f} | "
               f"{p.rate:.3f} | {_cpu(p)} | {num(p.fill)} | {num(p.drain)} | "
               f"{'' if p.interval is None else f'{p.interval:.3f}'} | {_check(p)} |")
    out += ["", f"Pipeline efficiency {pct(p.efficiency)} = worker segments/s ÷ the mean of the model-alone passes. "
            "Model alone: `python -m bench.stereo_alone`, a fresh process that builds `StereoModel()` from the same "
            "environment as the worker's model process, calls `warm_up()`, then converts the segments back to back "
            "(timed: the loop only). Worker: wall = first upload → last completion row, nothing excluded (its model "
            "process is built and warmed up before the worker logs `ready.`); fill = first upload → first inference "
            "started; drain = last inference finished → last row (worker log). s per segment: the model alone's "
            "wall ÷ segments; for the worker, the mean time between two inference ends (first → last ÷ (n - 1): "
            "the model's pace as the pipeline sees it; wall ≈ fill + one conversion + (n - 1) x this + drain). "
            f"CPU (1.00 = one core, {os.cpu_count()} here): /proc over the same window; harness = the emulator, the "
            "proxy (the benchmark's process) and the bridge, which a worker host does not run; other = the rest of "
            "the machine (/proc/stat: other jobs), a measure of the noise.", ""]
    return out


CPU_HEAD = ("model CPU | model CPU s per segment | worker main CPU | harness CPU (emulator, proxy, bridge) | "
            "other processes CPU")


def _cpu(p: Pipeline) -> str:
    """The CPU cells of a worker run (cores, but model CPU per segment), in ``CPU_HEAD``'s order."""
    return " | ".join([f"{p.model_cpu / p.wall:.2f}", f"{p.model_cpu / p.segments:.3f}",
                       *(f"{x / p.wall:.2f}" for x in (p.main_cpu, p.harness_cpu)), f"{p.other:.2f}"])


def _check(p: Pipeline) -> str:
    same = "" if p.identical is None else f", {p.identical}/{p.segments} byte-identical to the model alone's"
    return p.verified + same


def _speed(res: StereoResults) -> list[str]:
    cases = [(c, m, top) for c in res.speed if not c.error for m, top in [(c.median(), c.best())]
             if m is not None and top is not None]
    if not cases:
        return []
    out = ["### Stereo: frames per second per core, the model alone", "",
           "| case | OpenCV threads | runs | frames | fps per core: median (min-max) | wall fps (median run) | "
           "decode | depth | render | encode | CPU ms per frame | best run: decode / depth / render / encode | "
           "output |",
           "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|---|"]
    for c, m, top in cases:
        spread = [r.fps_per_core for r in c.runs]
        out.append(f"| {c.width}x{c.height} {c.mode} | {c.cv_threads}{' (pinned)' if c.pinned else ''} | "
                   f"{len(c.runs)} | {m.frames} | {m.fps_per_core:.1f} ({min(spread):.1f}-{max(spread):.1f}) | "
                   f"{m.fps:.1f} | {_phases(m, ' | ')} | {m.cpu_seconds / m.frames * 1e3:.1f} | "
                   f"{_phases(top, ' / ')} | {m.output_size[0]}x{m.output_size[1]} |")
    out += ["", "Each run: a fresh model-alone process (`python -m bench.stereo_alone`, `warm_up()`, one "
            "conversion of the case's 2 s clip), the cases round robin; per core = frames ÷ CPU seconds of the "
            "process (every thread). Phase columns: CPU ms per frame (`ConversionReport.phases_cpu`) of the median "
            "run, and of the best (least CPU: other jobs' load only adds). x264 veryfast, "
            "`STEREO_ENCODER_THREADS=1`; OpenCV at its default thread count, as in the worker's model process, "
            "except the pinned case (1 thread, as the prototype's benchmark ran it, to compare with its anchor). "
            "Targets (on the median): ≥ 45 (640x360 sbs) "
            "and ≥ 11 (1280x720 sbs) fps per core, anchored on the prototype (~45, 11-14); moonshot 60.", ""]
    return out


def _phases(r: ConversionReport, sep: str) -> str:
    return sep.join(f"{r.phases_cpu.get(k, 0.0) / r.frames * 1e3:.2f}" for k in PHASES)


def _grid(grid: list[Pipeline]) -> list[str]:
    ok = [g for g in grid if not g.error]
    if not ok:
        return []
    base = next((g for g in ok if (g.infer_concurrency, g.encoder_threads) == (1, 1)), None)
    out = ["### Stereo: the best use of both cores (worker end to end)", "",
           f"| INFER_CONCURRENCY | STEREO_ENCODER_THREADS | segments | wall s | segments/s | vs 1 x 1 | {CPU_HEAD} | "
           "fill s | drain s | fingerprint | check |",
           "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|---|"]
    for g in ok:
        out.append(f"| {g.infer_concurrency} | {g.encoder_threads} | {g.segments} | {g.wall:.2f} | {g.rate:.3f} | "
                   f"{f'{g.rate / base.rate:.2f}x' if base and base.rate else '-'} | {_cpu(g)} | "
                   f"{num(g.fill)} | {num(g.drain)} | `{g.fingerprint}` | {_check(g)} |")
    top = best(grid)
    out += ["", (f"Best here: {_config(top)}, {top.rate:.3f} segments/s. " if top else "")
            + "Each row: a fresh stack, the worker with default settings but these two, the same segments "
            "uploaded at once; CPU columns as in the table above. `STEREO_ENCODER_THREADS` "
            "changes the output bytes (x264's bitstream depends on its thread count, so it is part of the model's "
            "fingerprint: see the column, and the byte comparison with the model alone at 1 thread): it is a "
            "deployment-wide setting, the same on every worker, or segments of one job (and a re-run of one) "
            "come out differently. `INFER_CONCURRENCY` leaves the bytes alone.", ""]
    return out
