"""Helpers for tests: read back what a file holds (streams, frames, packets)."""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import numpy.typing as npt


@dataclass
class Media:
    codec: str
    pix_fmt: str
    size: tuple[int, int]
    time_base: Fraction
    pts: list[int]
    keyframes: list[bool]
    duration: int
    audio: list[tuple[int | None, int | None, bytes]]
    audio_codec: str | None
    metadata: dict[str, str]


def probe(path: Path) -> Media:
    with av.open(str(path)) as c:
        v = c.streams.video[0]
        frames = [(f.pts, f.key_frame) for f in c.decode(v)]
    with av.open(str(path)) as c:
        audio: list[tuple[int | None, int | None, bytes]] = []
        codec = None
        if c.streams.audio:
            a = c.streams.audio[0]
            codec = a.codec_context.name
            audio = [(p.pts, p.dts, bytes(p)) for p in c.demux(a) if p.size]
        v = c.streams.video[0]
        return Media(
            codec=v.codec_context.name, pix_fmt=str(v.codec_context.pix_fmt), size=(v.width, v.height),
            time_base=Fraction(v.time_base or 1), pts=[int(p or 0) for p, _ in frames], keyframes=[bool(k) for _, k in frames],
            duration=int(v.duration or 0), audio=audio, audio_codec=codec, metadata=dict(c.metadata),
        )


def luma_frames(path: Path, limit: int | None = None) -> list[npt.NDArray[np.uint8]]:
    out: list[npt.NDArray[np.uint8]] = []
    with av.open(str(path)) as c:
        for f in c.decode(video=0):
            out.append(np.asarray(f.to_ndarray(format="gray"), np.uint8))
            if limit is not None and len(out) >= limit:
                break
    return out


def rgb_frame(path: Path, index: int) -> npt.NDArray[np.uint8]:
    with av.open(str(path)) as c:
        for i, f in enumerate(c.decode(video=0)):
            if i == index:
                return np.asarray(f.to_ndarray(format="rgb24"), np.uint8)
    raise IndexError(index)
