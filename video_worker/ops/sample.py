"""A tiny synthetic MP4 for demos and tests (no encoder needed)."""

from __future__ import annotations

import struct


def _box(kind: bytes, payload: bytes) -> bytes:
    return struct.pack(">I", 8 + len(payload)) + kind + payload


def sample_segment(size: int = 64 * 1024, seed: int = 0) -> bytes:
    """An ISO-BMFF file (``ftyp`` + ``mdat``) of exactly ``size`` bytes, content varying with ``seed``."""
    ftyp = _box(b"ftyp", b"isom" + struct.pack(">I", 512) + b"isomiso2avc1mp41")
    body_len = max(0, size - len(ftyp) - 8)
    pattern = bytes((seed * 31 + i * 7) % 251 for i in range(251))
    body = (pattern * (body_len // len(pattern) + 1))[:body_len]
    return ftyp + _box(b"mdat", body)
