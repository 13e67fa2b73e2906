#!/usr/bin/env python3
"""Export the committed reference models (run by hand; needs the torch venv).

    PY=$(tools/venv.sh torch) && $PY tools/export_models.py [--only NAME ...]

Writes
  models/skeletons/<name>.onnx  exported ONNX with the data of every float initializer removed
                                (name, dims, data_type kept; int64 constants kept whole);
                                tools/make_fixtures.py refills them deterministically.
  models/tiny/<name>.onnx       small op-coverage models, committed whole (weights from
                                make_fixtures.fill_array, i.e. seeded by initializer name).

Skeletons (torchvision architectures with weights=None, BSD-3-Clause):
  resnet18_bn_op17      TorchScript exporter (dynamo=False), eval mode, training=PRESERVE,
                        do_constant_folding=False -> BatchNormalization nodes kept; opset 17
  resnet50_bn_op17      same for resnet50
  resnet18_folded_op13  TorchScript exporter, eval mode, default constant folding -> BN folded
                        into Conv; opset 13
  resnet18_dynamo_op18  torch.export-based exporter (dynamo=True, default optimize=True), opset 18;
                        make_fixtures writes it with external data (<name>.onnx.data)
  resnet20_cifar        tools/cifar_resnet.py ResNet-20, BN kept, opset 17, 3x32x32
  resnet18_dynamo_b1    resnet18 exported as a user calls the default exporter today:
                        torch.onnx.export(model, (torch.randn(1, 3, 224, 224),), dynamo=True), no
                        names, no dynamic_shapes, default opset (20 in torch 2.15) and optimize ->
                        input `x` [1,3,224,224], output `linear`, batch 1 baked in (Reshape to
                        [1, 512]); written with external data like resnet18_dynamo_op18
  mobilenet_v2_bn       mobilenet_v2, TorchScript exporter, training=PRESERVE, no constant folding
                        (BatchNormalization kept, state_dict names): the training benchmark's model
  <arch>_legacy         for each arch of FAMILIES (torchvision mobilenet_v2, mobilenet_v3_small,
                        mobilenet_v3_large, efficientnet_b0, regnet_y_400mf, resnext50_32x4d):
                        TorchScript exporter (dynamo=False) with its defaults (EVAL, constant
                        folding -> BN folded into Conv, default opset: 20 in torch 2.15)
  <arch>_dynamo         the same arch through the default exporter (dynamo=True, default opset and
                        optimize=True: the onnxscript optimizer folds BN into Conv), dynamic batch
All but resnet18_dynamo_b1: input `input`, output `logits`, dynamic batch dim `N`.

Before export every parameter and buffer is set to distinct random values: the TorchScript exporter
de-duplicates initializers with equal contents (fresh BatchNorms are all ones/zeros) into one tensor
plus Identity nodes, which would lose the per-layer names.
"""
from __future__ import annotations

import argparse
import collections
import io
import sys
import warnings
from pathlib import Path

import numpy as np
import onnx
import torch
import torchvision
from onnx import helper, numpy_helper

sys.path.insert(0, str(Path(__file__).resolve().parent))
from cifar_resnet import resnet20  # noqa: E402
from fixture_data import FAMILIES  # noqa: E402  (each exported twice: <arch>_legacy, <arch>_dynamo)
from make_fixtures import EXTERNAL_KEY, fill, fill_array, strip  # noqa: E402
from tiny_models import TINY_BUILDERS, TinyTorch  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
SKELETONS = ROOT / "models" / "skeletons"
TINY = ROOT / "models" / "tiny"
IO_NAMES = dict(input_names=["input"], output_names=["logits"])
DYN_AXES = {"input": {0: "N"}, "logits": {0: "N"}}


def log(msg: str) -> None:
    print(f"[export_models] {msg}", flush=True)


def randomize_(model: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, t in list(model.named_parameters()) + list(model.named_buffers()):
            if not t.is_floating_point():
                continue
            if name.endswith("running_var"):
                t.copy_(torch.rand(t.shape, generator=g) + 0.5)
            else:
                t.copy_(torch.randn(t.shape, generator=g) * 0.05)
    return model.eval()


def op_counts(m: onnx.ModelProto) -> collections.Counter:
    return collections.Counter(n.op_type for n in m.graph.node)


def torchscript_export(model, x, opset, keep_bn: bool, fold: bool = False) -> onnx.ModelProto:
    """keep_bn: eval mode exported with training=PRESERVE (no Conv+BN fusion) and, unless `fold`,
    do_constant_folding=False; otherwise the exporter's defaults (EVAL: BN folded into Conv).
    opset None: the exporter's default (20 in torch 2.15)."""
    buf = io.BytesIO()
    kw = dict(training=torch.onnx.TrainingMode.PRESERVE, do_constant_folding=fold) if keep_bn else {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model, (x,), buf, dynamo=False, opset_version=opset,
                          dynamic_axes=DYN_AXES, **IO_NAMES, **kw)
    return onnx.load_from_string(buf.getvalue())


def dynamo_export(model, x, opset) -> onnx.ModelProto:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        prog = torch.onnx.export(model, (x,), dynamo=True, opset_version=opset, verbose=False,
                                 dynamic_shapes={"x": {0: torch.export.Dim("N")}}, **IO_NAMES)
    return prog.model_proto


def user_dynamo_export(model, x) -> onnx.ModelProto:
    """The default exporter exactly as a user calls it: no names, shapes, opset or options."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        prog = torch.onnx.export(model, (x,), dynamo=True)
    return prog.model_proto


def check_as_exported(m: onnx.ModelProto, model, x: torch.Tensor, name: str) -> None:
    """onnxruntime on the export with its own weights against torch on the same input (for
    exports whose initializer names are not the state_dict names, e.g. BN folded into Conv)."""
    import onnxruntime as ort
    sess = ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"])
    y = sess.run(None, {sess.get_inputs()[0].name: x.numpy()})[0]
    with torch.no_grad():
        yt = model(x).numpy()
    err = np.abs(yt - y).max() / max(np.abs(yt).max(), 1e-12)
    if err > 1e-4:
        raise SystemExit(f"{name}: as exported, torch vs onnxruntime relative error {err:.2e}")
    log(f"{name}: opset {m.opset_import[0].version}, as exported torch vs ort rel err {err:.1e}")


def check_batch_baked(m: onnx.ModelProto, name: str) -> None:
    """The point of the b1 export: input declared [1,3,224,224] and a Reshape to [1, 512]."""
    dims = [d.dim_value for d in m.graph.input[0].type.tensor_type.shape.dim]
    inits = {t.name: t for t in m.graph.initializer}
    targets = [numpy_helper.to_array(inits[n.input[1]]).tolist() for n in m.graph.node
               if n.op_type == "Reshape" and n.input[1] in inits]
    if dims != [1, 3, 224, 224] or targets != [[1, 512]]:
        raise SystemExit(f"{name}: expected input [1,3,224,224] and one Reshape to [1, 512], "
                         f"got input {dims}, Reshape targets {targets}")


def check_bn(m: onnx.ModelProto, name: str, want_bn: bool, must_have: list[str]) -> None:
    c = op_counts(m)
    has = c.get("BatchNormalization", 0) > 0
    if has != want_bn:
        raise SystemExit(f"{name}: BatchNormalization nodes {'missing' if want_bn else 'present'}: {c}")
    inits = {t.name for t in m.graph.initializer}
    missing = [n for n in must_have if n not in inits]
    if missing:
        raise SystemExit(f"{name}: initializers {missing} missing; have {sorted(inits)[:10]}...")


def save_skeleton(m: onnx.ModelProto, name: str, x: torch.Tensor, model=None,
                  external: bool = False) -> None:
    onnx.checker.check_model(m)
    sk = strip(m)
    for node in sk.graph.node:  # dynamo: drop stack traces (local absolute paths), keep the rest
        keep = [p for p in node.metadata_props if p.key != "pkg.torch.onnx.stack_trace"]
        if len(keep) != len(node.metadata_props):
            del node.metadata_props[:]
            node.metadata_props.extend(keep)
    helper.set_model_props(sk, {**{p.key: p.value for p in sk.metadata_props},
                                "edgetune.skeleton": "float initializers stripped; "
                                "refill with tools/make_fixtures.py",
                                **({EXTERNAL_KEY: "1"} if external else {})})
    path = SKELETONS / f"{name}.onnx"
    onnx.save(sk, str(path))
    size = path.stat().st_size
    # The dynamo exports carry per-node metadata (scopes, FX names) and value_info for every
    # intermediate: kept, as the exporter wrote them, up to half a megabyte.
    if size > 512_000:
        raise SystemExit(f"{path}: {size} bytes, over the 500 KB budget")
    # Self-check: the refilled skeleton runs in onnxruntime; where initializer names are the
    # state_dict names, torch with the same filled weights gives the same outputs.
    import onnxruntime as ort
    filled = onnx.ModelProto()
    filled.CopyFrom(sk)
    fill(filled)
    sess = ort.InferenceSession(filled.SerializeToString(), providers=["CPUExecutionProvider"])
    y = sess.run(None, {sess.get_inputs()[0].name: x.numpy()})[0]
    msg = ""
    if model is not None:
        sd = model.state_dict()
        inits = {t.name: t for t in filled.graph.initializer}
        if all(k in inits for k, v in sd.items() if v.is_floating_point()):
            with torch.no_grad():
                for k, v in sd.items():
                    if v.is_floating_point():
                        v.copy_(torch.from_numpy(numpy_helper.to_array(inits[k]).copy()))
                yt = model(x).numpy()
            err = np.abs(yt - y).max() / max(np.abs(yt).max(), 1e-12)
            if err > 1e-4:
                raise SystemExit(f"{name}: torch vs onnxruntime relative error {err:.2e}")
            msg = f", torch vs ort rel err {err:.1e}"
    log(f"{path.relative_to(ROOT)}: {size / 1024:.0f} KB, {len(sk.graph.node)} nodes, "
        f"ops {dict(op_counts(sk))}{msg}")


def export_skeletons(only: set[str] | None) -> None:
    SKELETONS.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)
    x224 = torch.randn(1, 3, 224, 224)
    bn_names = ["conv1.weight", "bn1.weight", "bn1.bias", "bn1.running_mean", "bn1.running_var",
                "fc.weight", "fc.bias"]

    def want(n):
        return only is None or n in only

    if want("resnet18_bn_op17"):
        net = randomize_(torchvision.models.resnet18(weights=None))
        m = torchscript_export(net, x224, 17, keep_bn=True)
        check_bn(m, "resnet18_bn_op17", True, bn_names)
        save_skeleton(m, "resnet18_bn_op17", x224, net)
    if want("resnet50_bn_op17"):
        net = randomize_(torchvision.models.resnet50(weights=None))
        m = torchscript_export(net, x224, 17, keep_bn=True)
        check_bn(m, "resnet50_bn_op17", True, bn_names)
        save_skeleton(m, "resnet50_bn_op17", x224, net)
    if want("resnet18_folded_op13"):
        net = randomize_(torchvision.models.resnet18(weights=None))
        m = torchscript_export(net, x224, 13, keep_bn=False)
        check_bn(m, "resnet18_folded_op13", False, ["fc.weight", "fc.bias"])
        save_skeleton(m, "resnet18_folded_op13", x224)
    if want("resnet18_dynamo_op18"):
        net = randomize_(torchvision.models.resnet18(weights=None))
        m = dynamo_export(net, x224, 18)
        save_skeleton(m, "resnet18_dynamo_op18", x224, external=True)
    if want("resnet20_cifar"):
        net = randomize_(resnet20())
        x32 = torch.randn(2, 3, 32, 32)
        m = torchscript_export(net, x32, 17, keep_bn=True)
        check_bn(m, "resnet20_cifar", True, bn_names + ["layer2.0.shortcut.0.weight"])
        save_skeleton(m, "resnet20_cifar", x32, net)
    if want("resnet18_dynamo_b1"):
        net = randomize_(torchvision.models.resnet18(weights=None))
        m = user_dynamo_export(net, x224)
        check_batch_baked(m, "resnet18_dynamo_b1")
        check_as_exported(m, net, x224, "resnet18_dynamo_b1")
        save_skeleton(m, "resnet18_dynamo_b1", x224, external=True)
    if want("mobilenet_v2_bn"):
        net = randomize_(torchvision.models.mobilenet_v2(weights=None))
        m = torchscript_export(net, x224, None, keep_bn=True)
        check_bn(m, "mobilenet_v2_bn", True, ["features.0.0.weight", "features.0.1.running_var",
                                              "classifier.1.weight"])
        save_skeleton(m, "mobilenet_v2_bn", x224, net)
    for arch in FAMILIES:
        for exporter in ("legacy", "dynamo"):
            name = f"{arch}_{exporter}"
            if not want(name):
                continue
            net = randomize_(getattr(torchvision.models, arch)(weights=None))
            if exporter == "legacy":
                m = torchscript_export(net, x224, None, keep_bn=False)
            else:
                m = dynamo_export(net, x224, None)
            check_bn(m, name, False, [])
            check_as_exported(m, net, x224, name)
            save_skeleton(m, name, x224)



def export_tiny(only: set[str] | None) -> None:
    import onnxruntime as ort
    TINY.mkdir(parents=True, exist_ok=True)
    for name, build in TINY_BUILDERS.items():
        if only is not None and name not in only:
            continue
        if build is None:  # the torch-exported one
            net = TinyTorch().eval()
            with torch.no_grad():  # the same name-seeded rule as the skeletons (norm buffers kept)
                for k, v in net.state_dict().items():
                    if v.is_floating_point() and k not in ("mean", "std"):
                        v.copy_(torch.from_numpy(fill_array(k, v.shape)))
            x = torch.randn(2, 3, 16, 16)
            m = torchscript_export(net, x, 17, keep_bn=True, fold=True)
        else:
            m = build()
        onnx.checker.check_model(m, full_check=True)
        path = TINY / f"{name}.onnx"
        onnx.save(m, str(path))
        size = path.stat().st_size
        if size > 200_000:
            raise SystemExit(f"{path}: {size} bytes, over the 200 KB budget")
        sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        i = sess.get_inputs()[0]
        shape = [2] + [d for d in i.shape[1:]]
        y = sess.run(None, {i.name: np.random.default_rng(0).standard_normal(shape).astype(np.float32)})
        if len(y) != 1 or not np.all(np.isfinite(y[0])):
            raise SystemExit(f"{name}: bad onnxruntime output")
        log(f"{path.relative_to(ROOT)}: opset {m.opset_import[0].version}, {size / 1024:.1f} KB, "
            f"in {i.shape} out {list(y[0].shape)}, ops {dict(op_counts(m))}")


def main() -> None:
    ap = argparse.ArgumentParser(description="Export skeleton and tiny ONNX models.")
    ap.add_argument("--only", nargs="*", help="model names to export (default: all)")
    args = ap.parse_args()
    only = set(args.only) if args.only else None
    log(f"torch {torch.__version__}, torchvision {torchvision.__version__}, onnx {onnx.__version__}")
    export_skeletons(only)
    export_tiny(only)


if __name__ == "__main__":
    main()
