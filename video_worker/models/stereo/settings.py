"""Settings of the stereo converter (``STEREO_*``, ``MAX_FRAME_PIXELS``), read from the environment.

Pydantic only, so the worker can check them at start-up without the video libraries.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from video_worker.errors import ConfigError
from video_worker.inference import is_import_path

MODEL_VERSION = "stereo-dibr-2"
"""Bumped whenever a code change alters output bytes for the same settings."""

BUILTIN_ESTIMATORS = ("hybrid", "heuristic", "onnx")
"""``STEREO_DEPTH`` values that name a shipped estimator (anything else is a ``package.module:factory`` path)."""
X264_PRESETS = ("ultrafast", "superfast", "veryfast", "faster", "fast", "medium", "slow", "slower", "veryslow")
Preset = Literal["ultrafast", "superfast", "veryfast", "faster", "fast", "medium", "slow", "slower", "veryslow"]


class StereoSettings(BaseSettings):
    """Every knob of the converter; each field is read from the environment variable named in its alias.

    Each field's docstring is its description (``use_attribute_docstrings``): the settings table in
    docs/stereo.md is generated from them.
    """

    model_config = SettingsConfigDict(frozen=True, extra="ignore", populate_by_name=True,
                                      use_attribute_docstrings=True)

    divergence: float = Field(2.0, validation_alias="STEREO_DIVERGENCE")
    """Largest disparity between the views (depth 0 to 1), in percent of the frame width
    (0-10)."""
    convergence: float = Field(0.5, validation_alias="STEREO_CONVERGENCE")
    """Normalised depth (0 far .. 1 near) that lands on the screen plane (zero disparity)."""
    depth_width: int = Field(192, validation_alias="STEREO_DEPTH_WIDTH")
    """Width in pixels of the frames handed to the depth estimator (height keeps the aspect ratio); 518
    for Depth-Anything."""
    depth: str = Field("hybrid", validation_alias="STEREO_DEPTH")
    """``hybrid``: a network (FastDepth, shipped, or ``STEREO_DEPTH_MODEL``) fused with the position prior and
    motion parallax; ``heuristic``: monocular cues only; ``onnx``: the network of ``STEREO_DEPTH_MODEL`` alone;
    ``package.module:factory``: an estimator of your own (``depth.DepthEstimator``), built by the factory."""
    depth_model: Path | None = Field(None, validation_alias="STEREO_DEPTH_MODEL")
    """The ``.onnx`` file: the network of ``STEREO_DEPTH=onnx``; with ``hybrid``, a network used instead of the
    shipped FastDepth."""
    depth_normalize: Literal["imagenet", "unit"] | None = Field(None, validation_alias="STEREO_DEPTH_NORMALIZE")
    """ONNX network input scaling: ``imagenet`` (``(x/255 - mean)/std``) or ``unit`` (``x/255``);
    unset: the model's metadata, else imagenet."""
    depth_output: Literal["inverse", "depth"] | None = Field(None, validation_alias="STEREO_DEPTH_OUTPUT")
    """ONNX network output: inverse depth (larger = nearer) or depth (larger = farther); unset: the model's
    metadata, else inverse."""
    depth_input_size: Annotated[tuple[int, int] | None, NoDecode] = Field(
        None, validation_alias="STEREO_DEPTH_INPUT_SIZE")
    """A fixed (width, height) the frames are resized to for the ONNX network (``WxH``)."""
    depth_multiple: int | None = Field(None, validation_alias="STEREO_DEPTH_MULTIPLE")
    """Free input sizes of the ONNX network are rounded to a multiple of this; unset: the model's
    metadata, else 14 (not with ``STEREO_DEPTH_INPUT_SIZE``)."""
    onnx_threads: int = Field(1, validation_alias="STEREO_ONNX_THREADS")
    """onnxruntime intra-op threads on CPU; fixed, because float reductions differ with the thread count."""
    batch: int = Field(4, validation_alias="STEREO_BATCH")
    """Frames per depth-estimator call; does not change the output bytes."""
    sbs: Literal["full", "half"] = Field("full", validation_alias="STEREO_SBS")
    """``full``: side by side at 2W x H; ``half``: W x H, two half-width views."""
    preset: Preset = Field("veryfast", validation_alias="STEREO_PRESET")
    """x264 preset."""
    crf: int = Field(20, validation_alias="STEREO_CRF")
    """x264 constant rate factor (0-51)."""
    encoder_threads: int = Field(1, validation_alias="STEREO_ENCODER_THREADS")
    """x264 frame threads (also used for decoding); a fixed number because x264's bitstream depends on it."""
    max_frame_pixels: int = Field(3840 * 2160, validation_alias="MAX_FRAME_PIXELS")
    """Larger inputs are rejected from the header, before decoding; 3840x2160 (4K UHD) by default
    (peak memory: docs/stereo.md, "4K")."""
    pipeline: bool = Field(True, validation_alias="STEREO_PIPELINE")
    """Decode, depth, render and encode overlap in threads (on); off: one after another in the calling thread.
    Does not change the output bytes."""
    device: str = Field("cpu", validation_alias="STEREO_DEVICE")
    """Where an ONNX depth network runs: ``cpu``, ``cuda`` (GPU 0) or ``cuda:N`` (GPU N); ``cuda`` needs
    ``onnxruntime-gpu`` instead of ``onnxruntime``."""
    cuda_mem_limit_gib: float | None = Field(None, validation_alias="STEREO_CUDA_MEM_LIMIT_GIB")
    """Cap of onnxruntime's CUDA memory arena in GiB (0.25-1024; also TensorRT's workspace), so several processes
    can share a GPU; unset: no cap."""
    cudnn_conv_algo_search: Literal["exhaustive", "heuristic", "default"] = Field(
        "exhaustive", validation_alias="STEREO_CUDNN_CONV_ALGO_SEARCH")
    """How cuDNN picks a convolution kernel per input shape: timed on the first batch of each shape (fastest
    afterwards), by heuristic, or the default kernel."""
    cuda_arena: Literal["next_power_of_two", "same_as_requested"] = Field(
        "same_as_requested", validation_alias="STEREO_CUDA_ARENA")
    """How the CUDA memory arena grows: by what a run asks for (tight), or to the next power of two (fewer
    grows)."""
    tensorrt: bool = Field(False, validation_alias="STEREO_TENSORRT")
    """``on``: onnxruntime's TensorRT provider first, CUDA for the nodes it does not take; needs the TensorRT
    libraries onnxruntime-gpu was built for."""
    tensorrt_cache_dir: Path | None = Field(None, validation_alias="STEREO_TENSORRT_CACHE_DIR")
    """Where TensorRT keeps its built engines; unset: ``~/.cache/video-worker/tensorrt``."""
    fp16: bool = Field(False, validation_alias="STEREO_FP16")
    """``on``: TensorRT builds half-precision engines (needs ``STEREO_TENSORRT=on``). The CUDA provider runs a
    network in the precision it was exported in: for fp16 there, export an fp16 model."""
    context_frames: int = Field(24, validation_alias="STEREO_CONTEXT_FRAMES")
    """Frames of the previous segment the estimator runs over before a segment, so depth does not jump at the
    cut (0: none). Its temporal state forgets 30 % a frame: 24 frames leave 0.02 % of where it started."""

    @field_validator("depth")
    @classmethod
    def _depth(cls, v: str) -> str:
        if v not in BUILTIN_ESTIMATORS and not is_import_path(v):
            raise ValueError(f"must be {', '.join(BUILTIN_ESTIMATORS)} or a package.module:factory path")
        return v

    @field_validator("divergence")
    @classmethod
    def _divergence(cls, v: float) -> float:
        if not 0.0 < v <= 10.0:
            raise ValueError("must be > 0 and <= 10 (percent of the frame width)")
        return v

    @field_validator("convergence")
    @classmethod
    def _convergence(cls, v: float) -> float:
        if not 0.0 <= v <= 1.0:
            raise ValueError("must be between 0 (far) and 1 (near)")
        return v

    @field_validator("depth_width")
    @classmethod
    def _depth_width(cls, v: int) -> int:
        if not 32 <= v <= 2048:
            raise ValueError("must be between 32 and 2048 pixels")
        return v

    @field_validator("batch")
    @classmethod
    def _batch(cls, v: int) -> int:
        if not 1 <= v <= 256:
            raise ValueError("must be between 1 and 256 frames")
        return v

    @field_validator("crf")
    @classmethod
    def _crf(cls, v: int) -> int:
        if not 0 <= v <= 51:
            raise ValueError("must be between 0 and 51")
        return v

    @field_validator("encoder_threads", mode="before")
    @classmethod
    def _encoder_threads(cls, v: Any) -> Any:
        text = str(v).strip().lower()
        if text in ("auto", "0", ""):
            raise ValueError("must be a fixed number of threads (1-16), not auto: x264's output depends on it")
        if text.isdigit() and not 1 <= int(text) <= 16:
            raise ValueError("must be between 1 and 16")
        return v

    @field_validator("depth_input_size", mode="before")
    @classmethod
    def _depth_input_size(cls, v: Any) -> Any:
        if v is None or isinstance(v, tuple | list):
            return v
        return parse_size(str(v))

    @field_validator("depth_multiple")
    @classmethod
    def _depth_multiple(cls, v: int | None) -> int | None:
        if v is not None and not 1 <= v <= 256:
            raise ValueError("must be between 1 and 256 pixels")
        return v

    @field_validator("onnx_threads")
    @classmethod
    def _onnx_threads(cls, v: int) -> int:
        if not 1 <= v <= 64:
            raise ValueError("must be a fixed number of threads between 1 and 64")
        return v

    @field_validator("context_frames")
    @classmethod
    def _context_frames(cls, v: int) -> int:
        if not 0 <= v <= 300:
            raise ValueError("must be between 0 (no context) and 300 frames")
        return v

    @field_validator("device", mode="before")
    @classmethod
    def _device(cls, v: Any) -> Any:
        text = str(v).strip().lower()
        if not re.fullmatch(r"cpu|cuda(:\d{1,2})?", text):
            raise ValueError("must be cpu, cuda or cuda:N (N: the GPU's index)")
        return text

    @field_validator("cuda_mem_limit_gib")
    @classmethod
    def _cuda_mem_limit(cls, v: float | None) -> float | None:
        if v is not None and not 0.25 <= v <= 1024:
            raise ValueError("must be between 0.25 and 1024 GiB")
        return v

    @field_validator("max_frame_pixels")
    @classmethod
    def _max_pixels(cls, v: int) -> int:
        if v < 64 * 64:
            raise ValueError("must be at least 4096 pixels")
        return v

    @model_validator(mode="after")
    def _model_path(self) -> StereoSettings:
        if self.depth == "onnx":
            if self.depth_model is None:
                raise ValueError("STEREO_DEPTH_MODEL is required when STEREO_DEPTH=onnx")
            if not self.depth_model.is_file():
                raise ValueError(f"STEREO_DEPTH_MODEL={str(self.depth_model)!r}: no such file")
        if self.device == "cpu" and (self.tensorrt or self.fp16 or self.cuda_mem_limit_gib is not None):
            used = [n for n, on in (("STEREO_TENSORRT=on", self.tensorrt), ("STEREO_FP16=on", self.fp16),
                                    ("STEREO_CUDA_MEM_LIMIT_GIB", self.cuda_mem_limit_gib is not None)) if on]
            raise ValueError(f"{' and '.join(used)} need a GPU: set STEREO_DEVICE=cuda (or cuda:N)")
        if self.fp16 and not self.tensorrt:
            raise ValueError("STEREO_FP16=on needs STEREO_TENSORRT=on (TensorRT builds fp16 engines); the CUDA "
                             "provider runs a network in the precision it was exported in: export an fp16 model")
        if self.depth_input_size is not None and self.depth_multiple is not None:
            w, h = self.depth_input_size
            raise ValueError(f"STEREO_DEPTH_INPUT_SIZE={w}x{h} and STEREO_DEPTH_MULTIPLE={self.depth_multiple} are "
                             "both set: give one (a fixed input size, or a multiple that free sizes are rounded to)")
        return self

    def output_fields(self) -> dict[str, object]:
        """The settings that shape the output bytes (batch and the pixel limit do not)."""
        fields: dict[str, object] = {
            "divergence": self.divergence, "convergence": self.convergence, "depth_width": self.depth_width,
            "depth": self.depth, "sbs": self.sbs, "preset": self.preset, "crf": self.crf,
            "encoder_threads": self.encoder_threads, "context_frames": self.context_frames,
        }
        if self.depth in ("onnx", "hybrid") and self.depth_model is not None:
            fields["depth_model_sha256"] = file_digest(self.depth_model)
            fields["onnx_threads"] = self.onnx_threads
            fields["depth_normalize"] = self.depth_normalize
            fields["depth_output"] = self.depth_output
            fields["depth_input_size"] = self.depth_input_size
            fields["depth_multiple"] = self.depth_multiple
        if self.device != "cpu" and self.depth != "heuristic":
            fields["device"] = "cuda"  # not the index: which GPU of the host ran it is not a setting of the output
            fields["tensorrt"] = self.tensorrt
            fields["fp16"] = self.fp16
        return fields


def parse_size(text: str) -> tuple[int, int]:
    """``'224x224'`` as (width, height); ``ValueError`` with the reason otherwise."""
    parts = text.strip().lower().split("x")
    if len(parts) != 2 or not all(p.strip().isdigit() for p in parts):
        raise ValueError("must be WIDTHxHEIGHT in pixels, e.g. 518x518")
    w, h = (int(p) for p in parts)
    if not (8 <= w <= 4096 and 8 <= h <= 4096):
        raise ValueError("width and height must be between 8 and 4096 pixels")
    return w, h


@lru_cache(maxsize=8)
def _digest(path: str, size: int, mtime_ns: int) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def file_digest(path: Path) -> str:
    """SHA-256 of a file's bytes, cached by path, size and modification time."""
    st = path.stat()
    return _digest(str(path), st.st_size, st.st_mtime_ns)


def _env_name(field: str) -> str:
    info = StereoSettings.model_fields[field]
    alias = info.validation_alias
    return alias if isinstance(alias, str) else field


def _problem(err: Mapping[str, Any]) -> str:
    msg = str(err["msg"]).removeprefix("Value error, ")
    loc = err.get("loc") or ()
    if not loc:
        return msg  # a model-level check: its message names its variables
    name = _env_name(str(loc[0])) if str(loc[0]) in StereoSettings.model_fields else str(loc[0])
    return f"{name}={err.get('input')!r}: {msg}"


def load_settings(values: Mapping[str, object] | None = None) -> StereoSettings:
    """Settings from ``values`` (keys are env names) or, when None, from the environment.

    Raises ``ConfigError`` whose message is one line: every bad value, ``NAME='value': reason``, joined by '; '.
    """
    try:
        if values is None:
            return StereoSettings()
        return StereoSettings.model_validate(dict(values))
    except ValidationError as exc:
        raise ConfigError("; ".join(_problem(e) for e in exc.errors())) from None
