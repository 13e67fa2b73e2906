#!/usr/bin/env python3
"""A CIFAR-style ResNet-(6n+2) as ONNX, freshly initialised, without torch (light venv: numpy + onnx).

The architecture of tools/cifar_resnet.py (He et al. 2016, section 4.2; option-B projection
shortcuts), with the same initializer names as its TorchScript export (conv1.weight, bn1.*,
layer{1,2,3}.{i}.conv{1,2}.weight, .bn{1,2}.*, .shortcut.{0,1}.*, fc.weight, fc.bias), so
tools/torch_recipe.py loads it. BatchNorm is kept (epsilon 1e-5, ONNX momentum 0.9 = PyTorch's
0.1). Input `input` [N, 3, 32, 32], output `logits` [N, classes].

Initialisation, from numpy Generator(PCG64(seed)), as PyTorch initialises cifar_resnet.py:
  conv weights       kaiming_normal_(mode="fan_out", nonlinearity="relu"): normal * sqrt(2 / (out * kh * kw))
  BatchNorm          weight 1, bias 0, running_mean 0, running_var 1
  fc (nn.Linear)     weight and bias uniform(-1/sqrt(in), 1/sqrt(in))

  tools/.venv-light/bin/python tools/cifar_resnet_onnx.py --depth 56 --seed 1 --out build/models/r56_s1.onnx
"""
from __future__ import annotations

import argparse
import math
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper


class Builder:
    def __init__(self, seed: int):
        self.rng = np.random.Generator(np.random.PCG64(seed))
        self.nodes: list[onnx.NodeProto] = []
        self.inits: list[TensorProto] = []

    def init(self, name: str, a: np.ndarray) -> str:
        self.inits.append(numpy_helper.from_array(a.astype(np.float32), name))
        return name

    def conv(self, x: str, name: str, cin: int, cout: int, k: int, stride: int) -> str:
        w = self.rng.standard_normal((cout, cin, k, k)) * math.sqrt(2.0 / (cout * k * k))
        out = f"/{name}/Conv_output_0"
        self.nodes.append(helper.make_node(
            "Conv", [x, self.init(f"{name}.weight", w)], [out], name=f"/{name}/Conv",
            kernel_shape=[k, k], strides=[stride, stride], pads=[k // 2] * 4))
        return out

    def bn(self, x: str, name: str, c: int) -> str:
        args = [self.init(f"{name}.{p}", v) for p, v in
                (("weight", np.ones(c)), ("bias", np.zeros(c)), ("running_mean", np.zeros(c)),
                 ("running_var", np.ones(c)))]
        out = f"/{name}/BatchNormalization_output_0"
        self.nodes.append(helper.make_node("BatchNormalization", [x, *args], [out], name=f"/{name}/BatchNormalization",
                                           epsilon=1e-5, momentum=0.9))
        return out

    def op(self, op: str, inputs: list[str], name: str) -> str:
        out = f"/{name}/{op}_output_0"
        self.nodes.append(helper.make_node(op, inputs, [out], name=f"/{name}/{op}"))
        return out


def basic_block(b: Builder, x: str, name: str, cin: int, cout: int, stride: int) -> str:
    h = b.op("Relu", [b.bn(b.conv(x, f"{name}.conv1", cin, cout, 3, stride), f"{name}.bn1", cout)], f"{name}.relu")
    h = b.bn(b.conv(h, f"{name}.conv2", cout, cout, 3, 1), f"{name}.bn2", cout)
    skip = x
    if stride != 1 or cin != cout:
        skip = b.bn(b.conv(x, f"{name}.shortcut.0", cin, cout, 1, stride), f"{name}.shortcut.1", cout)
    return b.op("Relu", [b.op("Add", [h, skip], name)], f"{name}.relu_1")


def resnet(depth: int, classes: int, seed: int) -> onnx.ModelProto:
    if (depth - 2) % 6 != 0 or depth < 8:
        raise SystemExit(f"error: --depth {depth}: a CIFAR ResNet has depth 6n+2 (20, 32, 44, 56, 110)")
    n = (depth - 2) // 6
    b = Builder(seed)
    x = b.op("Relu", [b.bn(b.conv("input", "conv1", 3, 16, 3, 1), "bn1", 16)], "relu")
    cin = 16
    for stage, (cout, stride) in enumerate(((16, 1), (32, 2), (64, 2)), start=1):
        for i in range(n):
            x = basic_block(b, x, f"layer{stage}.{i}", cin, cout, stride if i == 0 else 1)
            cin = cout
    x = b.op("Flatten", [b.op("GlobalAveragePool", [x], "avgpool")], "flatten")
    bound = 1 / math.sqrt(64)
    w = b.init("fc.weight", b.rng.uniform(-bound, bound, (classes, 64)))
    bias = b.init("fc.bias", b.rng.uniform(-bound, bound, classes))
    b.nodes.append(helper.make_node("Gemm", [x, w, bias], ["logits"], name="/fc/Gemm", transB=1))
    graph = helper.make_graph(
        b.nodes, f"resnet{depth}_cifar",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", 3, 32, 32])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", classes])],
        b.inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], producer_name="edgetune-tools")
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--depth", type=int, default=20)
    ap.add_argument("--classes", type=int, default=10)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--out", required=True)
    a = ap.parse_args()
    out = Path(a.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(resnet(a.depth, a.classes, a.seed), out)
    print(f"wrote {out} (ResNet-{a.depth}, seed {a.seed})")


if __name__ == "__main__":
    main()
