"""Running a depth network's session on a prepared batch: chunks of a fixed batch size, I/O binding on a GPU, and a
batch that ran out of memory retried in halves (depth per frame does not depend on the batching, so the result is
the same) before it counts as a failure."""

from __future__ import annotations

import logging
import re
from typing import Any

import numpy as np
import numpy.typing as npt

from video_worker.errors import TransientError

from .ort_device import DeviceOptions

log = logging.getLogger(__name__)

_OOM_MARKERS = ("failed to allocate", "out of memory", "cudaerrormemoryallocation", "cuda_error_out_of_memory",
                "bad_alloc", "alloc_failed", "cudnn_status_alloc")
_CUDA_OOM = re.compile(r"cuda failure 2\b")
"""``CUDA failure 2``: cudaErrorMemoryAllocation, as onnxruntime's CUDA provider words it."""


def is_out_of_memory(exc: BaseException) -> bool:
    """True when an onnxruntime error reports a failed (GPU or host) allocation."""
    text = str(exc).lower()
    return any(marker in text for marker in _OOM_MARKERS) or bool(_CUDA_OOM.search(text))


def binding_device(device: DeviceOptions) -> tuple[str, int] | None:
    """Where inputs are bound for ``device``: the GPU, or None on CPU (plain runs, as before)."""
    return ("cuda", device.device_id) if device.on_gpu else None


def _first_line(exc: BaseException) -> str:
    return str(exc).splitlines()[0] if str(exc) else type(exc).__name__


class BatchRunner:
    """Runs ``session`` (one image input, one output) on NCHW/NHWC float32 blobs and returns float32 maps.

    ``fixed_batch``: the batch size the model fixes (chunks are padded to it), None when free. ``bind_on``: a
    device (``("cuda", 0)``, from ``binding_device``) to bind the input on, the output coming straight back into
    host memory (I/O binding: onnxruntime makes no extra copies); None runs plain ``session.run``. An fp16
    network (its input typed float16) gets its input in half precision.
    """

    def __init__(self, session: Any, input_name: str, output_name: str, fixed_batch: int | None, ort: Any,
                 bind_on: tuple[str, int] | None = None) -> None:
        self.session = session
        self._input, self._output, self._fixed = input_name, output_name, fixed_batch
        self._ort, self._bind_on = ort, bind_on
        input_type = getattr(session.get_inputs()[0], "type", "tensor(float)")
        self._half = input_type == "tensor(float16)"
        self.largest_fitting: int | None = None
        """After an out-of-memory split: the size it was split to; later batches are cut to it up front."""

    def run(self, blob: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
        """The network's output for every image of ``blob``, in order."""
        n = len(blob)
        if self._fixed is None:
            step = min(n, self.largest_fitting or n)
            return np.concatenate([self._halving(blob[i : i + step]) for i in range(0, n, step)])
        maps: list[npt.NDArray[np.float32]] = []
        for start in range(0, n, self._fixed):
            chunk = blob[start : start + self._fixed]
            real = len(chunk)
            if real < self._fixed:
                chunk = np.concatenate([chunk, np.repeat(chunk[-1:], self._fixed - real, axis=0)])
            try:
                maps.append(self._once(chunk)[:real])
            except Exception as exc:
                if is_out_of_memory(exc):
                    raise TransientError(f"depth network out of memory: {_first_line(exc)}") from exc
                raise
        return np.concatenate(maps)

    def _halving(self, blob: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
        """``blob`` in one run, or, when that runs out of memory, in two halves (recursively, down to one image)."""
        try:
            return self._once(blob)
        except Exception as exc:
            if not is_out_of_memory(exc):
                raise
            if len(blob) == 1:
                raise TransientError(f"depth network out of memory: {_first_line(exc)}") from exc
            half = (len(blob) + 1) // 2
            self.largest_fitting = min(self.largest_fitting or half, half)
            log.warning("depth network out of memory on a batch of %d; retrying as %d + %d", len(blob), half,
                        len(blob) - half)
            return np.concatenate([self._halving(blob[:half]), self._halving(blob[half:])])

    def _once(self, blob: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
        x: npt.NDArray[Any] = blob.astype(np.float16) if self._half else blob
        if self._bind_on is None:
            result = self.session.run([self._output], {self._input: x})[0]
            return np.asarray(result, np.float32)
        kind, index = self._bind_on
        binding = self.session.io_binding()
        binding.bind_ortvalue_input(self._input, self._ort.OrtValue.ortvalue_from_numpy(x, kind, index))
        binding.bind_output(self._output, "cpu")
        self.session.run_with_iobinding(binding)
        return np.asarray(binding.copy_outputs_to_cpu()[0], np.float32)
