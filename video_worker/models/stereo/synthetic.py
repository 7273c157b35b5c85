"""Synthetic 2D test clips with known depth: a far textured backdrop and objects moving with parallax,
written as a real H.264 mp4 (plus an optional AAC sine tone) with PyAV."""

from __future__ import annotations

from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

import av
import cv2
import numpy as np
import numpy.typing as npt

RGB = npt.NDArray[np.uint8]


@dataclass(frozen=True)
class Box:
    """An object's axis-aligned bounding box in pixels (x0, y0 inclusive; x1, y1 exclusive) and its depth rank."""

    x0: int
    y0: int
    x1: int
    y1: int
    name: str


@dataclass(frozen=True)
class SceneObject:
    """One textured ellipse: size as a fraction of height, centre row as a fraction of height, speed in widths/s."""

    name: str
    size: float
    row: float
    speed: float
    phase: float
    sharp: bool


@dataclass
class Scene:
    """A deterministic scene: frame(i) gives the RGB image and the objects' boxes (nearest last)."""

    width: int
    height: int
    fps: int
    seed: int = 0
    pan_speed: float = 0.03
    objects: tuple[SceneObject, ...] = (
        SceneObject("mid", 0.22, 0.45, 0.10, 0.15, True),
        SceneObject("near", 0.36, 0.70, 0.25, 0.55, True),
    )
    _background: RGB = field(init=False, repr=False)
    _textures: dict[str, RGB] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        rng = np.random.default_rng(self.seed)
        pan_px = int(np.ceil(self.pan_speed * self.width * 600)) + 2  # room for 10 minutes of pan
        bg_w = self.width + min(pan_px, 8 * self.width)
        cell, blur = max(4, self.width // 40), 1.5 * self.width / 320
        self._background = _landscape(rng, self.height, bg_w, cell=cell, blur=blur)
        self._textures = {}
        tints = {"mid": (200, 140, 60), "near": (190, 60, 70)}
        for obj in self.objects:
            side = max(8, int(obj.size * self.height))
            tint = tints.get(obj.name, (160, 160, 160))
            self._textures[obj.name] = _texture(rng, side, side, cell=max(2, side // 8), blur=0.0, checker=obj.sharp,
                                                tint=tint)

    def frame(self, index: int) -> tuple[RGB, list[Box]]:
        """The RGB image (height x width x 3) of frame ``index`` and the boxes of the objects drawn in it."""
        t = index / self.fps
        bg_w = self._background.shape[1]
        offset = round(self.pan_speed * self.width * t) % max(1, bg_w - self.width)
        img = np.ascontiguousarray(self._background[:, offset : offset + self.width])
        boxes: list[Box] = []
        for obj in self.objects:
            tex = self._textures[obj.name]
            side = tex.shape[0]
            travel = max(1, self.width - side)
            pos = (obj.phase + obj.speed * self.width * t / travel) % 2.0
            x0 = round((pos if pos <= 1.0 else 2.0 - pos) * travel)  # bounce between the edges
            y0 = int(np.clip(round(obj.row * self.height - side / 2), 0, self.height - side))
            mask = np.zeros((side, side), np.uint8)
            cv2.ellipse(mask, (side // 2, side // 2), (side // 2 - 1, side // 2 - 1), 0, 0, 360, 255, -1)
            region = img[y0 : y0 + side, x0 : x0 + side]
            region[mask > 0] = tex[mask > 0]
            boxes.append(Box(x0, y0, x0 + side, y0 + side, obj.name))
        return img, boxes


def _texture(rng: np.random.Generator, h: int, w: int, cell: int, blur: float, checker: bool = False,
             tint: tuple[int, int, int] = (128, 128, 128), noise: int = 20) -> RGB:
    """Value noise at ``cell`` px scale around ``tint`` plus fine grain (optionally a checkerboard), then blurred."""
    coarse = rng.integers(-70, 71, size=(h // cell + 2, w // cell + 2, 1), dtype=np.int16)
    hue = rng.integers(-25, 26, size=(h // cell + 2, w // cell + 2, 3), dtype=np.int16)
    base = (coarse + hue).astype(np.float32)
    big = cv2.resize(base, (w + 2 * cell, h + 2 * cell), interpolation=cv2.INTER_CUBIC)
    tex = big[cell : cell + h, cell : cell + w]
    grain = rng.integers(-noise, noise + 1, size=(h, w, 1), dtype=np.int16)
    out = np.clip(tex + np.array(tint, np.float32) + grain, 0, 255).astype(np.uint8)
    if checker:
        yy, xx = np.mgrid[0:h, 0:w]
        board = (((yy // max(2, h // 6)) + (xx // max(2, w // 6))) % 2).astype(bool)
        out[board] = out[board] // 2 + 20
    if blur > 0:
        out = cv2.GaussianBlur(out, (0, 0), blur)
    return np.ascontiguousarray(out)


def _landscape(rng: np.random.Generator, h: int, w: int, cell: int, blur: float) -> RGB:
    """A far backdrop: soft sky over textured ground, out of focus (blurred by ``blur`` px)."""
    ground = _texture(rng, h, w, cell, 0.0, tint=(96, 120, 70))
    sky = _texture(rng, h, w, cell * 4, 0.0, tint=(150, 185, 230), noise=4)
    rows = np.arange(h, dtype=np.float32)[:, None, None] / h
    horizon = 0.38 + 0.04 * np.sin(np.arange(w, dtype=np.float32) * (6.0 / w))[None, :, None]
    alpha = np.clip((rows - horizon) * 12.0, 0.0, 1.0)
    out = (sky * (1.0 - alpha) + ground * alpha).astype(np.uint8)
    return np.ascontiguousarray(cv2.GaussianBlur(out, (0, 0), blur) if blur > 0 else out)


def write_clip(
    path: Path,
    seconds: float = 2.0,
    width: int = 320,
    height: int = 180,
    fps: int = 25,
    audio: bool = True,
    gop: int = 25,
    seed: int = 0,
    crf: int = 18,
) -> Scene:
    """Write a 2D H.264 (yuv420p) mp4 of ``scene`` with a keyframe every ``gop`` frames and an AAC tone; returns it.

    Encoding is single-threaded so the file is byte-identical for the same arguments.
    """
    scene = Scene(width, height, fps, seed=seed)
    frames = max(1, round(seconds * fps))
    with av.open(str(path), "w", format="mp4") as out:
        video = out.add_stream("libx264", rate=fps)
        video.width, video.height, video.pix_fmt = width, height, "yuv420p"
        video.codec_context.thread_count = 1
        video.codec_context.options = {
            "preset": "superfast", "crf": str(crf), "g": str(gop), "keyint_min": str(gop), "sc_threshold": "0",
        }
        tone = out.add_stream("aac", rate=48000) if audio else None
        if tone is not None:
            tone.codec_context.thread_count = 1
            tone.layout = "stereo"
        samples_done = 0
        for i in range(frames):
            rgb, _ = scene.frame(i)
            vf = av.VideoFrame.from_ndarray(rgb, format="rgb24").reformat(format="yuv420p")
            vf.pts = i
            vf.time_base = Fraction(1, fps)
            out.mux(video.encode(vf))
            if tone is not None:
                samples_done = _mux_audio_until(out, tone, samples_done, (i + 1) / fps)
        out.mux(video.encode(None))
        if tone is not None:
            out.mux(tone.encode(None))
    return scene


def _mux_audio_until(out: av.container.OutputContainer, tone: av.AudioStream, done: int, until_s: float) -> int:
    """Encode 1024-sample frames of a 440 Hz sine until ``until_s`` seconds are covered; returns samples written."""
    rate = 48000
    while done < until_s * rate:
        t = (np.arange(done, done + 1024) / rate).astype(np.float32)
        wave = (0.2 * np.sin(2 * np.pi * 440.0 * t)).astype(np.float32)
        af = av.AudioFrame.from_ndarray(np.stack([wave, wave]), format="fltp", layout="stereo")
        af.sample_rate = rate
        af.pts = done
        af.time_base = Fraction(1, rate)
        out.mux(tone.encode(af))
        done += 1024
    return done
