"""The ONNX estimator's device settings on a CPU-only onnxruntime: the provider chain and its options, the one-line
error for a GPU this onnxruntime cannot use, I/O binding (through onnxruntime's real binding API, bound on the CPU),
out-of-memory batches retried in halves with the same output, and the fingerprint."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import pytest

from tests.support.tiny_onnx import fixed_conv_model, mean_resize_model
from video_worker.errors import ConfigError, PermanentError, TransientError
from video_worker.models.stereo import StereoModel, load_settings
from video_worker.models.stereo.onnx_depth import OnnxDepth
from video_worker.models.stereo.ort_device import CPU, CUDA, TENSORRT, DeviceOptions
from video_worker.models.stereo.ort_run import BatchRunner, is_out_of_memory
from video_worker.models.stereo.versions import fingerprint

ROOT = Path(__file__).resolve().parents[2]


def frames(n: int, h: int = 54, w: int = 96) -> np.ndarray:
    """Frames that differ from each other, so a reordering or a mix-up between frames would show."""
    rng = np.random.default_rng(7)
    return rng.integers(0, 256, (n, h, w, 3), dtype=np.uint8)


class OomAbove:
    """A real onnxruntime session whose ``run`` fails as the CUDA provider does when a batch is larger than
    ``fits`` (the error text of onnxruntime's CUDA allocator); it counts the batch sizes it was given."""

    def __init__(self, session: Any, fits: int, text: str) -> None:
        self.session, self.fits, self.text, self.sizes = session, fits, text, []

    def run(self, names: list[str], feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        n = len(next(iter(feeds.values())))
        self.sizes.append(n)
        if n > self.fits:
            raise RuntimeError(self.text)
        return list(self.session.run(names, feeds))

    def __getattr__(self, name: str) -> Any:
        return getattr(self.session, name)


CUDA_OOM_TEXTS = [
    "[ONNXRuntimeError] : 6 : RUNTIME_EXCEPTION : Non-zero status code returned while running Conv node. "
    "Name:'/conv1' Status Message: CUDA failure 2: out of memory ; GPU=0 ; hostname=h ; expr=cudaMalloc(&p, size);",
    "[ONNXRuntimeError] : 1 : FAIL : Failed to allocate memory for requested buffer of size 2147483648",
    "CUDA failure 2: cudaErrorMemoryAllocation",
]


@pytest.mark.parametrize("text", CUDA_OOM_TEXTS)
def test_out_of_memory_batches_are_retried_in_halves_with_the_same_output(tmp_path: Path, text: str) -> None:
    path = mean_resize_model(tmp_path / "m.onnx")
    whole = OnnxDepth(path).estimate(frames(8))
    est = OnnxDepth(path, dry_run=False)
    injected = OomAbove(est._runner.session, fits=3, text=text)
    est._runner.session = injected
    split = est.estimate(frames(8))
    assert split.tobytes() == whole.tobytes()
    assert injected.sizes == [8, 4, 2, 2, 4, 2, 2]  # 8 fails, each 4 fails, the 2s run
    injected.sizes.clear()
    est.reset()
    assert est.estimate(frames(8)).tobytes() == whole.tobytes()
    assert injected.sizes == [2, 2, 2, 2]  # the next batch is cut to the size that ran, up front


def test_a_single_frame_out_of_memory_is_transient(tmp_path: Path) -> None:
    est = OnnxDepth(mean_resize_model(tmp_path / "m.onnx"), dry_run=False)
    est._runner.session = OomAbove(est._runner.session, fits=0, text=CUDA_OOM_TEXTS[0])
    with pytest.raises(TransientError, match=r"depth network out of memory: .*CUDA failure 2: out of memory"):
        est.estimate(frames(4))


def test_a_fixed_batch_is_not_split(tmp_path: Path) -> None:
    est = OnnxDepth(fixed_conv_model(tmp_path / "f.onnx", batch=4), dry_run=False)
    injected = OomAbove(est._runner.session, fits=2, text=CUDA_OOM_TEXTS[1])
    est._runner.session = injected
    with pytest.raises(TransientError, match="out of memory"):
        est.estimate(frames(4))
    assert injected.sizes == [4]


def test_other_errors_are_not_retried(tmp_path: Path) -> None:
    est = OnnxDepth(mean_resize_model(tmp_path / "m.onnx"), dry_run=False)
    injected = OomAbove(est._runner.session, fits=0, text="[ONNXRuntimeError] : 2 : INVALID_ARGUMENT : bad rank")
    est._runner.session = injected
    with pytest.raises(PermanentError, match="bad rank"):
        est.estimate(frames(4))
    assert injected.sizes == [4]


def test_cuda_failure_codes_other_than_2_are_not_out_of_memory() -> None:
    assert is_out_of_memory(RuntimeError("CUDA failure 2: out of memory"))
    assert not is_out_of_memory(RuntimeError("CUDA failure 209: no kernel image is available for execution"))
    assert not is_out_of_memory(RuntimeError("CUDA failure 700: an illegal memory access was encountered"))


def test_io_binding_gives_what_run_gives(tmp_path: Path) -> None:
    """The I/O binding path, through onnxruntime's real binding API (bound on the CPU here; ``cuda`` on a GPU)."""
    session = ort.InferenceSession(str(mean_resize_model(tmp_path / "m.onnx")), providers=[CPU])
    blob = np.random.default_rng(1).random((3, 3, 28, 42), dtype=np.float32)
    plain = BatchRunner(session, "pixel_values", "predicted_depth", None, ort).run(blob)
    bound = BatchRunner(session, "pixel_values", "predicted_depth", None, ort, bind_on=("cpu", 0)).run(blob)
    assert bound.shape == (3, 14, 21) and bound.tobytes() == plain.tobytes()


def test_cuda_provider_options() -> None:
    opts = DeviceOptions(device="cuda:1", mem_limit_gib=6, conv_algo_search="heuristic", arena="next_power_of_two")
    chain = opts.providers([TENSORRT, CUDA, CPU], "1.31.1")
    assert chain == [(CUDA, {"device_id": 1, "cudnn_conv_algo_search": "HEURISTIC", "gpu_mem_limit": 6 << 30,
                             "arena_extend_strategy": "kNextPowerOfTwo", "do_copy_in_default_stream": True}), CPU]
    assert opts.tag == ""


def test_tensorrt_first_with_a_cache_and_fp16(tmp_path: Path) -> None:
    cache = tmp_path / "engines"
    opts = DeviceOptions(device="cuda", tensorrt=True, tensorrt_cache_dir=cache, fp16=True)
    chain = opts.providers([TENSORRT, CUDA, CPU], "1.31.1")
    assert [p if isinstance(p, str) else p[0] for p in chain] == [TENSORRT, CUDA, CPU]
    trt = chain[0][1]  # type: ignore[index]
    assert trt["trt_fp16_enable"] is True and trt["trt_engine_cache_enable"] is True
    assert trt["trt_engine_cache_path"] == str(cache) and cache.is_dir()
    assert opts.tag == ":fp16"


def test_cpu_is_the_cpu_provider_alone() -> None:
    assert DeviceOptions().providers([TENSORRT, CUDA, CPU], "1.31.1") == [CPU]


def test_cuda_on_an_onnxruntime_without_it_is_one_line(tmp_path: Path) -> None:
    assert CUDA not in ort.get_available_providers()  # this test machine's onnxruntime is the CPU build
    with pytest.raises(ConfigError) as info:
        OnnxDepth(mean_resize_model(tmp_path / "m.onnx"), device=DeviceOptions(device="cuda"))
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith("STEREO_DEVICE=cuda: onnxruntime ") and "has no CUDA execution provider" in message
    assert "pip install 'onnxruntime-gpu[cuda,cudnn]'" in message


def test_a_provider_that_did_not_start_is_one_line() -> None:
    with pytest.raises(ConfigError, match=r"^STEREO_DEVICE=cuda:2: onnxruntime-gpu could not start CUDA on GPU 2 "):
        DeviceOptions(device="cuda:2").check_started([CPU])
    with pytest.raises(ConfigError, match=r"^STEREO_TENSORRT=on: onnxruntime-gpu could not start TensorRT"):
        DeviceOptions(device="cuda", tensorrt=True).check_started([CUDA, CPU])
    with pytest.raises(ConfigError, match=r"^STEREO_TENSORRT=on: onnxruntime .* has no TensorRT"):
        DeviceOptions(device="cuda", tensorrt=True).providers([CUDA, CPU], "1.31.1")


def test_the_converter_stops_at_start_up_naming_the_setting() -> None:
    """The shipped default (hybrid: FastDepth) with STEREO_DEVICE=cuda, through the worker's own start-up path."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "STEREO_DEVICE": "cuda"}
    code = "from video_worker.models.stereo import from_settings; from_settings()"
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode != 0 and "ConfigError: STEREO_DEVICE=cuda: onnxruntime" in proc.stderr
    with pytest.raises(ConfigError, match=r"^STEREO_DEVICE=cuda: .*pip install 'onnxruntime-gpu"):
        StereoModel(load_settings({"STEREO_DEVICE": "cuda"}))


@pytest.mark.parametrize(("env", "message"), [
    ({"STEREO_DEVICE": "gpu"}, "STEREO_DEVICE='gpu': must be cpu, cuda or cuda:N"),
    ({"STEREO_TENSORRT": "on"}, "STEREO_TENSORRT=on need a GPU: set STEREO_DEVICE=cuda"),
    ({"STEREO_DEVICE": "cuda", "STEREO_FP16": "on"}, "STEREO_FP16=on needs STEREO_TENSORRT=on"),
    ({"STEREO_DEVICE": "cuda", "STEREO_CUDA_MEM_LIMIT_GIB": "0.1"}, "STEREO_CUDA_MEM_LIMIT_GIB='0.1': must be"),
    ({"STEREO_DEVICE": "cuda", "STEREO_CUDA_ARENA": "big"}, "STEREO_CUDA_ARENA='big'"),
])
def test_bad_device_settings_are_one_line(env: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_settings(env)
    assert message in str(info.value) and "\n" not in str(info.value)


def test_device_settings_parse() -> None:
    s = load_settings({"STEREO_DEVICE": "CUDA:3", "STEREO_TENSORRT": "on", "STEREO_FP16": "on",
                       "STEREO_CUDA_MEM_LIMIT_GIB": "12.5", "STEREO_CUDNN_CONV_ALGO_SEARCH": "heuristic"})
    opts = DeviceOptions.from_settings(s)
    assert (opts.device, opts.device_id, opts.tensorrt, opts.fp16, opts.mem_limit_gib) == ("cuda:3", 3, True, True,
                                                                                              12.5)
    assert opts.conv_algo_search == "heuristic" and opts.arena == "same_as_requested"


def test_the_fingerprint_names_the_device_and_precision_but_not_on_cpu() -> None:
    cpu = load_settings({})
    assert "device" not in cpu.output_fields() and "tensorrt" not in cpu.output_fields()
    cuda = load_settings({"STEREO_DEVICE": "cuda"})
    other_gpu = load_settings({"STEREO_DEVICE": "cuda:1", "STEREO_CUDA_MEM_LIMIT_GIB": "4"})
    fp16 = load_settings({"STEREO_DEVICE": "cuda", "STEREO_TENSORRT": "on", "STEREO_FP16": "on"})
    prints = {name: fingerprint(s, "onnx-2:x") for name, s in
              (("cpu", cpu), ("cuda", cuda), ("other_gpu", other_gpu), ("fp16", fp16))}
    assert prints["cuda"] == prints["other_gpu"]  # which GPU and how much memory do not shape the output
    assert len({prints["cpu"], prints["cuda"], prints["fp16"]}) == 3
    assert "device" not in load_settings({"STEREO_DEPTH": "heuristic", "STEREO_DEVICE": "cuda"}).output_fields()


def test_warm_up_runs_one_batch_of_the_working_size(tmp_path: Path) -> None:
    est = OnnxDepth(mean_resize_model(tmp_path / "m.onnx"), dry_run=False)
    seen: list[tuple[int, ...]] = []
    session = est._runner.session

    class Recording:
        def run(self, names: list[str], feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
            seen.append(next(iter(feeds.values())).shape)
            return list(session.run(names, feeds))

    est._runner.session = Recording()
    est.warm_up(320, 4)
    assert seen == [(4, 3, 182, 322)]  # 320x180 (16:9) in multiples of 14, all four frames in one run


def test_the_worker_start_up_check_names_a_missing_provider(monkeypatch: pytest.MonkeyPatch) -> None:
    """``check_model`` runs in the worker's main process before any model process starts."""
    from video_worker.inference import check_model

    monkeypatch.setenv("STEREO_DEVICE", "cuda:1")
    with pytest.raises(ConfigError, match=r"^STEREO_DEVICE=cuda:1: onnxruntime .* has no CUDA execution provider"):
        check_model("stereo")
    monkeypatch.setenv("STEREO_DEPTH", "heuristic")  # no network: nothing to run on the GPU
    check_model("stereo")
