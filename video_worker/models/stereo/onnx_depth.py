"""Depth from an ONNX network (Depth-Anything-V2 style exports) with onnxruntime: CUDA when present, else CPU."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import numpy.typing as npt

from video_worker.errors import ConfigError, TransientError

from .depth import Depths, Frames
from .settings import file_digest

# Input N x 3 x H x W float32 RGB, ImageNet mean/std normalised; H, W fixed by the model or, when dynamic, the working
# size rounded to multiples of 14 (the ViT patch). Output N x H x W or N x 1 x H x W relative inverse depth (larger =
# nearer). Relative depth has an unknown scale and shift per frame, so each map is scaled by its 2nd..98th percentile
# range, and that range is smoothed frame to frame (exponential moving average) so the depth does not pump.

MEAN = np.array([0.485, 0.456, 0.406], np.float32)
STD = np.array([0.229, 0.224, 0.225], np.float32)
PATCH = 14
RANGE_KEEP = 0.8
"""Weight of the previous frames' depth range in the moving average of the normalisation range."""
LOW_PCT, HIGH_PCT = 2.0, 98.0
_OOM_MARKERS = ("failed to allocate", "out of memory", "cudaerrormemoryallocation", "cuda_error_out_of_memory",
                "bad_alloc", "alloc_failed", "cudnn_status_alloc")


def is_out_of_memory(exc: BaseException) -> bool:
    """True when an onnxruntime error reports a failed (GPU or host) allocation."""
    text = str(exc).lower()
    return any(marker in text for marker in _OOM_MARKERS)


def _dim(value: Any) -> int | None:
    return value if isinstance(value, int) and value > 0 else None


def _is_nchw(shape: list[Any]) -> bool:
    """A rank-4 shape with 3 (or a free size) as channels, and not an NxHxWx3 one."""
    return len(shape) == 4 and _dim(shape[1]) in (3, None) and not (_dim(shape[3]) == 3 and _dim(shape[1]) != 3)


class OnnxDepth:
    """A depth network run by onnxruntime; the session is built once, in the constructor."""

    def __init__(self, model: Path, threads: int = 1, providers: list[str] | None = None) -> None:
        import onnxruntime as ort

        self._ort = ort
        available = ort.get_available_providers()
        wanted = providers or [p for p in ("CUDAExecutionProvider", "CPUExecutionProvider") if p in available]
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
        opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        opts.log_severity_level = 3
        try:
            self._session = ort.InferenceSession(str(model), sess_options=opts, providers=wanted)
        except Exception as exc:
            if is_out_of_memory(exc):
                raise TransientError(f"out of memory loading {model}: {str(exc).splitlines()[0]}") from exc
            first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise ConfigError(f"STEREO_DEPTH_MODEL={str(model)!r} cannot be loaded: {first}") from None
        inputs, outputs = self._session.get_inputs(), self._session.get_outputs()
        if len(inputs) != 1 or not _is_nchw(list(inputs[0].shape)):
            raise ConfigError(f"STEREO_DEPTH_MODEL={str(model)!r}: expected one Nx3xHxW input, got "
                              f"{[tuple(i.shape) for i in inputs]}")
        out_rank = len(outputs[0].shape) if outputs[0].shape is not None else 0
        if out_rank not in (0, 3, 4):
            raise ConfigError(f"STEREO_DEPTH_MODEL={str(model)!r}: expected an NxHxW or Nx1xHxW output, got "
                              f"{tuple(outputs[0].shape)}")
        shape = inputs[0].shape
        self._input, self._output = inputs[0].name, outputs[0].name
        self._batch, self._height, self._width = _dim(shape[0]), _dim(shape[2]), _dim(shape[3])
        self.provider = self._session.get_providers()[0]
        self.version = f"onnx-1:{file_digest(model)[:16]}:{self.provider}:{ort.__version__}"
        self.reset()

    def fork(self) -> OnnxDepth:
        """A new estimator with fresh per-segment state sharing this one's session (onnxruntime runs are
        thread-safe), for another thread."""
        twin = copy.copy(self)
        twin.reset()
        return twin

    def reset(self) -> None:
        """Forget the smoothed depth range (call at each segment start)."""
        self._range: tuple[float, float] | None = None

    def input_size(self, w: int, h: int) -> tuple[int, int]:
        """The network's (width, height) for frames of (w, h): fixed by the model, or rounded to 14-multiples."""
        nw = self._width or max(PATCH, round(w / PATCH) * PATCH)
        nh = self._height or max(PATCH, round(h / PATCH) * PATCH)
        return nw, nh

    def estimate(self, frames: Frames) -> Depths:
        """Depth (Nxhxw float32, 0 far .. 1 near) for consecutive RGB frames at the working resolution."""
        n, h, w = frames.shape[:3]
        raw = self._infer(self._prepare(frames))
        out = np.empty((n, h, w), np.float32)
        for i in range(n):
            out[i] = self._normalise(cv2.resize(raw[i], (w, h), interpolation=cv2.INTER_LINEAR))
        return out

    def _prepare(self, frames: Frames) -> npt.NDArray[np.float32]:
        n, h, w = frames.shape[:3]
        nw, nh = self.input_size(w, h)
        blob = np.empty((n, 3, nh, nw), np.float32)
        for i in range(n):
            img = frames[i] if (nw, nh) == (w, h) else cv2.resize(frames[i], (nw, nh), interpolation=cv2.INTER_AREA)
            norm = (img.astype(np.float32) * np.float32(1.0 / 255.0) - MEAN) / STD
            blob[i] = norm.transpose(2, 0, 1)
        return blob

    def _infer(self, blob: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
        """Run the network in chunks of its fixed batch size (padding the last chunk), or all at once."""
        n = len(blob)
        step = self._batch or n
        maps: list[npt.NDArray[np.float32]] = []
        for start in range(0, n, step):
            chunk = blob[start : start + step]
            real = len(chunk)
            if real < step:
                chunk = np.concatenate([chunk, np.repeat(chunk[-1:], step - real, axis=0)])
            try:
                result = self._session.run([self._output], {self._input: chunk})[0]
            except Exception as exc:
                if is_out_of_memory(exc):
                    raise TransientError(f"depth network out of memory: {str(exc).splitlines()[0]}") from exc
                raise
            result = np.asarray(result, np.float32)
            if result.ndim == 4 and result.shape[1] == 1:
                result = result[:, 0]
            if result.ndim != 3:
                raise ConfigError(f"depth network output has shape {result.shape}, expected NxHxW or Nx1xHxW")
            maps.append(result[:real])
        return np.concatenate(maps)

    def _normalise(self, inv_depth: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
        """Scale relative inverse depth into 0..1 by a percentile range smoothed across frames."""
        finite = np.nan_to_num(inv_depth, nan=0.0, posinf=0.0, neginf=0.0)
        lo, hi = (float(v) for v in np.percentile(finite, (LOW_PCT, HIGH_PCT)))
        if self._range is not None:
            lo = RANGE_KEEP * self._range[0] + (1.0 - RANGE_KEEP) * lo
            hi = RANGE_KEEP * self._range[1] + (1.0 - RANGE_KEEP) * hi
        self._range = (lo, hi)
        span = hi - lo if hi - lo > 1e-6 else 1.0
        scaled: npt.NDArray[np.float32] = (finite - np.float32(lo)) * np.float32(1.0 / span)
        return np.clip(scaled, 0.0, 1.0).astype(np.float32)
