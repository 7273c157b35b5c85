"""Depth across segment cuts: segments converted apart (with and without the previous segment as context) against
the whole clip converted as one segment, and what the context costs per segment.

    python -m bench.seams [--width 640 --height 360 --seconds 6 --segment-seconds 2] [--write BENCHMARKS.md]

A continuous generated scene (textured discs moving in front of a panning backdrop) is cut at keyframes by stream
copy, as the upstream chunker cuts it; the near disc's disparity is measured by block matching in every frame of
every output (``models/stereo/quality.py``).
"""

from __future__ import annotations

import argparse
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

from bench.report import machine
from bench.sections import publish
from video_worker.models.stereo.chunks import split_at_keyframes
from video_worker.models.stereo.model import StereoModel
from video_worker.models.stereo.quality import joined_disparity, jumps, near_disparity, ordinary_change
from video_worker.models.stereo.settings import load_settings
from video_worker.models.stereo.synthetic import write_clip
from video_worker.models.stereo.timing import ConversionReport

HEADING = "## Depth across segment cuts (`STEREO_CONTEXT_FRAMES`)"


@dataclass(frozen=True)
class Way:
    """One way of converting the segments: its disparity through the joined outputs and its conversions."""

    name: str
    disparity: npt.NDArray[np.float64]
    cuts: list[int]
    reports: list[ConversionReport]


def measure(root: Path, width: int, height: int, seconds: float, segment_seconds: float) -> tuple[list[Way], list[int]]:
    """The whole clip and the segments with and without context; also the segments' sizes in bytes."""
    fps = 25
    clip = root / "clip.mp4"
    scene = write_clip(clip, seconds=seconds, width=width, height=height, fps=fps, audio=True, gop=fps)
    segments = split_at_keyframes(clip, root / "cut", seconds=segment_seconds)
    model = StereoModel(load_settings({}))
    whole = model.convert(clip, root / "whole.mp4", "sbs")
    ways = [Way("whole clip as one segment", np.array(near_disparity(scene, root / "whole.mp4")), [], [whole])]
    for name, with_context in (("segments apart, no context", False), ("segments apart, with context", True)):
        outputs, reports = [], []
        for i, segment in enumerate(segments):
            out = root / f"{with_context}-{i}.mp4"
            context = segments[i - 1] if with_context and i else None
            reports.append(model.convert(segment, out, "sbs", context=context))
            outputs.append(out)
        disparity, cuts = joined_disparity(scene, outputs)
        ways.append(Way(name, disparity, cuts, reports))
    return ways, [p.stat().st_size for p in segments]


def report(ways: list[Way], sizes: list[int], args: argparse.Namespace) -> str:
    whole, *apart = ways
    cuts = apart[0].cuts
    lines = [
        f"A {args.seconds:g} s {args.width}x{args.height} 25 fps scene cut at keyframes into {len(sizes)} segments of "
        f"{args.segment_seconds:g} s, each converted on its own (default settings, `sbs`); disparity of the near disc "
        f"measured in every output frame. Machine: {machine()}, "
        "one conversion at a time. `python -m bench.seams --write BENCHMARKS.md`.",
        "",
        "| conversion | largest change at a cut (px) | largest ordinary frame-to-frame change (px) "
        "| largest difference from the whole clip, any frame (px) |",
        "|---|---:|---:|---:|",
        f"| {whole.name} | {max(jumps(whole.disparity, cuts)):.2f} (same frames) "
        f"| {ordinary_change(whole.disparity, cuts):.2f} | 0 |",
    ]
    for way in apart:
        lines.append(f"| {way.name} | {max(jumps(way.disparity, cuts)):.2f} | "
                     f"{ordinary_change(way.disparity, cuts):.2f} | "
                     f"{float(np.abs(way.disparity - whole.disparity).max()):.2f} |")
    plain, primed = apart[0].reports[1:], apart[1].reports[1:]
    extra_cpu = [p.phases_cpu["context"] for p in primed]
    own_cpu = float(np.mean([q.cpu_seconds for q in plain]))
    lines += [
        "",
        f"Cost per segment after the first: the previous segment is read whole from the input bucket "
        f"({np.mean(sizes[:-1]) / 1e3:.0f} kB here, i.e. {np.mean(sizes[:-1]) / np.mean(sizes[1:]):.2f}x the "
        f"segment's own bytes), then its last {primed[0].context_frames} frames are decoded (from the keyframe "
        f"before them: {np.mean([p.context_decoded for p in primed]):.0f} frames) and run through the estimator: "
        f"{np.mean(extra_cpu) * 1e3:.0f} ms of CPU per segment, "
        f"{np.mean(extra_cpu) / own_cpu:.1%} of the segment's own conversion ({own_cpu * 1e3:.0f} ms CPU).",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--width", type=int, default=640)
    parser.add_argument("--height", type=int, default=360)
    parser.add_argument("--seconds", type=float, default=6.0)
    parser.add_argument("--segment-seconds", type=float, default=2.0)
    parser.add_argument("--write", type=Path, help="replace this section of the given BENCHMARKS.md")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        ways, sizes = measure(Path(tmp), args.width, args.height, args.seconds, args.segment_seconds)
    text = report(ways, sizes, args)
    publish(text, HEADING, args.write)


if __name__ == "__main__":
    main()
