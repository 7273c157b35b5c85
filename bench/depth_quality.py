"""Depth quality on real photographs with ground truth: the relative-depth protocol, per estimator and per scene.

    python -m bench.depth_quality --data bench/data/depth --data /work/depth-data [--out section.md]

Every ``--data`` folder holds ``samples.json`` + ``NAME.png`` + ``NAME.npy`` (metres, 0 = invalid), as written by
``bench.depth_data``. Each estimator (``bench.depth_estimators``; output "nearness", anything monotone in it) gets
the image at its working width, its map is resized to the GT and scored by

- ordinal error: over ``PAIRS`` random valid pixel pairs (fixed seed) whose GT depths differ by more than
  ``RATIO``, the fraction the prediction orders wrongly, a tie counting one half (so a flat map scores 0.5);
- δ1: the prediction fitted to GT inverse depth by least squares (scale and shift), clipped to a small positive
  disparity, turned back into depth; the fraction of valid pixels with max(pred/gt, gt/pred) < 1.25.

Also the disparity in the product's own output: the image as a 6-frame still clip through ``StereoModel`` (full
side-by-side, default settings, the estimator injected), the two halves matched with OpenCV's SGBM
(d = x_left - x_right, larger = nearer), scored by the same protocol where the match is valid.
Times are CPU milliseconds per frame on one thread (OpenCV and onnxruntime pinned to one).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import platform
import subprocess
import tempfile
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Protocol

import av
import cv2
import numpy as np
import numpy.typing as npt

from bench.depth_estimators import (
    FASTDEPTH,
    Blend,
    FastDepth,
    Flat,
    HeuristicCue,
    Norm,
    Position,
    Product,
    StillProduct,
    blend,
)
from video_worker.models.stereo.depth import Depths, Frames, working_size
from video_worker.models.stereo.quality import sbs_luma
from video_worker.models.stereo.settings import load_settings

F32 = npt.NDArray[np.float32]
RGB = npt.NDArray[np.uint8]
PAIRS = 5000
RATIO = 1.1
SEED = 0
DELTA = 1.25
STILL_CLIP_FRAMES = 6
SGBM_RANGE = 16
"""SGBM searches d in [-16, 16) px: the default divergence (2 % of 640 px) spans about ±6.4 px."""
WEIGHTS = (0.05, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)
SCENES = ("indoor", "outdoor")
PRIOR = "position prior (lower = nearer)"
DEFAULT = "STEREO_DEPTH=hybrid (default)"
AS_PUBLISHED = "STEREO_DEPTH=onnx, FastDepth as published (unit, depth, 224x224; working width 224)"
HEURISTIC = {"STEREO_DEPTH": "heuristic"}
FASTDEPTH_AS_PUBLISHED = {"STEREO_DEPTH": "onnx", "STEREO_DEPTH_MODEL": str(FASTDEPTH),
                          "STEREO_DEPTH_NORMALIZE": "unit", "STEREO_DEPTH_OUTPUT": "depth",
                          "STEREO_DEPTH_INPUT_SIZE": "224x224", "STEREO_DEPTH_WIDTH": "224"}


class Estimator(Protocol):
    """A product ``DepthEstimator`` plus the working width it is run at."""

    @property
    def version(self) -> str: ...

    @property
    def depth_width(self) -> int: ...

    def estimate(self, frames: Frames) -> Depths: ...

    def reset(self) -> None: ...


def valid_depth(depth: F32) -> npt.NDArray[np.bool_]:
    """Pixels with a measurement: finite and positive."""
    return np.isfinite(depth) & (depth > 0)


def ordinal_error(near: F32, depth: F32, mask: npt.NDArray[np.bool_] | None = None, pairs: int = PAIRS,
                  seed: int = SEED, ratio: float = RATIO) -> float:
    """Fraction of GT-ordered pixel pairs (depth ratio > ``ratio``) that ``near`` (larger = nearer) gets wrong.

    Pairs are drawn uniformly among valid pixels with a fixed seed until ``pairs`` qualify (or draws run out);
    a tie in ``near`` counts as half wrong. NaN when no pair qualifies.
    """
    valid = valid_depth(depth) if mask is None else mask & valid_depth(depth)
    idx = np.flatnonzero(valid)
    if len(idx) < 2:
        return float("nan")
    rng = np.random.default_rng(seed)
    firsts: list[npt.NDArray[np.intp]] = []
    seconds: list[npt.NDArray[np.intp]] = []
    found = 0
    for _ in range(20):
        a, b = rng.choice(idx, 4 * pairs), rng.choice(idx, 4 * pairs)
        da, db = depth.flat[a], depth.flat[b]
        keep = np.maximum(da, db) > ratio * np.minimum(da, db)
        firsts.append(a[keep])
        seconds.append(b[keep])
        found += int(keep.sum())
        if found >= pairs:
            break
    a, b = np.concatenate(firsts)[:pairs], np.concatenate(seconds)[:pairs]
    if len(a) == 0:
        return float("nan")
    truth = np.sign(depth.flat[b] - depth.flat[a])  # +1: a is nearer
    said = np.sign(near.flat[a].astype(np.float64) - near.flat[b].astype(np.float64))  # +1: a said nearer
    wrong = np.where(said == 0, 0.5, (said != truth).astype(np.float64))
    return float(wrong.mean())


def delta1(near: F32, depth: F32, mask: npt.NDArray[np.bool_] | None = None) -> float:
    """δ1 after fitting ``near`` to GT inverse depth (least-squares scale and shift) and inverting back.

    The fitted disparity is clipped to a tenth of the smallest GT disparity (so nothing is at or beyond infinity).
    """
    valid = valid_depth(depth) if mask is None else mask & valid_depth(depth)
    if not valid.any():
        return float("nan")
    x = near[valid].astype(np.float64)
    gt = depth[valid].astype(np.float64)
    target = 1.0 / gt
    design = np.stack([x, np.ones_like(x)], axis=1)
    (scale, shift), *_ = np.linalg.lstsq(design, target, rcond=None)
    fitted = np.maximum(scale * x + shift, 0.1 * float(target.min()))
    pred = 1.0 / fitted
    return float((np.maximum(pred / gt, gt / pred) < DELTA).mean())


@dataclass(frozen=True)
class Sample:
    """One image with its ground truth (metres, 0 = invalid) at the same size."""

    name: str
    scene: str
    rgb: RGB
    depth: F32
    source: str


def load_samples(folders: Iterable[Path]) -> list[Sample]:
    """Every sample of every folder's ``samples.json``."""
    out = []
    for folder in folders:
        for entry in json.loads((folder / "samples.json").read_text()):
            bgr = cv2.imread(str(folder / f"{entry['name']}.png"), cv2.IMREAD_COLOR)
            if bgr is None:
                raise FileNotFoundError(folder / f"{entry['name']}.png")
            depth = np.load(folder / f"{entry['name']}.npy").astype(np.float32)
            if entry.get("gt", "depth") == "disparity":
                depth = np.where(depth > 0, 1.0 / np.maximum(depth, 1e-6), 0.0).astype(np.float32)
            out.append(Sample(entry["name"], entry["scene"], np.asarray(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)),
                              depth, entry["source"]["dataset"]))
    return out


@dataclass
class Scores:
    """Per-image ordinal error and δ1 of one row of the table, plus its per-frame times."""

    ordinal: dict[str, float] = field(default_factory=dict)
    delta: dict[str, float] = field(default_factory=dict)
    ms: list[float] = field(default_factory=list)

    def add(self, name: str, near: F32, depth: F32, mask: npt.NDArray[np.bool_] | None = None) -> None:
        self.ordinal[name] = ordinal_error(near, depth, mask)
        self.delta[name] = delta1(near, depth, mask)

    def mean(self, metric: dict[str, float], names: list[str]) -> float:
        values = [metric[n] for n in names if n in metric and np.isfinite(metric[n])]
        return float(np.mean(values)) if values else float("nan")


def working_frame(rgb: RGB, depth_width: int) -> RGB:
    """The image at the estimator's working size, area-downscaled like the product's decoder scaler."""
    h, w = rgb.shape[:2]
    size = working_size(w, h, depth_width)
    return rgb if size == (w, h) else np.asarray(cv2.resize(rgb, size, interpolation=cv2.INTER_AREA), np.uint8)


def to_size(near: F32, h: int, w: int) -> F32:
    return near if near.shape == (h, w) else np.asarray(cv2.resize(near, (w, h), interpolation=cv2.INTER_LINEAR))


def run_estimator(est: Estimator, sample: Sample) -> tuple[F32, float]:
    """The estimator's nearness at GT size for one image, and its CPU ms for the frame."""
    frame = working_frame(sample.rgb, est.depth_width)
    est.reset()
    start = time.process_time()
    near = est.estimate(frame[None])[0]
    ms = (time.process_time() - start) * 1000.0
    return to_size(near, *sample.depth.shape), ms


def write_still_clip(path: Path, rgb: RGB, frames: int = STILL_CLIP_FRAMES) -> None:
    """A short H.264 clip repeating ``rgb`` (even size), encoded like the synthetic test clips."""
    with av.open(str(path), "w", format="mp4") as out:
        video = out.add_stream("libx264", rate=25)
        video.width, video.height, video.pix_fmt = rgb.shape[1], rgb.shape[0], "yuv420p"
        video.codec_context.thread_count = 1
        video.codec_context.options = {"preset": "superfast", "crf": "16"}
        for i in range(frames):
            vf = av.VideoFrame.from_ndarray(rgb, format="rgb24").reformat(format="yuv420p")
            vf.pts, vf.time_base = i, Fraction(1, 25)
            out.mux(video.encode(vf))
        out.mux(video.encode(None))


def output_disparity(left: npt.NDArray[np.uint8], right: npt.NDArray[np.uint8]) -> tuple[F32, npt.NDArray[np.bool_]]:
    """Dense d = x_left - x_right (px, larger = nearer) between the halves by SGBM, and where it is valid."""
    block = 5
    sgbm = cv2.StereoSGBM_create(  # type: ignore[attr-defined]
        minDisparity=-SGBM_RANGE, numDisparities=2 * SGBM_RANGE, blockSize=block, P1=8 * block * block,
        P2=32 * block * block, uniquenessRatio=5, disp12MaxDiff=1, speckleWindowSize=50, speckleRange=2)
    raw = np.asarray(sgbm.compute(left, right), np.int16)
    disparity = raw.astype(np.float32) / 16.0
    valid = raw > (-SGBM_RANGE - 1) * 16
    valid[:, : 2 * SGBM_RANGE] = False  # no full search range at the left border
    return disparity, valid


def product_disparity(sample: Sample, est: Estimator, work: Path) -> tuple[F32, npt.NDArray[np.bool_], F32]:
    """Convert ``sample`` as a still clip through ``StereoModel`` with ``est``; the recovered disparity and GT."""
    from video_worker.models.stereo.model import StereoModel

    h, w = (s - s % 2 for s in sample.depth.shape)
    rgb, depth = np.ascontiguousarray(sample.rgb[:h, :w]), sample.depth[:h, :w]
    tag = hashlib.sha256(est.version.encode()).hexdigest()[:12]  # versions may hold '/' and ':'
    clip, out = work / f"{sample.name}.mp4", work / f"{sample.name}-{tag}-sbs.mp4"
    write_still_clip(clip, rgb)
    settings = load_settings({"STEREO_DEPTH_WIDTH": est.depth_width, "STEREO_SBS": "full"})
    StereoModel(settings, estimator=est).convert(clip, out, "sbs")
    left, right = sbs_luma(out, STILL_CLIP_FRAMES // 2)
    disparity, valid = output_disparity(left, right)
    return disparity, valid, depth


@dataclass
class Table:
    """Rows in order: label -> scores; ``notes`` per label."""

    rows: dict[str, Scores] = field(default_factory=dict)
    notes: dict[str, str] = field(default_factory=dict)

    def row(self, label: str, note: str = "") -> Scores:
        if label not in self.rows:
            self.rows[label], self.notes[label] = Scores(), note
        return self.rows[label]


def score_estimators(samples: list[Sample], estimators: dict[str, tuple[Estimator, str]], table: Table) -> None:
    for label, (est, note) in estimators.items():
        run_estimator(est, samples[0])  # warm-up (onnxruntime's first run allocates)
        row = table.row(label, note)
        for s in samples:
            near, ms = run_estimator(est, s)
            row.add(s.name, near, s.depth)
            row.ms.append(ms)


def sweep_blends(samples: list[Sample], networks: dict[str, FastDepth]) -> dict[tuple[str, Norm, float], Scores]:
    """Every (network size, normalisation, weight) blend, from one network run per image and size."""
    out: dict[tuple[str, Norm, float], Scores] = {}
    for size, net in networks.items():
        for s in samples:
            metric = net.metric_depth(working_frame(s.rgb, net.depth_width))
            for norm in ("rank", "pct"):
                for weight in WEIGHTS:
                    near = to_size(blend(metric, weight, norm), *s.depth.shape)
                    out.setdefault((size, norm, weight), Scores()).add(s.name, near, s.depth)
    return out


def pick_blends(sweep: dict[tuple[str, Norm, float], Scores], prior: Scores,
               samples: list[Sample]) -> dict[str, tuple[str, Norm, float]]:
    """The blend with the lowest mean of indoor and outdoor ordinal error ("balanced") and, among those that beat
    the position prior ``prior`` indoors and outdoors, the one with the lowest mean ("beats the prior on both")."""
    def per_scene(sc: Scores) -> list[float]:
        return [sc.mean(sc.ordinal, names(samples, scene)) for scene in SCENES]

    def cost(key: tuple[str, Norm, float]) -> float:
        return sum(per_scene(sweep[key])) / 2

    bar = per_scene(prior)
    picks = {"balanced": min(sweep, key=cost)}
    winners = [k for k in sweep if all(a < b for a, b in zip(per_scene(sweep[k]), bar, strict=True))]
    if winners:
        picks["beats the prior on both"] = min(winners, key=cost)
    return picks


def names(samples: list[Sample], scene: str | None = None) -> list[str]:
    return [s.name for s in samples if scene is None or s.scene == scene]


def score_product(samples: list[Sample], estimators: dict[str, tuple[Estimator, str]], table: Table) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        for label, (est, note) in estimators.items():
            row = table.row(label, note)
            for s in samples:
                disparity, valid, depth = product_disparity(s, est, Path(tmp))
                row.add(s.name, disparity, depth, valid)


def fmt(x: float, digits: int = 3) -> str:
    return "-" if not np.isfinite(x) else f"{x:.{digits}f}"


def render(samples: list[Sample], table: Table, sweep: dict[tuple[str, Norm, float], Scores], command: str) -> str:
    """The BENCHMARKS.md section: machine, data, main table, blend sweep, per-image ordinal errors."""
    indoor, outdoor = names(samples, "indoor"), names(samples, "outdoor")
    every = names(samples)
    cpu = _cpu_model()
    lines = [
        "## Depth quality on real data", "",
        f"Machine: {cpu}, 2 cores; every estimator on one thread (OpenCV and onnxruntime pinned to 1). "
        f"Command: `{command}`.", "",
        f"Data: {len(indoor)} indoor and {len(outdoor)} outdoor real photographs with sensor ground truth "
        f"({_datasets(samples)}); see `bench/data/depth/SOURCES.md` (committed) and `EXTERNAL.md` (rebuilt by "
        "`python -m bench.depth_data`). Protocol: `bench/depth_quality.py` (ordinal error over "
        f"{PAIRS} random pairs per image whose GT depths differ by more than {int((RATIO - 1) * 100)} %, a tie = "
        "0.5; δ1 after a least-squares scale and shift in inverse depth). Lower ordinal error is better, higher δ1 "
        "is better. Means over images.", "",
        "| estimator | ordinal error indoor | outdoor | all | δ1 indoor | outdoor | all | CPU ms/frame | notes |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for label, sc in table.rows.items():
        ms = fmt(float(np.mean(sc.ms)), 1) if sc.ms else "-"
        lines.append(f"| {label} | {fmt(sc.mean(sc.ordinal, indoor))} | {fmt(sc.mean(sc.ordinal, outdoor))} | "
                     f"{fmt(sc.mean(sc.ordinal, every))} | {fmt(sc.mean(sc.delta, indoor))} | "
                     f"{fmt(sc.mean(sc.delta, outdoor))} | {fmt(sc.mean(sc.delta, every))} | {ms} | "
                     f"{table.notes[label]} |")
    datasets = list(dict.fromkeys(s.source for s in samples))
    lines += ["", "Per dataset, ordinal error / δ1 (means over its images; the number of images in brackets):", "",
              "| estimator | " + " | ".join(f"{d} ({next(s.scene for s in samples if s.source == d)}, "
                                             f"{sum(s.source == d for s in samples)})" for d in datasets) + " |",
              "|---|" + "---|" * len(datasets)]
    for label, sc in table.rows.items():
        cells = []
        for d in datasets:
            group = [s.name for s in samples if s.source == d]
            cells.append(f"{fmt(sc.mean(sc.ordinal, group))} / {fmt(sc.mean(sc.delta, group))}")
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    lines += ["", "Blend sweep: w x normalised FastDepth inverse depth + (1 - w) x position prior; ordinal error "
              "indoor / outdoor.", "",
              "| network input, normalisation | " + " | ".join(f"w={w}" for w in WEIGHTS) + " |",
              "|---|" + "---|" * len(WEIGHTS)]
    for size, norm in sorted({(k[0], k[1]) for k in sweep}):
        cells = [f"{fmt(sweep[(size, norm, w)].mean(sweep[(size, norm, w)].ordinal, indoor))} / "
                 f"{fmt(sweep[(size, norm, w)].mean(sweep[(size, norm, w)].ordinal, outdoor))}" for w in WEIGHTS]
        lines.append(f"| {size}, {norm} | " + " | ".join(cells) + " |")
    lines += ["", "Per image, ordinal error:", "",
              "| estimator | " + " | ".join(f"{n} ({s.scene})" for n, s in ((s.name, s) for s in samples)) + " |",
              "|---|" + "---|" * len(samples)]
    for label, sc in table.rows.items():
        lines.append(f"| {label} | " + " | ".join(fmt(sc.ordinal.get(n, float('nan')), 2) for n in every) + " |")
    return "\n".join(lines) + "\n"


def _datasets(samples: list[Sample]) -> str:
    counts: dict[str, int] = {}
    for s in samples:
        counts[s.source] = counts.get(s.source, 0) + 1
    return "; ".join(f"{k}: {v}" for k, v in counts.items())


def _cpu_model() -> str:
    try:
        text = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return platform.processor() or "unknown CPU"
    return next((line.split(":", 1)[1].strip() for line in text.splitlines() if line.startswith("Model name")),
                "unknown CPU")


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, action="append", required=True)
    ap.add_argument("--out", type=Path)
    ap.add_argument("--no-product", action="store_true", help="skip the conversions through StereoModel")
    args = ap.parse_args(argv)
    cv2.setNumThreads(1)
    samples = load_samples(args.data)
    table = Table()
    baselines: dict[str, tuple[Estimator, str]] = {
        "flat": (Flat(), "every pair a tie"),
        PRIOR: (Position(), ""),
        "STEREO_DEPTH=heuristic": (StillProduct(HEURISTIC), "192 px wide; still: motion cue 0"),
        "heuristic: position cue alone": (HeuristicCue("position"), "through the guided filter"),
        "heuristic: sharpness cue alone": (HeuristicCue("sharpness"), "through the guided filter"),
    }
    have_network = FASTDEPTH.exists()
    networks: dict[str, FastDepth] = {}
    if have_network:
        networks = {"224x224": FastDepth(224, (224, 224)), "256 wide": FastDepth(256), "320 wide": FastDepth(320)}
        for size, net in networks.items():
            baselines[f"FastDepth direct, {size}"] = (net, "inverse depth")
    if have_network:
        baselines[DEFAULT] = (StillProduct({}), "192 px wide; still: motion cue 0")
        baselines[AS_PUBLISHED] = (StillProduct(FASTDEPTH_AS_PUBLISHED), "through OnnxDepth")
    score_estimators(samples, baselines, table)
    sweep = sweep_blends(samples, networks) if have_network else {}
    candidates: dict[str, tuple[Estimator, str]] = {}
    if sweep:
        for why, (size, norm, weight) in pick_blends(sweep, table.rows[PRIOR], samples).items():
            for guided in (False, True):
                label = (f"candidate: {weight} x FastDepth {size} ({norm}) + {1 - weight:.2f} x position"
                         f"{' + guided filter' if guided else ''}")
                candidates[label] = (Blend(networks[size], weight, norm, guided), f"sweep pick: {why}")
        score_estimators(samples, candidates, table)
    if not args.no_product:
        product: dict[str, tuple[Estimator, str]] = {
            f"product output: {DEFAULT}": (Product({}), "SGBM on the SBS halves"),
            "product output: STEREO_DEPTH=heuristic": (Product(HEURISTIC), "SGBM on the SBS halves"),
            f"product output: {AS_PUBLISHED}": (Product(FASTDEPTH_AS_PUBLISHED), "SGBM on the SBS halves"),
            "product output: position prior": (Position(), "SGBM on the SBS halves"),
        }
        for label, (est, _) in candidates.items():
            product[f"product output: {label.removeprefix('candidate: ')}"] = (est, "SGBM on the SBS halves")
        score_product(samples, product, table)
    command = "python -m bench.depth_quality " + " ".join(f"--data {d}" for d in args.data)
    text = render(samples, table, sweep, command)
    print(text)
    if args.out:
        args.out.write_text(text)


if __name__ == "__main__":
    main()
