"""A generated depth network shaped like Depth-Anything-V2-Small, for the GPU benchmark: the same kind and amount of
work per frame, random weights (its depth means nothing; its cost is what is measured).

Nx3xSxS (ImageNet-normalised RGB, S = 518 as Depth Anything's exports) → a 14x14 stride-14 patch-embedding
convolution → ``blocks`` transformer blocks (pre-norm LayerNorm, multi-head self-attention as MatMul/Softmax,
a GELU MLP of 4x the width), as ViT-S (width 384, 6 heads, 12 blocks: about 22 M weights, 1369 tokens at 518 px)
→ a convolutional head that upsamples the token map back to SxS → Nx1xSxS inverse depth. Built with the onnx
helper API (the tests' tiny networks are made the same way), opset 18, dynamic batch.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

PATCH = 14


@dataclass(frozen=True)
class VitShape:
    """The network's size: input side (a multiple of the 14 px patch), width, heads, blocks."""

    size: int = 518
    width: int = 384
    heads: int = 6
    blocks: int = 12

    @property
    def grid(self) -> int:
        """Tokens per side (37 at 518 px)."""
        return self.size // PATCH


VIT_S = VitShape()
"""Depth-Anything-V2-Small's encoder at its export size."""
TINY = VitShape(size=56, width=32, heads=2, blocks=2)
"""The dry run's: the same graph, small enough for a CPU in a second."""


class _Graph:
    """Nodes and initialisers being collected, with fresh names."""

    def __init__(self, seed: int) -> None:
        from onnx import helper

        self.helper = helper
        self.nodes: list[Any] = []
        self.inits: list[Any] = []
        self.rng = np.random.default_rng(seed)
        self._count = 0

    def name(self, stem: str) -> str:
        self._count += 1
        return f"{stem}_{self._count}"

    def const(self, stem: str, value: np.ndarray) -> str:
        from onnx import numpy_helper

        name = self.name(stem)
        self.inits.append(numpy_helper.from_array(value, name))
        return name

    def weight(self, stem: str, shape: tuple[int, ...], fan_in: int) -> str:
        return self.const(stem, (self.rng.standard_normal(shape) / math.sqrt(fan_in)).astype(np.float32))

    def op(self, kind: str, inputs: list[str], **attrs: Any) -> str:
        out = self.name(kind.lower())
        self.nodes.append(self.helper.make_node(kind, inputs, [out], **attrs))
        return out

    def layer_norm(self, x: str, width: int) -> str:
        return self.op("LayerNormalization", [x, self.const("ln_g", np.ones(width, np.float32)),
                                              self.const("ln_b", np.zeros(width, np.float32))], axis=-1)

    def linear(self, x: str, n_in: int, n_out: int) -> str:
        y = self.op("MatMul", [x, self.weight("w", (n_in, n_out), n_in)])
        return self.op("Add", [y, self.const("b", np.zeros(n_out, np.float32))])

    def shape(self, *dims: int) -> str:
        return self.const("shape", np.array(dims, np.int64))

    def gelu(self, x: str) -> str:
        """0.5 x (1 + erf(x / sqrt 2)), as opset 18 has no Gelu."""
        scaled = self.op("Mul", [x, self.const("c", np.array(1 / math.sqrt(2), np.float32))])
        one_plus = self.op("Add", [self.op("Erf", [scaled]), self.const("one", np.array(1.0, np.float32))])
        return self.op("Mul", [self.op("Mul", [x, one_plus]), self.const("half", np.array(0.5, np.float32))])

    def conv(self, x: str, n_in: int, n_out: int, k: int, stride: int = 1) -> str:
        w = self.weight("conv_w", (n_out, n_in, k, k), n_in * k * k)
        b = self.const("conv_b", np.zeros(n_out, np.float32))
        return self.op("Conv", [x, w, b], kernel_shape=[k, k], strides=[stride, stride], pads=[k // 2] * 4
                       if stride == 1 else [0, 0, 0, 0])


def _attention(g: _Graph, x: str, s: VitShape) -> str:
    head = s.width // s.heads
    qkv = g.linear(g.layer_norm(x, s.width), s.width, 3 * s.width)
    q, k, v = (g.op("Slice", [qkv, g.shape(i * s.width), g.shape((i + 1) * s.width), g.shape(2)]) for i in range(3))

    def heads(t: str) -> str:  # NxTxD -> NxHxTxd
        return g.op("Transpose", [g.op("Reshape", [t, g.shape(0, 0, s.heads, head)])], perm=[0, 2, 1, 3])

    scores = g.op("MatMul", [heads(q), g.op("Transpose", [heads(k)], perm=[0, 1, 3, 2])])
    scores = g.op("Mul", [scores, g.const("scale", np.array(1 / math.sqrt(head), np.float32))])
    mixed = g.op("MatMul", [g.op("Softmax", [scores], axis=-1), heads(v)])
    merged = g.op("Reshape", [g.op("Transpose", [mixed], perm=[0, 2, 1, 3]), g.shape(0, 0, s.width)])
    return g.op("Add", [x, g.linear(merged, s.width, s.width)])


def _mlp(g: _Graph, x: str, s: VitShape) -> str:
    hidden = g.gelu(g.linear(g.layer_norm(x, s.width), s.width, 4 * s.width))
    return g.op("Add", [x, g.linear(hidden, 4 * s.width, s.width)])


def build(path: Path, shape: VitShape = VIT_S, seed: int = 0) -> Path:
    """Write the network to ``path`` (about 88 MB for ViT-S) and return it."""
    import onnx
    from onnx import TensorProto, helper

    if shape.size % PATCH:
        raise ValueError(f"size {shape.size} must be a multiple of {PATCH} (the patch size)")
    g = _Graph(seed)
    patches = g.conv("pixel_values", 3, shape.width, PATCH, stride=PATCH)  # NxDxGxG
    tokens = g.op("Transpose", [g.op("Reshape", [patches, g.shape(0, shape.width, -1)])], perm=[0, 2, 1])
    for _ in range(shape.blocks):
        tokens = _mlp(g, _attention(g, tokens, shape), shape)
    grid = g.op("Reshape", [g.op("Transpose", [g.layer_norm(tokens, shape.width)], perm=[0, 2, 1]),
                            g.shape(0, shape.width, shape.grid, shape.grid)])
    x = g.op("Relu", [g.conv(grid, shape.width, 64, 3)])
    x = g.op("Resize", [x, "", g.const("scales", np.array([1, 1, 2, 2], np.float32))], mode="linear")
    x = g.op("Relu", [g.conv(x, 64, 32, 3)])
    x = g.op("Resize", [x, "", g.const("scales", np.array([1, 1, 7, 7], np.float32))], mode="linear")
    depth = g.conv(x, 32, 1, 1)
    g.nodes.append(helper.make_node("Identity", [depth], ["predicted_depth"]))
    graph = helper.make_graph(
        g.nodes, "vit_depth",
        [helper.make_tensor_value_info("pixel_values", TensorProto.FLOAT, ["batch", 3, shape.size, shape.size])],
        [helper.make_tensor_value_info("predicted_depth", TensorProto.FLOAT, ["batch", 1, shape.size, shape.size])],
        g.inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    model.ir_version = 8
    helper.set_model_props(model, {"video_worker.normalize": "imagenet", "video_worker.output": "inverse"})
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path
