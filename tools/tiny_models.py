"""Small op-coverage ONNX models (committed whole under models/tiny/), used by export_models.py.

Each model: one float32 input with a dynamic batch dim `N`, one float32 output [N, 10] (a Softmax);
float weights from make_fixtures.fill_array (seeded by the initializer name). Built with
onnx.helper so each opset's own op forms are used; tiny_op17_torch comes from the TorchScript
exporter (what torch emits for padding, ReLU6, grouped/dilated conv, ceil-mode pooling, x.view).

  model                  opset  covers
  tiny_op9_legacy        9      Constant node, Sub/Div per-channel broadcast (mean/std), Pad (attr
                                form), Conv+bias, BatchNormalization, Clip (attr min/max), MaxPool with
                                pads, AveragePool count_include_pad=1 with pads, Slice (attr form),
                                Dropout (ratio attr), GlobalAveragePool, Squeeze/Unsqueeze (attr form),
                                Flatten, Gemm transB=1 alpha=0.5 beta=2, Sum of 3 (broadcast), Softmax 1
  tiny_op11_conv         11     Conv no bias + dilations 2 + asymmetric pads, Clip (min/max inputs,
                                and max only), grouped Conv (groups 3), depthwise Conv with auto_pad
                                SAME_UPPER stride 2, Pad (input form, constant_value 0.5), MaxPool
                                ceil_mode=1, AveragePool count_include_pad=0 asymmetric pads, Slice
                                (input form, step 2), Dropout (attr), ReduceMean axes attr keepdims=1,
                                Shape->Gather->Unsqueeze->Concat->Reshape, MatMul+Add, Softmax -1
  tiny_op13_shared       13     Mul/Add per-channel, Identity x2 sharing one Conv weight, Sum, Concat
                                of two branches, SAME_UPPER stride 2, Dropout (ratio input), Slice
                                (steps), Squeeze/Unsqueeze (input form), Shape->Gather->Cast->
                                Unsqueeze + ConstantOfShape -> Concat -> Reshape, Gemm, Softmax 1
  tiny_op17_torch        17     torch.onnx.export (TorchScript) of TinyTorch below
  tiny_op18_nhwc         18     NHWC input [N,16,16,3] + Transpose to NCHW, Sub/Div, Pad-18 with axes
                                input, Conv stride 2, BN, SAME_UPPER, MaxPool, ReduceMean axes input,
                                Flatten, MatMul+Add, Softmax 1
  tiny_op21_resblock     21     BasicBlocks (Conv no bias + BN + Relu + Add skip, 1x1 stride-2
                                shortcut), Constant value_ints, ReduceMean axes input, Reshape with
                                0 (copy) in the shape, Gemm beta=0.5, Softmax -1
"""
from __future__ import annotations

import numpy as np
import onnx
import torch
from onnx import TensorProto, helper, numpy_helper
from torch import nn

from make_fixtures import fill_array


class B:
    """Tiny graph builder: weights from fill_array, auto-named outputs."""

    def __init__(self, name: str, opset: int):
        self.name, self.opset = name, opset
        self.nodes: list[onnx.NodeProto] = []
        self.inits: list[onnx.TensorProto] = []
        self.k = 0

    def w(self, name: str, shape) -> str:
        self.inits.append(numpy_helper.from_array(fill_array(name, shape), name))
        return name

    def c(self, name: str, arr) -> str:
        self.inits.append(numpy_helper.from_array(np.asarray(arr), name))
        return name

    def n(self, op: str, ins: list[str], nout: int = 1, **attrs):
        self.k += 1
        base = f"{op.lower()}_{self.k}"
        outs = [base] if nout == 1 else [f"{base}_{i}" for i in range(nout)]
        self.nodes.append(helper.make_node(op, ins, outs, name=f"{op}_{self.k}", **attrs))
        return outs[0] if nout == 1 else outs

    def const(self, arr, **kw) -> str:
        """A Constant node holding `arr` (value tensor form)."""
        self.k += 1
        out = f"const_{self.k}"
        t = numpy_helper.from_array(np.asarray(arr), out)
        self.nodes.append(helper.make_node("Constant", [], [out], name=f"Constant_{self.k}", value=t))
        return out

    def conv_bn(self, x, prefix, cin, cout, k=3, stride=1, pad=1, relu=True):
        y = self.n("Conv", [x, self.w(f"{prefix}.conv.weight", [cout, cin, k, k])],
                   kernel_shape=[k, k], strides=[stride, stride], pads=[pad] * 4)
        y = self.bn(y, f"{prefix}.bn", cout)
        return self.n("Relu", [y]) if relu else y

    def bn(self, x, prefix, c):
        ins = [x] + [self.w(f"{prefix}.{p}", [c]) for p in ("weight", "bias", "running_mean", "running_var")]
        return self.n("BatchNormalization", ins, epsilon=1e-5, momentum=0.9)

    def model(self, in_dims, out, out_dims=("N", 10)) -> onnx.ModelProto:
        g = helper.make_graph(self.nodes, self.name,
                              [helper.make_tensor_value_info("input", TensorProto.FLOAT, list(in_dims))],
                              [helper.make_tensor_value_info(out, TensorProto.FLOAT, list(out_dims))],
                              self.inits)
        ops = [helper.make_opsetid("", self.opset)]
        m = helper.make_model(g, opset_imports=ops, producer_name="edgetune tools/export_models.py")
        m.ir_version = helper.find_min_ir_version_for(ops)
        return m


MEAN = np.array([0.485, 0.456, 0.406], np.float32)
STD = np.array([0.229, 0.224, 0.225], np.float32)
I64 = np.int64


def tiny_op9_legacy() -> onnx.ModelProto:
    b = B("tiny_op9_legacy", 9)
    x = b.n("Sub", ["input", b.const(MEAN.reshape(1, 3, 1, 1))])
    x = b.n("Div", [x, b.c("norm.std", STD.reshape(3, 1, 1))])
    x = b.n("Pad", [x], mode="constant", pads=[0, 0, 1, 2, 0, 0, 2, 1], value=0.0)     # [N,3,19,19]
    x = b.n("Conv", [x, b.w("conv1.weight", [8, 3, 3, 3]), b.w("conv1.bias", [8])],
            kernel_shape=[3, 3])                                                       # [N,8,17,17]
    x = b.bn(x, "bn1", 8)
    x = b.n("Clip", [x], min=0.0, max=6.0)
    x = b.n("MaxPool", [x], kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1])    # [N,8,9,9]
    x = b.n("AveragePool", [x], kernel_shape=[3, 3], strides=[1, 1], pads=[1, 1, 1, 1],
            count_include_pad=1)
    x = b.n("Slice", [x], starts=[1, 0], ends=[9, -1], axes=[2, 3])                    # [N,8,8,8]
    x = b.n("Dropout", [x], ratio=0.25)
    x = b.n("GlobalAveragePool", [x])                                                  # [N,8,1,1]
    x = b.n("Squeeze", [x], axes=[3])                                                  # [N,8,1]
    x = b.n("Unsqueeze", [x], axes=[3])                                                # [N,8,1,1]
    x = b.n("Flatten", [x], axis=1)                                                    # [N,8]
    g = b.n("Gemm", [x, b.w("fc.weight", [10, 8]), b.w("fc.bias", [10])], transB=1, alpha=0.5, beta=2.0)
    s = b.n("Sum", [g, b.const(np.linspace(-0.1, 0.1, 10, dtype=np.float32)), g])
    y = b.n("Softmax", [s], axis=1)
    return b.model(["N", 3, 16, 16], y)


def shape_reshape_11(b: B, x: str) -> str:
    """x.view(x.size(0), -1) as TorchScript emits it at opset 11."""
    sh = b.n("Shape", [x])
    n = b.n("Gather", [sh, b.const(np.array(0, I64))], axis=0)
    n = b.n("Unsqueeze", [n], axes=[0])
    shape = b.n("Concat", [n, b.const(np.array([-1], I64))], axis=0)
    return b.n("Reshape", [x, shape])


def tiny_op11_conv() -> onnx.ModelProto:
    b = B("tiny_op11_conv", 11)
    zero, six = b.c("relu6.min", np.array(0.0, np.float32)), b.c("relu6.max", np.array(6.0, np.float32))
    x = b.n("Conv", ["input", b.w("dil.weight", [12, 3, 3, 3])], kernel_shape=[3, 3],
            dilations=[2, 2], pads=[1, 0, 2, 1])                                      # [N,12,19,17]
    x = b.n("Clip", [x, zero, six])
    x = b.n("Conv", [x, b.w("group.weight", [12, 4, 3, 3]), b.w("group.bias", [12])],
            kernel_shape=[3, 3], group=3, pads=[1, 1, 1, 1])                           # [N,12,19,17]
    x = b.n("Relu", [x])
    x = b.n("Conv", [x, b.w("dw.weight", [12, 1, 3, 3]), b.w("dw.bias", [12])],
            kernel_shape=[3, 3], group=12, strides=[2, 2], auto_pad="SAME_UPPER")      # [N,12,10,9]
    x = b.n("Clip", [x, "", six])                                                      # max only
    x = b.n("Pad", [x, b.c("pad.pads", np.array([0, 0, 1, 0, 0, 0, 0, 1], I64)),
                    b.c("pad.value", np.array(0.5, np.float32))], mode="constant")     # [N,12,11,10]
    x = b.n("MaxPool", [x], kernel_shape=[3, 3], strides=[2, 2], ceil_mode=1)          # [N,12,5,5]
    x = b.n("AveragePool", [x], kernel_shape=[2, 2], strides=[1, 1], pads=[1, 1, 0, 0],
            count_include_pad=0)                                                       # [N,12,5,5]
    x = b.n("Slice", [x, b.c("slice.starts", np.array([0], I64)), b.c("slice.ends", np.array([12], I64)),
                      b.c("slice.axes", np.array([1], I64)), b.c("slice.steps", np.array([2], I64))])
    x = b.n("Dropout", [x], ratio=0.1)                                                 # [N,6,5,5]
    x = b.n("ReduceMean", [x], axes=[2, 3], keepdims=1)                                # [N,6,1,1]
    x = shape_reshape_11(b, x)                                                         # [N,6]
    x = b.n("MatMul", [x, b.w("head.matmul_w", [6, 10])])
    x = b.n("Add", [x, b.w("head.bias", [10])])
    y = b.n("Softmax", [x], axis=-1)
    return b.model(["N", 3, 20, 20], y)


def tiny_op13_shared() -> onnx.ModelProto:
    b = B("tiny_op13_shared", 13)
    x = b.n("Mul", ["input", b.c("norm.scale", (1 / STD).reshape(1, 3, 1, 1))])
    x = b.n("Add", [x, b.c("norm.shift", (-MEAN / STD).reshape(3, 1, 1))])
    r0 = b.n("Relu", [b.n("Conv", [x, b.w("stem.weight", [8, 3, 3, 3]), b.w("stem.bias", [8])],
                          kernel_shape=[3, 3], pads=[1, 1, 1, 1])])                    # [N,8,16,16]
    shared = b.w("shared.weight", [8, 8, 3, 3])
    w1, w2 = b.n("Identity", [shared]), b.n("Identity", [shared])
    r1 = b.n("Relu", [b.n("Conv", [r0, w1], kernel_shape=[3, 3], pads=[1, 1, 1, 1])])
    c2 = b.n("Conv", [r1, w2], kernel_shape=[3, 3], pads=[1, 1, 1, 1])
    br = b.n("Conv", [r0, b.w("branch.weight", [8, 8, 1, 1]), b.w("branch.bias", [8])], kernel_shape=[1, 1])
    s = b.n("Sum", [c2, br, r0])
    x = b.n("Concat", [s, r1], axis=1)                                                 # [N,16,16,16]
    x = b.n("Conv", [x, b.w("down.weight", [16, 16, 3, 3]), b.w("down.bias", [16])],
            kernel_shape=[3, 3], strides=[2, 2], auto_pad="SAME_UPPER")                # [N,16,8,8]
    x = b.n("Dropout", [x, b.c("drop.ratio", np.array(0.5, np.float32))])
    x = b.n("Slice", [x, b.c("slice.starts", np.array([0, 1], I64)), b.c("slice.ends", np.array([16, 8], I64)),
                      b.c("slice.axes", np.array([1, 3], I64)), b.c("slice.steps", np.array([1, 2], I64))])
    x = b.n("GlobalAveragePool", [x])                                                  # [N,16,1,1]
    x = b.n("Squeeze", [x, b.c("squeeze.axes", np.array([2, 3], I64))])                # [N,16]
    x = b.n("Unsqueeze", [x, b.c("unsqueeze.axes", np.array([1], I64))])               # [N,1,16]
    sh = b.n("Shape", [x])
    n = b.n("Gather", [sh, b.const(np.array(0, I64))], axis=0)
    n = b.n("Cast", [n], to=TensorProto.INT64)
    n = b.n("Unsqueeze", [n, b.const(np.array([0], I64))])
    rest = b.n("ConstantOfShape", [b.const(np.array([1], I64))],
               value=numpy_helper.from_array(np.array([-1], I64)))
    x = b.n("Reshape", [x, b.n("Concat", [n, rest], axis=0)])                          # [N,16]
    x = b.n("Gemm", [x, b.w("fc.weight", [10, 16]), b.w("fc.bias", [10])], transB=1)
    y = b.n("Softmax", [x], axis=1)
    return b.model(["N", 3, 16, 16], y)


def tiny_op18_nhwc() -> onnx.ModelProto:
    b = B("tiny_op18_nhwc", 18)
    x = b.n("Transpose", ["input"], perm=[0, 3, 1, 2])                                 # [N,3,16,16]
    x = b.n("Sub", [x, b.c("norm.mean", MEAN.reshape(1, 3, 1, 1))])
    x = b.n("Div", [x, b.c("norm.std", STD.reshape(1, 3, 1, 1))])
    x = b.n("Pad", [x, b.c("pad.pads", np.array([1, 1, 1, 1], I64)), "",
                    b.c("pad.axes", np.array([2, 3], I64))], mode="constant")          # [N,3,18,18]
    x = b.n("Conv", [x, b.w("conv1.weight", [8, 3, 3, 3]), b.w("conv1.bias", [8])],
            kernel_shape=[3, 3], strides=[2, 2])                                       # [N,8,8,8]
    x = b.n("Relu", [b.bn(x, "bn1", 8)])
    x = b.n("Conv", [x, b.w("conv2.weight", [8, 8, 3, 3])], kernel_shape=[3, 3], auto_pad="SAME_UPPER")
    x = b.n("MaxPool", [x], kernel_shape=[2, 2], strides=[2, 2])                       # [N,8,4,4]
    x = b.n("ReduceMean", [x, b.c("reduce.axes", np.array([2, 3], I64))], keepdims=1)  # [N,8,1,1]
    x = b.n("Flatten", [x], axis=1)
    x = b.n("MatMul", [x, b.w("head.matmul_w", [8, 10])])
    x = b.n("Add", [x, b.w("head.bias", [10])])
    y = b.n("Softmax", [x], axis=1)
    return b.model(["N", 16, 16, 3], y)


def tiny_op21_resblock() -> onnx.ModelProto:
    b = B("tiny_op21_resblock", 21)
    r0 = b.conv_bn("input", "stem", 3, 16)                                             # [N,16,16,16]
    y = b.conv_bn(r0, "block1.a", 16, 16)
    y = b.conv_bn(y, "block1.b", 16, 16, relu=False)
    r1 = b.n("Relu", [b.n("Add", [y, r0])])
    y = b.conv_bn(r1, "block2.a", 16, 32, stride=2)                                    # [N,32,8,8]
    y = b.conv_bn(y, "block2.b", 32, 32, relu=False)
    sc = b.conv_bn(r1, "block2.shortcut", 16, 32, k=1, stride=2, pad=0, relu=False)
    r2 = b.n("Relu", [b.n("Add", [y, sc])])
    axes = b.n("Constant", [], value_ints=[2, 3])
    x = b.n("ReduceMean", [r2, axes], keepdims=1)                                      # [N,32,1,1]
    x = b.n("Reshape", [x, b.n("Constant", [], value_ints=[0, -1])])                   # [N,32]
    x = b.n("Gemm", [x, b.w("fc.weight", [10, 32]), b.w("fc.bias", [10])], transB=1, beta=0.5)
    y = b.n("Softmax", [x], axis=-1)
    return b.model(["N", 3, 16, 16], y)


class TinyTorch(nn.Module):
    """What the TorchScript exporter emits for common mobile-style layers (exported at opset 17)."""

    def __init__(self):
        super().__init__()
        self.register_buffer("mean", torch.tensor(MEAN).reshape(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(STD).reshape(1, 3, 1, 1))
        self.pad = nn.ZeroPad2d((1, 2, 0, 1))            # asymmetric -> Pad
        self.conv1 = nn.Conv2d(3, 8, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(8)
        self.act = nn.ReLU6()                            # -> Clip with min/max inputs
        self.dw = nn.Conv2d(8, 8, 3, padding=2, dilation=2, groups=8)
        self.bn2 = nn.BatchNorm2d(8)
        self.pool = nn.MaxPool2d(3, 2, padding=1, ceil_mode=True)
        self.avg = nn.AvgPool2d(3, 1, padding=1, count_include_pad=False)
        self.drop = nn.Dropout(0.2)
        self.fc = nn.Linear(8, 10)

    def forward(self, x):
        x = (x - self.mean) / self.std
        x = self.pad(x)                                  # [N,3,17,19]
        x = self.act(self.bn1(self.conv1(x)))
        x = self.act(self.bn2(self.dw(x)))
        x = self.avg(self.pool(x))                       # [N,8,9,10]
        x = x.mean(dim=(2, 3), keepdim=True)             # ReduceMean keepdims
        x = x.view(x.size(0), -1)                        # Shape/Gather/Unsqueeze/Concat/Reshape
        return torch.softmax(self.fc(self.drop(x)), dim=1)


TINY_BUILDERS = {
    "tiny_op9_legacy": tiny_op9_legacy,
    "tiny_op11_conv": tiny_op11_conv,
    "tiny_op13_shared": tiny_op13_shared,
    "tiny_op17_torch": None,  # TinyTorch through torch.onnx.export
    "tiny_op18_nhwc": tiny_op18_nhwc,
    "tiny_op21_resblock": tiny_op21_resblock,
}
