"""Depth from an ONNX network with onnxruntime (CUDA when present, else CPU), in the conventions it declares."""

from __future__ import annotations

import copy
import re
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import numpy.typing as npt

from video_worker.errors import ConfigError, PermanentError, TransientError

from .depth import Depths, Frames, working_size
from .ort_device import DeviceOptions, preload_gpu_libraries
from .ort_run import BatchRunner, binding_device, is_out_of_memory
from .settings import file_digest, parse_size

# The network's conventions are declared, not guessed (settings, else the model's ONNX metadata, else the defaults,
# which fit the Depth-Anything-V2 exports):
#   input scaling   STEREO_DEPTH_NORMALIZE / video_worker.normalize: imagenet ((x/255 - mean)/std) | unit (x/255)
#   output          STEREO_DEPTH_OUTPUT / video_worker.output: inverse (larger = nearer) | depth (larger = farther,
#                   turned into nearness 1/max(d, eps) first)
#   input size      STEREO_DEPTH_INPUT_SIZE / video_worker.input_size: a fixed WxH the frames are resized to, or
#                   STEREO_DEPTH_MULTIPLE / video_worker.multiple: free sizes rounded to a multiple (default 14);
#                   dimensions the model fixes win.
# The layout (Nx3xHxW or NxHxWx3) is read from the model's input shape. A dry run on a dummy frame when the estimator
# is built turns a mismatch into one ConfigError line naming the setting to change, not a traceback mid-segment.
# Relative depth has an unknown scale and shift per frame, so each map is scaled by its 2nd..98th percentile range,
# and that range is smoothed frame to frame (exponential moving average) so the depth does not pump.

MEAN = np.array([0.485, 0.456, 0.406], np.float32)
STD = np.array([0.229, 0.224, 0.225], np.float32)
PATCH = 14
DEFAULT_NORMALIZE, DEFAULT_OUTPUT, DEFAULT_MULTIPLE = "imagenet", "inverse", PATCH
NORMALIZE_CHOICES, OUTPUT_CHOICES = ("imagenet", "unit"), ("inverse", "depth")
META_NORMALIZE, META_OUTPUT = "video_worker.normalize", "video_worker.output"
META_INPUT_SIZE, META_MULTIPLE = "video_worker.input_size", "video_worker.multiple"
"""Keys of the model's ONNX ``metadata_props`` that declare its conventions (the environment wins)."""
DEPTH_EPS = 1e-3
"""Depth output: nearness is 1/max(d, DEPTH_EPS x the frame's 98th-percentile depth)."""
PROBE_ASPECT = 9 / 16
"""The dry run uses a frame of the working width and this aspect (16:9 landscape)."""
SUGGEST_MULTIPLES = (8, 14, 16, 32, 64)
RANGE_KEEP = 0.8
"""Weight of the previous frames' depth range in the moving average of the normalisation range."""
LOW_PCT, HIGH_PCT = 2.0, 98.0
def ort_reason(exc: BaseException) -> str:
    """onnxruntime's error, short and on one line: the failing node and its status message, without source paths."""
    text = " ".join(str(exc).split()) or type(exc).__name__
    node = re.search(r"running (\S+) node\. Name:'([^']*)'", text)
    detail = text.split("Status Message:", 1)[1] if "Status Message:" in text else text
    detail = re.sub(r"^\s*\S+\.(?:h|cc|cpp|cu):\d+\s*", "", detail)
    if " was false. " in detail:
        detail = detail.split(" was false. ", 1)[1]
    detail = re.sub(r"^\[ONNXRuntimeError\] : \d+ : \w+ : ", "", detail).strip()
    if len(detail) > 160:
        detail = detail[:157] + "..."
    if node:
        where = f"at node {node.group(1)}" + (f" {node.group(2)!r}" if node.group(2) else "")
        return f"{where}: {detail}"
    return detail


def _dim(value: Any) -> int | None:
    return value if isinstance(value, int) and value > 0 else None


def layout_of(shape: list[Any]) -> str | None:
    """'nchw' or 'nhwc' for a rank-4 image input (3 channels first or last; free channels read as NCHW), else None."""
    if len(shape) != 4:
        return None
    first, last = _dim(shape[1]), _dim(shape[3])
    if first == 3 or (first is None and last != 3):
        return "nchw"
    if last == 3:
        return "nhwc"
    return None


def _fmt(size: tuple[int, int]) -> str:
    return f"{size[0]}x{size[1]}"


def _probe_frame(w: int, h: int) -> npt.NDArray[np.uint8]:
    """A photo-like RGB frame for the dry run: a sky gradient, a floor, a box and some texture (deterministic)."""
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    img = np.empty((h, w, 3), np.float32)
    img[..., 0] = 90 + 80 * y / max(h - 1, 1)
    img[..., 1] = 120 + 60 * x / max(w - 1, 1)
    img[..., 2] = 200 - 100 * y / max(h - 1, 1)
    img[h // 2 :] *= 0.6
    img[h // 3 : 3 * h // 4, w // 3 : w // 2] = (180, 60, 40)
    img += 12 * (np.sin(x * 0.7) * np.cos(y * 0.5))[..., None]
    return np.clip(img, 0, 255).astype(np.uint8)


class OnnxDepth:
    """A depth network run by onnxruntime; the session is built, and tried on a dummy frame, in the constructor.

    ``normalize``, ``output``, ``input_size`` (w, h) and ``multiple`` are the ``STEREO_DEPTH_*`` settings: None takes
    the model's metadata, else the default. ``work_width`` is ``STEREO_DEPTH_WIDTH``, the dry run's frame width.
    ``device``: where it runs (``ort_device``); on a GPU a batch of ``warm_batch`` frames ``warm_width`` wide (else
    ``work_width``) is run once at the end, so the first segment does not pay for the start-up.
    """

    def __init__(self, model: Path, threads: int = 1, providers: list[str] | None = None, *,
                 normalize: str | None = None, output: str | None = None, input_size: tuple[int, int] | None = None,
                 multiple: int | None = None, work_width: int = 192, dry_run: bool = True,
                 device: DeviceOptions | None = None, warm_batch: int = 0, warm_width: int | None = None) -> None:
        import onnxruntime as ort

        self._ort = ort
        self._model = model
        self.device = device or DeviceOptions()
        if self.device.on_gpu:
            preload_gpu_libraries(ort)
        available = ort.get_available_providers()
        wanted: list[Any] = providers or self.device.providers(available, ort.__version__)
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
        opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        opts.log_severity_level = 4  # errors come back as exceptions (one line each); no second copy on stderr
        try:
            self._session = ort.InferenceSession(str(model), sess_options=opts, providers=wanted)
        except Exception as exc:
            if is_out_of_memory(exc):
                raise TransientError(f"out of memory loading {model}: {str(exc).splitlines()[0]}") from exc
            first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise ConfigError(f"STEREO_DEPTH_MODEL={str(model)!r} cannot be loaded: {first}") from None
        if providers is None:
            self.device.check_started(self._session.get_providers())
        inputs, outputs = self._session.get_inputs(), self._session.get_outputs()
        layout = layout_of(list(inputs[0].shape)) if len(inputs) == 1 and inputs[0].shape is not None else None
        if layout is None:
            raise ConfigError(f"STEREO_DEPTH_MODEL={str(model)!r}: expected one Nx3xHxW or NxHxWx3 image input, got "
                              f"{[tuple(i.shape) for i in inputs]}")
        out_rank = len(outputs[0].shape) if outputs[0].shape is not None else 0
        if out_rank not in (0, 3, 4):
            raise ConfigError(f"STEREO_DEPTH_MODEL={str(model)!r}: expected an NxHxW or Nx1xHxW output, got "
                              f"{tuple(outputs[0].shape)}")
        shape = inputs[0].shape
        self._input, self._output = inputs[0].name, outputs[0].name
        self._nhwc = layout == "nhwc"
        h_axis = 1 if self._nhwc else 2
        self._batch = _dim(shape[0])
        fixed_h, fixed_w = _dim(shape[h_axis]), _dim(shape[h_axis + 1])
        self._fixed = (fixed_w, fixed_h)
        meta = dict(self._session.get_modelmeta().custom_metadata_map or {})
        self.normalize = self._choose(normalize, meta, META_NORMALIZE, NORMALIZE_CHOICES, DEFAULT_NORMALIZE,
                                      "STEREO_DEPTH_NORMALIZE")
        self.output = self._choose(output, meta, META_OUTPUT, OUTPUT_CHOICES, DEFAULT_OUTPUT, "STEREO_DEPTH_OUTPUT")
        # Where the input size comes from, the environment first: INPUT_SIZE or MULTIPLE, else the metadata's
        # input_size or multiple, else multiples of 14. Dimensions the model fixes win over all of them.
        size, self._size_from = input_size, "env" if input_size else "default"
        self.multiple = multiple or DEFAULT_MULTIPLE
        if multiple is not None:
            self._size_from = "env"
        elif size is None and meta.get(META_INPUT_SIZE):
            size, self._size_from = self._meta_size(meta[META_INPUT_SIZE]), "metadata"
        elif size is None and meta.get(META_MULTIPLE):
            self.multiple, self._size_from = self._meta_multiple(meta[META_MULTIPLE]), "metadata"
        if size is not None and ((fixed_w and fixed_w != size[0]) or (fixed_h and fixed_h != size[1])):
            fixed = f"{fixed_w or 'W'}x{fixed_h or 'H'}"
            if self._size_from == "env":
                raise ConfigError(f"STEREO_DEPTH_INPUT_SIZE={_fmt(size)}: the network's input is fixed at {fixed}; "
                                  f"set STEREO_DEPTH_INPUT_SIZE={fixed} or leave it unset")
            raise ConfigError(f"{META_INPUT_SIZE}={_fmt(size)} in the model's metadata: the network's input is fixed "
                              f"at {fixed}; set STEREO_DEPTH_INPUT_SIZE={fixed} to override it")
        self._declared = size
        self._width = fixed_w or (size[0] if size else None)
        self._height = fixed_h or (size[1] if size else None)
        self.provider = self._session.get_providers()[0]
        conventions = f"{self.normalize},{self.output},{self._width or '*'}x{self._height or '*'}/{self.multiple}"
        self.version = (f"onnx-2:{file_digest(model)[:16]}:{conventions}:{self.provider}:{ort.__version__}"
                        f"{self.device.tag}")
        self._runner = BatchRunner(self._session, self._input, self._output, self._batch, ort,
                                   binding_device(self.device))
        self.reset()
        if dry_run:
            self.dry_run(work_width)
        if warm_batch and self.device.on_gpu:
            self.warm_up(warm_width or work_width, warm_batch)

    def warm_up(self, work_width: int, batch: int) -> None:
        """One batch of ``batch`` dummy frames of the working width (16:9) through the network, so the first
        segment does not pay for CUDA's lazy start, cuDNN's kernel search or TensorRT's engine build."""
        w, h = working_size(work_width, max(2, round(work_width * PROBE_ASPECT)), work_width)
        self._runner.run(self._prepare(np.repeat(_probe_frame(w, h)[None], batch, axis=0)))

    def _choose(self, value: str | None, meta: dict[str, str], key: str, choices: tuple[str, ...], default: str,
                env: str) -> str:
        if value is not None:
            return value
        declared = meta.get(key)
        if declared is None:
            return default
        if declared.strip().lower() not in choices:
            raise ConfigError(f"STEREO_DEPTH_MODEL={str(self._model)!r}: metadata {key}={declared!r} must be one of "
                              f"{', '.join(choices)}; set {env} to override it")
        return declared.strip().lower()

    def _meta_size(self, text: str) -> tuple[int, int]:
        try:
            return parse_size(text)
        except ValueError as exc:
            raise ConfigError(f"STEREO_DEPTH_MODEL={str(self._model)!r}: metadata {META_INPUT_SIZE}={text!r} {exc}; "
                              "set STEREO_DEPTH_INPUT_SIZE or STEREO_DEPTH_MULTIPLE to override it") from None

    def _meta_multiple(self, text: str) -> int:
        if not text.strip().isdigit() or not 1 <= int(text) <= 256:
            raise ConfigError(f"STEREO_DEPTH_MODEL={str(self._model)!r}: metadata {META_MULTIPLE}={text!r} must be a "
                              "whole number of pixels between 1 and 256; set STEREO_DEPTH_MULTIPLE to override it")
        return int(text)

    def _size_setting(self) -> str:
        """The setting that decided the input size, as the user would write it."""
        if all(self._fixed):
            return f"STEREO_DEPTH_MODEL={str(self._model)!r} (its fixed input)"
        if self._declared is not None:
            size = _fmt(self._declared)
            if self._size_from == "env":
                return f"STEREO_DEPTH_INPUT_SIZE={size}"
            return f"{META_INPUT_SIZE}={size} in the model's metadata"
        if self._size_from == "metadata":
            return f"{META_MULTIPLE}={self.multiple} in the model's metadata"
        default = " (the default)" if self._size_from == "default" else ""
        return f"STEREO_DEPTH_MULTIPLE={self.multiple}{default}"

    def dry_run(self, work_width: int = 192) -> None:
        """Run one dummy frame of the working width (16:9) through the network; ``ConfigError`` (one line, naming
        the setting to change) if the network rejects it or gives no usable depth."""
        w, h = working_size(work_width, max(2, round(work_width * PROBE_ASPECT)), work_width)
        frames = _probe_frame(w, h)[None]
        nw, nh = self.input_size(w, h)
        try:
            raw = self._run_all(self._prepare(frames))
        except TransientError:
            raise
        except Exception as exc:
            raise ConfigError(self._rejected(exc, (nw, nh), w, h)) from None
        expect = ", expected NxHxW or Nx1xHxW (with the input's aspect)"
        if raw.ndim == 4 and raw.shape[1] == 1:
            raw = raw[:, 0]
        elif raw.ndim == 4 and raw.shape[3] == 1:
            raw = raw[..., 0]
        if raw.ndim != 3 or raw.shape[0] != 1 or min(raw.shape[1:]) < 2:
            raise ConfigError(f"STEREO_DEPTH_MODEL={str(self._model)!r}: the network's output for a {nw}x{nh} input "
                              f"has shape {raw.shape}{expect}")
        out_aspect, in_aspect = raw.shape[2] / raw.shape[1], nw / nh
        if not 0.7 < out_aspect / in_aspect < 1.43:
            raise ConfigError(f"STEREO_DEPTH_MODEL={str(self._model)!r}: the network's output for a {nw}x{nh} input "
                              f"is {raw.shape[2]}x{raw.shape[1]}{expect}")
        if not np.isfinite(raw).all():
            raise ConfigError(f"STEREO_DEPTH_MODEL={str(self._model)!r}: the network's output for a {nw}x{nh} test "
                              f"frame has NaN or infinite values; check STEREO_DEPTH_NORMALIZE (now {self.normalize})")

    def _rejected(self, exc: BaseException, size: tuple[int, int], w: int, h: int) -> str:
        """The one line for a dry run the network refused, with a size it accepts when one is found."""
        line = f"{self._size_setting()}: the network rejects a {_fmt(size)} input ({ort_reason(exc)})"
        if all(self._fixed):
            return line + f"; check STEREO_DEPTH_MODEL (read as {'NHWC' if self._nhwc else 'NCHW'})"
        frames = _probe_frame(w, h)[None]
        for m in SUGGEST_MULTIPLES:
            if m == self.multiple and self._declared is None:
                continue
            fixed_w, fixed_h = self._fixed
            size = (fixed_w or max(m, round(w / m) * m), fixed_h or max(m, round(h / m) * m))
            try:
                self._run_all(self._prepare(frames, size))
            except Exception:
                continue
            if self._declared is not None:
                return line + f"; try STEREO_DEPTH_MULTIPLE={m} instead"
            return line + f"; try STEREO_DEPTH_MULTIPLE={m} or STEREO_DEPTH_INPUT_SIZE=WxH"
        return line + "; set STEREO_DEPTH_INPUT_SIZE=WxH to the size the network was exported for"

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
        """The network's (width, height) for frames of (w, h): fixed by the model or the settings, or rounded to
        multiples of ``multiple``."""
        m = self.multiple
        nw = self._width or max(m, round(w / m) * m)
        nh = self._height or max(m, round(h / m) * m)
        return nw, nh

    def estimate(self, frames: Frames) -> Depths:
        """Depth (Nxhxw float32, 0 far .. 1 near) for consecutive RGB frames at the working resolution."""
        n, h, w = frames.shape[:3]
        raw = self._infer(self._prepare(frames))
        out = np.empty((n, h, w), np.float32)
        for i in range(n):
            near = self._nearness(raw[i])
            resized = np.asarray(cv2.resize(near, (w, h), interpolation=cv2.INTER_LINEAR), np.float32)
            out[i] = self._normalise(resized)
        return out

    def _prepare(self, frames: Frames, size: tuple[int, int] | None = None) -> npt.NDArray[np.float32]:
        """The network's input blob for ``frames``, resized to ``size`` (default: ``input_size``)."""
        n, h, w = frames.shape[:3]
        nw, nh = size or self.input_size(w, h)
        blob = np.empty((n, nh, nw, 3) if self._nhwc else (n, 3, nh, nw), np.float32)
        imagenet = self.normalize == "imagenet"
        for i in range(n):
            img = frames[i] if (nw, nh) == (w, h) else cv2.resize(frames[i], (nw, nh), interpolation=cv2.INTER_AREA)
            norm = img.astype(np.float32) * np.float32(1.0 / 255.0)
            if imagenet:
                norm = (norm - MEAN) / STD
            blob[i] = norm if self._nhwc else norm.transpose(2, 0, 1)
        return blob

    def _run_all(self, blob: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
        """Run the network in chunks of its fixed batch size (padding the last chunk), or all at once (in halves
        when a batch runs out of memory)."""
        return self._runner.run(blob)

    def _infer(self, blob: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
        """The network's maps (NxHxW) for a prepared batch; a failure is one line naming the input size."""
        try:
            result = self._run_all(blob)
        except TransientError:
            raise
        except Exception as exc:
            size = (blob.shape[2], blob.shape[1]) if self._nhwc else (blob.shape[3], blob.shape[2])
            raise PermanentError(f"{self._size_setting()}: the depth network rejects a {_fmt(size)} input "
                                 f"({ort_reason(exc)})") from None
        if result.ndim == 4 and result.shape[1] == 1:
            result = result[:, 0]
        elif result.ndim == 4 and result.shape[3] == 1:
            result = result[..., 0]
        if result.ndim != 3:
            raise ConfigError(f"depth network output has shape {result.shape}, expected NxHxW or Nx1xHxW")
        return result

    def _nearness(self, raw: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
        """The network's map as 'larger = nearer': inverse depth as it is; depth d as 1/max(d, eps)."""
        if self.output == "inverse":
            return raw
        finite = np.nan_to_num(raw, nan=0.0, posinf=0.0, neginf=0.0)
        far = float(np.percentile(finite, HIGH_PCT))
        eps = max(DEPTH_EPS * far, 1e-12)
        near: npt.NDArray[np.float32] = (1.0 / np.maximum(finite, np.float32(eps))).astype(np.float32)
        return near

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
