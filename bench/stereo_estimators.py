"""What each depth estimator costs in the whole conversion: frames per second per core and CPU ms per frame by
phase, at 640x360 and 1280x720 full side-by-side, the model alone, OpenCV and onnxruntime on one thread.

    python -m bench.stereo_estimators [--runs 3] [--write BENCHMARKS.md]
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import cv2

from bench.report import machine
from bench.sections import publish
from video_worker.models.stereo.model import StereoModel
from video_worker.models.stereo.settings import load_settings
from video_worker.models.stereo.synthetic import write_clip
from video_worker.models.stereo.timing import PHASES, ConversionReport

HEADING = "## Stereo: the cost of each depth estimator"
SIZES = ((640, 360), (1280, 720))
ESTIMATORS = {
    "hybrid (default)": {"STEREO_DEPTH": "hybrid"},
    "heuristic": {"STEREO_DEPTH": "heuristic"},
}


def measure(root: Path, runs: int) -> list[tuple[str, tuple[int, int], ConversionReport]]:
    """The least-CPU run of ``runs`` conversions of a 2 s clip per size and estimator (other load only adds)."""
    out = []
    for width, height in SIZES:
        clip = root / f"{width}x{height}.mp4"
        write_clip(clip, seconds=2.0, width=width, height=height, fps=25, audio=True, gop=25)
        for label, env in ESTIMATORS.items():
            model = StereoModel(load_settings(env))
            model.warm_up()
            reports = [model.convert(clip, root / "out.mp4", "sbs") for _ in range(runs)]
            out.append((label, (width, height), min(reports, key=lambda r: r.cpu_seconds)))
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--write", type=Path, help="replace this section of the given BENCHMARKS.md")
    args = parser.parse_args(argv)
    cv2.setNumThreads(1)
    with tempfile.TemporaryDirectory() as tmp:
        rows = measure(Path(tmp), args.runs)
    lines = [f"`python -m bench.stereo_estimators` on {machine()}: a 2 s 25 fps generated clip converted to full "
             f"sbs by the model alone, best of {args.runs} runs (least CPU), OpenCV and onnxruntime on one thread.",
             "", "| input | estimator | frames/s per core | " + " | ".join(f"{p} ms" for p in PHASES) + " |",
             "|---|---|---:|" + "---:|" * len(PHASES)]
    for label, (w, h), r in rows:
        phases = " | ".join(f"{r.phases_cpu[p] / r.frames * 1e3:.1f}" for p in PHASES)
        lines.append(f"| {w}x{h} | {label} | {r.fps_per_core:.1f} | {phases} |")
    text = "\n".join(lines)
    publish(text, HEADING, args.write)


if __name__ == "__main__":
    main()
