"""Tiny ONNX 'depth networks' built with the onnx helper API, to exercise the real onnxruntime code path."""

from __future__ import annotations

from pathlib import Path

import onnx
from onnx import TensorProto, helper

Dim = int | str


def _save(path: Path, nodes: list[onnx.NodeProto], inits: list[onnx.TensorProto], in_shape: list[Dim],
          out_shape: list[Dim], metadata: dict[str, str] | None = None) -> Path:
    graph = helper.make_graph(
        nodes, "tiny_depth",
        [helper.make_tensor_value_info("pixel_values", TensorProto.FLOAT, in_shape)],
        [helper.make_tensor_value_info("predicted_depth", TensorProto.FLOAT, out_shape)], inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    model.ir_version = 8
    if metadata:
        helper.set_model_props(model, metadata)
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


def mean_resize_model(path: Path, metadata: dict[str, str] | None = None) -> Path:
    """Dynamic Nx3xHxW → mean over channels → resized to half size → NxH/2xW/2 ('brighter = nearer')."""
    nodes = [
        helper.make_node("ReduceMean", ["pixel_values", "axes"], ["mean"], keepdims=1),
        helper.make_node("Resize", ["mean", "", "scales"], ["small"], mode="linear"),
        helper.make_node("Squeeze", ["small", "axes"], ["predicted_depth"]),
    ]
    inits = [helper.make_tensor("axes", TensorProto.INT64, [1], [1]),
             helper.make_tensor("scales", TensorProto.FLOAT, [4], [1.0, 1.0, 0.5, 0.5])]
    return _save(path, nodes, inits, ["batch", 3, "height", "width"], ["batch", "h2", "w2"], metadata)


def fixed_conv_model(path: Path, batch: int = 1, height: int = 28, width: int = 42) -> Path:
    """Fixed batchx3x28x42 → 1x1 conv averaging the channels → batchx1x28x42 (an Nx1xHxW output)."""
    weight = helper.make_tensor("w", TensorProto.FLOAT, [1, 3, 1, 1], [1 / 3, 1 / 3, 1 / 3])
    nodes = [helper.make_node("Conv", ["pixel_values", "w"], ["predicted_depth"])]
    return _save(path, nodes, [weight], [batch, 3, height, width], [batch, 1, height, width])


def huge_model(path: Path) -> Path:
    """A network whose intermediate tensor cannot be allocated (~2.6 PB): a real onnxruntime allocation failure."""
    nodes = [
        helper.make_node("Unsqueeze", ["pixel_values", "ax4"], ["x5"]),
        helper.make_node("Expand", ["x5", "big"], ["xe"]),
        helper.make_node("ReduceMean", ["xe", "axes"], ["predicted_depth"], keepdims=0),
    ]
    inits = [helper.make_tensor("ax4", TensorProto.INT64, [1], [4]),
             helper.make_tensor("big", TensorProto.INT64, [5], [1, 1, 1, 1, 1 << 38]),
             helper.make_tensor("axes", TensorProto.INT64, [2], [1, 4])]
    return _save(path, nodes, inits, ["batch", 3, "height", "width"], ["batch", "height", "width"])


def nhwc_model(path: Path) -> Path:
    """An NHWC (NxHxWx3) input → mean over channels → NxHxW ('brighter = nearer')."""
    nodes = [helper.make_node("ReduceMean", ["pixel_values", "axes"], ["predicted_depth"], keepdims=0)]
    inits = [helper.make_tensor("axes", TensorProto.INT64, [1], [3])]
    return _save(path, nodes, inits, ["batch", "height", "width", 3], ["batch", "height", "width"])


def wrong_layout_model(path: Path, clip: bool = False) -> Path:
    """A rank-3 (3xHxW, no batch) input, or with ``clip`` a rank-5 NxTx3xHxW clip (a temporal video network's):
    neither NCHW nor NHWC."""
    shape: list[Dim] = ["batch", 32, 3, "height", "width"] if clip else [3, "height", "width"]
    nodes = [helper.make_node("ReduceMean", ["pixel_values", "axes"], ["predicted_depth"], keepdims=0)]
    inits = [helper.make_tensor("axes", TensorProto.INT64, [1], [len(shape) - 3])]
    return _save(path, nodes, inits, shape, shape[:-3] + shape[-2:])


def multiple_model(path: Path, block: int = 32, metadata: dict[str, str] | None = None) -> Path:
    """Dynamic Nx3xHxW → SpaceToDepth(block) → DepthToSpace → mean over channels: H and W must be multiples of
    ``block`` (like an encoder-decoder with skip additions), else onnxruntime fails mid-graph."""
    nodes = [
        helper.make_node("SpaceToDepth", ["pixel_values"], ["s2d"], blocksize=block),
        helper.make_node("DepthToSpace", ["s2d"], ["d2s"], blocksize=block, mode="DCR"),
        helper.make_node("ReduceMean", ["d2s", "axes"], ["predicted_depth"], keepdims=1),
    ]
    inits = [helper.make_tensor("axes", TensorProto.INT64, [1], [1])]
    return _save(path, nodes, inits, ["batch", 3, "height", "width"], ["batch", 1, "height", "width"], metadata)


def sqrt_model(path: Path) -> Path:
    """Square root of the mean channel: NaN for negative (ImageNet-normalised dark) input, fine for 0..1 input."""
    nodes = [
        helper.make_node("ReduceMean", ["pixel_values", "axes"], ["mean"], keepdims=0),
        helper.make_node("Sqrt", ["mean"], ["predicted_depth"]),
    ]
    inits = [helper.make_tensor("axes", TensorProto.INT64, [1], [1])]
    return _save(path, nodes, inits, ["batch", 3, "height", "width"], ["batch", "height", "width"])


def flat_output_model(path: Path) -> Path:
    """One number per image (Nx1x1x1): not a depth map."""
    nodes = [helper.make_node("ReduceMean", ["pixel_values", "axes"], ["predicted_depth"], keepdims=1)]
    inits = [helper.make_tensor("axes", TensorProto.INT64, [3], [1, 2, 3])]
    return _save(path, nodes, inits, ["batch", 3, "height", "width"], ["batch", 1, 1, 1])
