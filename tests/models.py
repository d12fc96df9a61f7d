"""Tiny random models for runtime tests (real-model tests use the bundled default model)."""

from __future__ import annotations

from pathlib import Path


def tiny_checkpoint(path: Path, width: int = 4, depth: int = 2, seed: int = 0, **configs) -> Path:
    import torch

    from edgeseg.checkpoint import save_checkpoint
    from edgeseg.model import UNet, UNetConfig

    torch.manual_seed(seed)
    net = UNet(UNetConfig(width=width, depth=depth))
    for m in net.modules():  # non-trivial BatchNorm statistics, so that folding matters
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.2, 0.2)
            m.running_var.uniform_(0.5, 1.5)
    return save_checkpoint(path, net.eval(), **configs)


def renamed_input_onnx(src: Path, dst: Path, name: str = "input") -> Path:
    """A copy of an edgeseg ONNX model whose input tensor is called ``name`` (not ``image``)."""
    import onnx

    model = onnx.load(str(src))
    old = model.graph.input[0].name
    model.graph.input[0].name = name
    for node in model.graph.node:
        node.input[:] = [name if i == old else i for i in node.input]
    onnx.save(model, str(dst))
    return dst


def shaped_onnx(dst: Path, metadata_from: Path, input_shape: list, output_channels: int = 3) -> Path:
    """A runnable 1x1 Conv + Softmax ONNX model with the given input shape (ints fixed, strings free)
    and the edgeseg metadata of ``metadata_from``: for the backend's shape checks."""
    import numpy as np
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    from edgeseg.converters.onnx_export import onnx_info, set_metadata

    cin = input_shape[1] if isinstance(input_shape[1], int) else 1
    w = numpy_helper.from_array(np.full((output_channels, cin, 1, 1), 0.5, np.float32), "w")
    out_shape = [input_shape[0], output_channels, input_shape[2], input_shape[3]]
    graph = helper.make_graph(
        [helper.make_node("Conv", ["image", "w"], ["logits"]),
         helper.make_node("Softmax", ["logits"], ["probs"], axis=1)], "g",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, input_shape)],
        [helper.make_tensor_value_info("probs", TensorProto.FLOAT, out_shape)], initializer=[w])
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    proto.ir_version = 8
    set_metadata(proto, onnx_info(metadata_from))
    onnx.save(proto, str(dst))
    return dst
