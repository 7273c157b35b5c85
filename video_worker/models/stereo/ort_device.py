"""Where an ONNX depth network runs (``STEREO_DEVICE``): onnxruntime's execution providers and their options.

``cpu`` is onnxruntime's CPU provider as before. ``cuda`` / ``cuda:N`` is the CUDA provider of ``onnxruntime-gpu``
on GPU N, with a capped memory arena and cuDNN's kernel search as set; ``STEREO_TENSORRT=on`` puts the TensorRT
provider first (engines cached on disk, fp16 with ``STEREO_FP16=on``), the CUDA provider taking the nodes it leaves.
A provider asked for that this onnxruntime lacks, or could not start, is one ``ConfigError`` line at start-up
naming the setting and what to install.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from video_worker.errors import ConfigError

from .settings import StereoSettings, load_settings

CPU, CUDA, TENSORRT = "CPUExecutionProvider", "CUDAExecutionProvider", "TensorrtExecutionProvider"
GIB = 1 << 30
DEFAULT_TRT_CACHE = Path("~/.cache/video-worker/tensorrt")
INSTALL_GPU = ("pip uninstall -y onnxruntime && pip install 'onnxruntime-gpu[cuda,cudnn]' (CUDA 13, NVIDIA driver "
               "580+; for CUDA 12: 'onnxruntime-gpu[cuda,cudnn]<1.27')")
"""The GPU build from PyPI; its extras bring the CUDA and cuDNN libraries as pip packages. Up to 1.26 it is built
for CUDA 12, from 1.27 for CUDA 13 (which needs an NVIDIA driver of the 580 series or newer)."""


@dataclass(frozen=True)
class DeviceOptions:
    """The ``STEREO_DEVICE`` / ``STEREO_CUDA_*`` / ``STEREO_TENSORRT*`` / ``STEREO_FP16`` settings for onnxruntime."""

    device: str = "cpu"
    mem_limit_gib: float | None = None
    conv_algo_search: str = "exhaustive"
    arena: str = "same_as_requested"
    tensorrt: bool = False
    tensorrt_cache_dir: Path | None = None
    fp16: bool = False

    @classmethod
    def from_settings(cls, s: StereoSettings) -> DeviceOptions:
        """The options the settings give."""
        return cls(device=s.device, mem_limit_gib=s.cuda_mem_limit_gib, conv_algo_search=s.cudnn_conv_algo_search,
                   arena=s.cuda_arena, tensorrt=s.tensorrt, tensorrt_cache_dir=s.tensorrt_cache_dir, fp16=s.fp16)

    @property
    def on_gpu(self) -> bool:
        """True for ``cuda`` / ``cuda:N``."""
        return self.device != "cpu"

    @property
    def device_id(self) -> int:
        """The GPU's index (0 for ``cuda``)."""
        return int(self.device.partition(":")[2] or 0)

    @property
    def tag(self) -> str:
        """What the options add to the estimator's version: nothing on CPU (its bytes are unchanged), else the
        precision TensorRT builds in."""
        return ":fp16" if self.on_gpu and self.tensorrt and self.fp16 else ""

    def providers(self, available: list[str], ort_version: str) -> list[str | tuple[str, dict[str, Any]]]:
        """onnxruntime's ``providers`` argument, best first; ``ConfigError`` when one asked for is missing."""
        if not self.on_gpu:
            return [CPU]
        if CUDA not in available:
            raise ConfigError(f"STEREO_DEVICE={self.device}: onnxruntime {ort_version} has no CUDA execution "
                              f"provider (it has {', '.join(available)}); install the GPU build: {INSTALL_GPU}")
        if self.tensorrt and TENSORRT not in available:
            raise ConfigError(f"STEREO_TENSORRT=on: onnxruntime {ort_version} has no TensorRT execution provider; "
                              "install onnxruntime-gpu (its TensorRT provider) or set STEREO_TENSORRT=off")
        cuda: dict[str, Any] = {"device_id": self.device_id,
                                "cudnn_conv_algo_search": self.conv_algo_search.upper(),
                                "arena_extend_strategy": "kSameAsRequested" if self.arena == "same_as_requested"
                                else "kNextPowerOfTwo",
                                "do_copy_in_default_stream": True}
        if self.mem_limit_gib is not None:
            cuda["gpu_mem_limit"] = int(self.mem_limit_gib * GIB)
        chain: list[str | tuple[str, dict[str, Any]]] = [(CUDA, cuda), CPU]
        if self.tensorrt:
            cache = (self.tensorrt_cache_dir or DEFAULT_TRT_CACHE).expanduser()
            try:
                cache.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise ConfigError(f"STEREO_TENSORRT_CACHE_DIR={str(cache)!r}: cannot be created ({exc.strerror})"
                                  ) from None
            trt: dict[str, Any] = {"device_id": self.device_id, "trt_engine_cache_enable": True,
                                   "trt_engine_cache_path": str(cache), "trt_timing_cache_enable": True,
                                   "trt_timing_cache_path": str(cache), "trt_fp16_enable": self.fp16}
            if self.mem_limit_gib is not None:
                trt["trt_max_workspace_size"] = int(self.mem_limit_gib * GIB)
            chain.insert(0, (TENSORRT, trt))
        return chain

    def check_started(self, started: list[str]) -> None:
        """``ConfigError`` when the session fell back from a provider asked for (onnxruntime does so silently when
        the driver, a GPU or the CUDA/cuDNN/TensorRT libraries are missing)."""
        if not self.on_gpu:
            return
        if CUDA not in started:
            raise ConfigError(f"STEREO_DEVICE={self.device}: onnxruntime-gpu could not start CUDA on GPU "
                              f"{self.device_id} (no NVIDIA driver or no such GPU, or the CUDA / cuDNN libraries "
                              f"it was built for are missing: {INSTALL_GPU}); or set STEREO_DEVICE=cpu")
        if self.tensorrt and TENSORRT not in started:
            raise ConfigError("STEREO_TENSORRT=on: onnxruntime-gpu could not start TensorRT (its libraries are "
                              "missing: install the TensorRT version onnxruntime-gpu was built for, e.g. pip install "
                              "tensorrt-cu12-libs); or set STEREO_TENSORRT=off")


def preload_gpu_libraries(ort: Any) -> None:
    """Load the CUDA and cuDNN libraries of the ``nvidia-*`` pip packages (``onnxruntime-gpu[cuda,cudnn]``) before
    a CUDA session is made, where this onnxruntime can (1.21 and later); system libraries work without."""
    preload = getattr(ort, "preload_dlls", None)
    if callable(preload):
        with contextlib.suppress(OSError):  # one it found but could not load: the session's check says what
            preload()


def check_settings() -> StereoSettings:
    """The worker's start-up check of ``MODEL=stereo``, before any process builds it: the ``STEREO_*`` settings
    and, for a GPU, that this onnxruntime has the providers asked for (``ConfigError``, one line)."""
    settings = load_settings()
    options = DeviceOptions.from_settings(settings)
    if options.on_gpu and settings.depth != "heuristic":
        import onnxruntime as ort

        options.providers(ort.get_available_providers(), ort.__version__)
    return settings
