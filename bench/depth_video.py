"""Depth quality on video: a generated scene whose depth is known, every frame scored as ``bench.depth_quality``
scores photographs, with the estimators' temporal state (motion parallax, smoothing) carried from frame to frame.

    python -m bench.depth_video [--seconds 4] [--write BENCHMARKS.md]

The scene (``models/stereo/synthetic.py``): a textured backdrop panning slowly (far), a disc crossing it (middle
distance) and a larger disc crossing lower and faster (near), as a camera tracking past two objects sees them. The
backdrop, sky and ground alike, is the far plane; the discs are 8 and 3 times nearer. Only pairs whose depths differ
count, so the score says how well an estimator puts the two objects in front of the backdrop and in their order.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from contextlib import closing
from pathlib import Path

import av
import cv2
import numpy as np
import numpy.typing as npt

from bench.depth_estimators import Position
from bench.depth_quality import ordinal_error, working_frame
from bench.report import machine
from bench.sections import publish
from video_worker.models.stereo.depth import DepthEstimator
from video_worker.models.stereo.estimators import make_estimator
from video_worker.models.stereo.settings import load_settings
from video_worker.models.stereo.synthetic import Scene, write_clip

HEADING = "## Depth quality on video (generated scene with known depth)"
DEPTHS = {"background": 24.0, "mid": 3.0, "near": 1.0}
"""Metres, as far as ordering goes: the backdrop far, the discs 8 and 24 times nearer."""
F32 = npt.NDArray[np.float32]


def ground_truth(scene: Scene, index: int) -> F32:
    """Depth of every pixel of scene frame ``index`` (the discs drawn in order, nearest last)."""
    _, boxes = scene.frame(index)
    depth = np.full((scene.height, scene.width), DEPTHS["background"], np.float32)
    for box in boxes:
        side = box.x1 - box.x0
        mask = np.zeros((side, side), np.uint8)
        cv2.ellipse(mask, (side // 2, side // 2), (side // 2 - 1, side // 2 - 1), 0, 0, 360, 255, -1)
        region = depth[box.y0 : box.y1, box.x0 : box.x1]
        region[mask > 0] = DEPTHS.get(box.name, DEPTHS["background"])
    return depth


def decoded_frames(path: Path, depth_width: int) -> list[npt.NDArray[np.uint8]]:
    """The clip's frames as the estimator sees them (RGB at the working width)."""
    with closing(av.open(str(path))) as c:
        return [working_frame(np.asarray(f.to_ndarray(format="rgb24"), np.uint8), depth_width)
                for f in c.decode(video=0)]


def score(estimator: DepthEstimator, frames: list[npt.NDArray[np.uint8]], scene: Scene,
          batch: int = 4) -> tuple[float, float, float]:
    """Mean ordinal error over every frame, over the frames after the first second, and CPU ms per frame."""
    estimator.reset()
    errors: list[float] = []
    cpu = 0.0
    for first in range(0, len(frames), batch):
        start = time.process_time()
        near = estimator.estimate(np.stack(frames[first : first + batch]))
        cpu += time.process_time() - start
        for i, nearness in enumerate(near):
            gt = ground_truth(scene, first + i)
            resized = cv2.resize(nearness, (scene.width, scene.height), interpolation=cv2.INTER_LINEAR)
            errors.append(ordinal_error(np.asarray(resized, np.float32), gt))
    ms = cpu / len(frames) * 1e3
    return float(np.mean(errors)), float(np.mean(errors[scene.fps :])), ms


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=4.0)
    parser.add_argument("--write", type=Path, help="replace this section of the given BENCHMARKS.md")
    args = parser.parse_args(argv)
    cv2.setNumThreads(1)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        clip = Path(tmp) / "scene.mp4"
        scene = write_clip(clip, seconds=args.seconds, width=640, height=360, fps=25, audio=False, gop=25)
        frames = decoded_frames(clip, load_settings({}).depth_width)
        rows.append(("position prior", *score(Position(), frames, scene)))
        for label, env in (("heuristic (position 0.5, motion 0.3, sharpness 0.2)", {"STEREO_DEPTH": "heuristic"}),
                           ("hybrid (position + FastDepth row deviation; motion 0.3)", {"STEREO_DEPTH": "hybrid"})):
            rows.append((label, *score(make_estimator(load_settings(env)), frames, scene)))
    lines = [f"A {args.seconds:g} s 640x360 scene (`python -m bench.depth_video`): a panning backdrop (far), a disc "
             "crossing it (8x nearer) and a larger one lower down (24x nearer); every frame scored against its known "
             "depth with the ordinal error of the photograph benchmark (pairs whose depths differ: objects against "
             f"the backdrop and against each other). Machine: {machine()}, one thread.", "",
             "| estimator | ordinal error, every frame | after the first second | CPU ms/frame |",
             "|---|---:|---:|---:|"]
    lines += [f"| {label} | {a:.3f} | {b:.3f} | {ms:.1f} |" for label, a, b, ms in rows]
    text = "\n".join(lines)
    publish(text, HEADING, args.write)


if __name__ == "__main__":
    main()
