"""Tiny ONNX 'depth networks' built with the onnx helper API, to exercise the real onnxruntime code path."""

from __future__ import annotations

from pathlib import Path

import onnx
from onnx import TensorProto, helper

Dim = int | str


def _save(path: Path, nodes: list[onnx.NodeProto], inits: list[onnx.TensorProto], in_shape: list[Dim],
          out_shape: list[Dim]) -> Path:
    graph = helper.make_graph(
        nodes, "tiny_depth",
        [helper.make_tensor_value_info("pixel_values", TensorProto.FLOAT, in_shape)],
        [helper.make_tensor_value_info("predicted_depth", TensorProto.FLOAT, out_shape)], inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


def mean_resize_model(path: Path) -> Path:
    """Dynamic Nx3xHxW → mean over channels → resized to half size → NxH/2xW/2 ('brighter = nearer')."""
    nodes = [
        helper.make_node("ReduceMean", ["pixel_values", "axes"], ["mean"], keepdims=1),
        helper.make_node("Resize", ["mean", "", "scales"], ["small"], mode="linear"),
        helper.make_node("Squeeze", ["small", "axes"], ["predicted_depth"]),
    ]
    inits = [helper.make_tensor("axes", TensorProto.INT64, [1], [1]),
             helper.make_tensor("scales", TensorProto.FLOAT, [4], [1.0, 1.0, 0.5, 0.5])]
    return _save(path, nodes, inits, ["batch", 3, "height", "width"], ["batch", "h2", "w2"])


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


def wrong_layout_model(path: Path) -> Path:
    """An NHWC (NxHxWx3) input: not the expected layout."""
    nodes = [helper.make_node("ReduceMean", ["pixel_values", "axes"], ["predicted_depth"], keepdims=0)]
    inits = [helper.make_tensor("axes", TensorProto.INT64, [1], [3])]
    return _save(path, nodes, inits, ["batch", "height", "width", 3], ["batch", "height", "width"])
