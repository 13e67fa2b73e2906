#!/usr/bin/env python3
"""PyTorch gradient references for edgetune's `grad` (run by hand; needs the torch venv and the
filled models from tools/fixtures.sh; its outputs in models/grad_refs/ are committed).

    bash tools/fixtures.sh
    PY=$(tools/venv.sh torch) && $PY tools/grad_refs.py [--only CASE ...]

For every case of tools/fixture_data.py:GRAD_CASES:
  * `torch: state_dict` cases: build the torch model (torchvision resnet18 / resnet50 with weights=None, or ResNet-20 from
    tools/cifar_resnet.py) and load every float state_dict entry from the initializer of the same
    name in build/models/<model>.onnx (the ONNX initializer names are the state_dict names);
  * `torch: fused` cases (the issue-19 families, BN folded by the exporters): the torchvision
    architecture with its BatchNorms folded by torch.fx (`fused_model`), weights copied from the
    ONNX Conv/Gemm nodes in graph order into its layers in execution order
    (`load_onnx_weights_in_order`), its float32 logits checked against onnxruntime on the same
    file (1e-4 of their scale); the gradients are keyed by ONNX initializer name;
  * x, labels = fixture_data.grad_case(case) (the arrays of build/refs/grad/<case>.npz);
  * bn train: model.train(); bn frozen: model.eval() (parameters still require grad);
  * logits = model(x); loss = cross_entropy(logits, labels) (mean over the batch); loss.backward();
    float32, torch.set_num_threads(2), torch.use_deterministic_algorithms(True).
Writes models/grad_refs/<case>.json:
  {"case", "model", "shape", "classes", "bn", "torch", "generated_by",
   "loss" (the float32 loss), "loss_f64",
   "input": {"seed_key", "labels", "x_norm"}, "logits": summary of the float32 logits,
   "params": {name: summary of p.grad, for every named_parameters() entry, in that order},
   "running": {name: summary of every running_mean / running_var buffer after the forward pass}}
with summary(t) = fixture_data.summary: t flattened to float64,
  {"shape", "norm": ||t||_2, "proj": sum(t * projection(n)), "max_abs": max |t|,
   "samples": [[i, t[i]] for i in sample_indices(n)]}
plus "f32_rel_err": ||t32 - t64||_2 / ||t64||_2, the full-tensor relative difference between this
float32 result and the same computation in float64 (weights and inputs cast exactly): the float32
rounding noise of the reference itself, for choosing test tolerances, and "f64": the summary of
the float64 result, which tests/grad_reference.rs compares against. For the `fused` cases
f32_rel_err is the larger of that and the same difference for a float64 run whose piecewise-linear
activations (ReLU, ReLU6, HardSwish, HardSigmoid) take the slope of the kink's other side for inputs
within 2^-22 of their tensor's largest magnitude from a kink (`flip_near_kinks_`): which side such
an input lands on is decided by float32 rounding, and a slope jump of 0.5 on one element moves a
whole layer's gradient (mobilenet_v3_large_legacy has a HardSwish input 9e-6 from 3 at a scale of
135, which moves the gradients of 30 tensors by ~5e-3). f32_rel_err is ~1e-6 for most
cases but up to ~2e-2 for resnet50 in bn-train mode: with these random weights its gradient is
ill-conditioned (in float64, a 1e-7 relative change of x moves the gradients by ~0.5%), so no float32
implementation, PyTorch's included, gets within 1e-3 of the exact value there.
In frozen mode the running buffers are the loaded values (unchanged by the forward pass); in train
mode they are PyTorch's update 0.9 * old + 0.1 * batch statistic (unbiased batch variance).
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import onnx
import torch
import torchvision
from onnx import numpy_helper

sys.path.insert(0, str(Path(__file__).resolve().parent))
import fixture_data  # noqa: E402
from cifar_resnet import resnet20  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
BUILD_MODELS = ROOT / "build" / "models"
OUT = ROOT / "models" / "grad_refs"


def log(msg: str) -> None:
    print(f"[grad_refs] {msg}", flush=True)


def build_model(name: str) -> torch.nn.Module:
    if name == "resnet20_cifar":
        return resnet20()
    if name == "resnet18_bn_op17":
        return torchvision.models.resnet18(weights=None)
    if name == "resnet50_bn_op17":
        return torchvision.models.resnet50(weights=None)
    if name == "mobilenet_v2_bn":
        return torchvision.models.mobilenet_v2(weights=None)
    raise SystemExit(f"no torch builder for model {name}")


def load_onnx_weights(model: torch.nn.Module, path: Path) -> None:
    """Copy every float state_dict entry from the ONNX initializer of the same name."""
    if not path.exists():
        raise SystemExit(f"{path} missing: run `bash tools/fixtures.sh` first")
    m = onnx.load(str(path))
    inits = {t.name: t for t in m.graph.initializer}
    sd = model.state_dict()
    missing = [k for k, v in sd.items() if v.is_floating_point() and k not in inits]
    if missing:
        raise SystemExit(f"{path}: initializers missing for state_dict entries {missing[:5]}...")
    with torch.no_grad():
        for k, v in sd.items():
            if not v.is_floating_point():
                continue
            a = numpy_helper.to_array(inits[k])
            if tuple(a.shape) != tuple(v.shape) or a.dtype != np.float32:
                raise SystemExit(f"{path}: {k} is {a.dtype}{list(a.shape)}, torch wants "
                                 f"float32{list(v.shape)}")
            v.copy_(torch.from_numpy(a.copy()))
    # every float initializer with ndim >= 1 should be a state_dict entry (nothing left unloaded)
    extra = [n for n, t in inits.items() if n not in sd and len(t.dims) >= 1
             and t.data_type == onnx.TensorProto.FLOAT]
    if extra:
        raise SystemExit(f"{path}: float initializers not in the torch state_dict: {extra[:5]}")


def fused_model(arch: str) -> torch.nn.Module:
    """The torchvision architecture in eval mode with every BatchNorm folded into the convolution
    before it (torch.fx's fuse), the function the exporters' defaults write."""
    from torch.fx.experimental.optimization import fuse
    return fuse(getattr(torchvision.models, arch)(weights=None).eval())


def load_onnx_weights_in_order(model: torch.nn.Module, path: Path, shape: list[int]) -> dict:
    """Copy the weights of the ONNX model's Conv and Gemm nodes, in graph order, into the torch
    model's Conv2d and Linear modules in the order a forward pass runs them (the order both
    exporters write them in; shapes must agree, a Gemm's B transposed where its transB says so).
    Returns {torch parameter name: (ONNX initializer name, transposed)}. Every float initializer
    with ndim >= 1 must be one of them; tools/grad_refs.py then checks the loaded model's logits
    against onnxruntime on the ONNX file, which a wrong pairing cannot pass."""
    if not path.exists():
        raise SystemExit(f"{path} missing: run `bash tools/fixtures.sh` first")
    m = onnx.load(str(path))
    inits = {t.name: t for t in m.graph.initializer}
    onnx_layers = []  # (weight name, bias name or None, transposed)
    for node in m.graph.node:
        if node.op_type == "Conv":
            onnx_layers.append((node.input[1], node.input[2] if len(node.input) > 2 else None, False))
        elif node.op_type == "Gemm":
            trans_b = any(a.name == "transB" and a.i == 1 for a in node.attribute)
            onnx_layers.append((node.input[1], node.input[2] if len(node.input) > 2 else None, not trans_b))
    order = []
    hooks = [mod.register_forward_hook(lambda mod, i, o: order.append(mod))
             for mod in model.modules() if isinstance(mod, (torch.nn.Conv2d, torch.nn.Linear))]
    with torch.no_grad():
        model(torch.zeros(shape))
    for h in hooks:
        h.remove()
    if len(order) != len(onnx_layers):
        raise SystemExit(f"{path}: {len(onnx_layers)} Conv/Gemm nodes, torch runs {len(order)} layers")
    names = {mod: prefix for prefix, mod in model.named_modules()}
    mapping = {}
    with torch.no_grad():
        for mod, (w, b, transposed) in zip(order, onnx_layers):
            for pname, onnx_name, tr in (("weight", w, transposed), ("bias", b, False)):
                p = getattr(mod, pname)
                if (p is None) != (onnx_name is None):
                    raise SystemExit(f"{path}: {names[mod]}.{pname} and ONNX {onnx_name} disagree on a bias")
                if p is None:
                    continue
                a = numpy_helper.to_array(inits[onnx_name])
                a = a.T if tr else a
                if tuple(a.shape) != tuple(p.shape):
                    raise SystemExit(f"{path}: {onnx_name} {list(a.shape)} for {names[mod]}.{pname} "
                                     f"{list(p.shape)}")
                p.copy_(torch.from_numpy(np.array(a, copy=True)))
                mapping[f"{names[mod]}.{pname}"] = (onnx_name, tr)
    used = {n for n, _ in mapping.values()}
    extra = [n for n, t in inits.items() if n not in used and len(t.dims) >= 1
             and t.data_type == onnx.TensorProto.FLOAT]
    if extra:
        raise SystemExit(f"{path}: float initializers outside Conv/Gemm weights: {extra[:5]}")
    return mapping


def check_against_onnxruntime(path: Path, x: np.ndarray, logits: torch.Tensor, case: str) -> float:
    import onnxruntime as ort
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from make_fixtures import relaxed_model
    sess = ort.InferenceSession(relaxed_model(path), providers=["CPUExecutionProvider"])
    y = sess.run(None, {sess.get_inputs()[0].name: x})[0]
    t = logits.detach().double().numpy()
    err = float(np.abs(t - y).max() / max(np.abs(t).max(), 1e-12))
    if err > 1e-4:
        raise SystemExit(f"{case}: torch logits vs onnxruntime relative error {err:.2e}: weights misplaced?")
    return err


# Where a piecewise-linear activation changes its slope: ReLU at 0, ReLU6 at 0 and 6, HardSwish
# and HardSigmoid at -3 and 3.
KINKS = {torch.nn.ReLU: (0.0,), torch.nn.ReLU6: (0.0, 6.0), torch.nn.Hardtanh: (0.0, 6.0),
         torch.nn.Hardswish: (-3.0, 3.0), torch.nn.Hardsigmoid: (-3.0, 3.0)}
# An activation input closer to a kink than this fraction of its tensor's largest magnitude (2
# float32 ulps of it) lands on either side of the kink in a float32 forward pass, by rounding.
KINK_REL = 2.0 ** -22


def slope(mod: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    """The activation's derivative at x, PyTorch's backward rules (boundaries as they treat them)."""
    if isinstance(mod, torch.nn.ReLU):
        return (x > 0).to(x.dtype)
    if isinstance(mod, (torch.nn.ReLU6, torch.nn.Hardtanh)):
        return ((x > 0) & (x < 6)).to(x.dtype)
    if isinstance(mod, torch.nn.Hardswish):
        return torch.where(x < -3, 0.0, torch.where(x <= 3, x / 3 + 0.5, 1.0)).to(x.dtype)
    return ((x > -3) & (x < 3)).to(x.dtype) / 6  # Hardsigmoid


class _NearKinkFlipped(torch.autograd.Function):
    """An activation whose backward takes, for inputs within KINK_REL of a kink, the slope on the
    kink's other side (and PyTorch's slope everywhere else)."""

    @staticmethod
    def forward(ctx, x, mod):
        ctx.save_for_backward(x)
        ctx.mod = mod
        with torch.no_grad():
            return type(mod).forward(mod, x)

    @staticmethod
    def backward(ctx, g):
        (x,) = ctx.saved_tensors
        tau = KINK_REL * float(x.abs().max())
        other = x
        for k in next(k for t, k in KINKS.items() if type(ctx.mod) is t):
            close = (x - k).abs() < tau
            # mirrored across the kink (a point exactly on it moves just past it)
            other = torch.where(close, 2 * k - x + torch.where(x == k, tau / 2, 0.0), other)
        return g * slope(ctx.mod, other), None


def flip_near_kinks_(model: torch.nn.Module) -> None:
    """Makes every piecewise-linear activation of `model` a `_NearKinkFlipped`: the gradient a
    float32 forward pass gets when its rounding puts the inputs near a kink across it."""
    for mod in model.modules():
        if any(type(mod) is t for t in KINKS):
            mod.inplace = False  # the backward reads the activation's input
            mod.forward = lambda x, mod=mod: _NearKinkFlipped.apply(x, mod)


def summary(t: torch.Tensor) -> dict:
    return fixture_data.summary(t.detach().cpu().numpy())


def forward_backward(info: dict, dtype: torch.dtype, flip_kinks: bool = False):
    """(model, logits, loss, names) after loss.backward() in `dtype` (float32 weights/inputs cast
    exactly); names: {torch parameter name: (ONNX initializer name, transposed)}."""
    path = BUILD_MODELS / f"{info['model']}.onnx"
    if info["torch"] == "fused":
        model = fused_model(info["arch"])
        names = load_onnx_weights_in_order(model, path, info["shape"])
    else:
        model = build_model(info["model"])
        load_onnx_weights(model, path)
        names = {n: (n, False) for n, _ in model.named_parameters()}
    model.to(dtype)
    if flip_kinks:
        flip_near_kinks_(model)
    if info["bn"] == "train":
        model.train()
        for m in model.modules():  # dropout off in the reference (edgetune's Dropout is Identity)
            if isinstance(m, torch.nn.Dropout):
                m.eval()
    else:
        model.eval()
    for p in model.parameters():
        p.requires_grad_(True)
        p.grad = None
    x_np, labels_np = fixture_data.grad_case(info["case"])
    assert list(x_np.shape) == info["shape"]
    logits = model(torch.from_numpy(x_np).to(dtype))
    loss = torch.nn.functional.cross_entropy(logits, torch.from_numpy(labels_np))
    loss.backward()
    return model, logits, loss, names


def rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    """||a - b||_2 / ||b||_2 in float64 (0 when both are zero)."""
    a, b = a.detach().double(), b.detach().double()
    nb = float(torch.linalg.vector_norm(b))
    d = float(torch.linalg.vector_norm(a - b))
    return d / nb if nb > 0 else d


def run_case(info: dict) -> dict:
    case = info["case"]
    model, logits, loss, names = forward_backward(info, torch.float32)
    if not torch.isfinite(loss):
        raise SystemExit(f"{case}: non-finite loss {loss.item()}")
    if info["torch"] == "fused":
        check_against_onnxruntime(BUILD_MODELS / f"{info['model']}.onnx", fixture_data.grad_case(case)[0],
                                  logits, case)
    # the same computation in float64: the float32 rounding noise of each reference tensor
    m64, _, loss64, _ = forward_backward(info, torch.float64)
    # fused cases: and the float64 gradient with activation inputs within rounding of a kink taken
    # on its other side (what a float32 forward may do); f32_rel_err is the larger of the two
    kinked = None
    if info["torch"] == "fused":
        kinked = dict(forward_backward(info, torch.float64, flip_kinks=True)[0].named_parameters())
    p64 = dict(m64.named_parameters())
    b64 = dict(m64.named_buffers())
    params = {}
    for name, p in model.named_parameters():
        if p.grad is None:
            raise SystemExit(f"{case}: no gradient for {name}")
        if not torch.all(torch.isfinite(p.grad)):
            raise SystemExit(f"{case}: non-finite gradient for {name}")
        onnx_name, transposed = names[name]
        g32, g64 = (p.grad.T, p64[name].grad.T) if transposed else (p.grad, p64[name].grad)
        noise = rel_err(g32, g64)
        if kinked is not None:
            gk = kinked[name].grad.T if transposed else kinked[name].grad
            noise = max(noise, rel_err(gk, g64))
        params[onnx_name] = {**summary(g32), "f32_rel_err": noise, "f64": summary(g64)}
    running = {name: {**summary(b), "f32_rel_err": rel_err(b, b64[name]), "f64": summary(b64[name])}
               for name, b in model.named_buffers()
               if name.endswith("running_mean") or name.endswith("running_var")}
    x_np, labels_np = fixture_data.grad_case(case)
    x64 = x_np.ravel().astype(np.float64)
    return {
        "case": case,
        "model": info["model"],
        "shape": info["shape"],
        "classes": info["classes"],
        "bn": info["bn"],
        "torch": torch.__version__,
        "generated_by": "tools/grad_refs.py",
        "loss": float(loss.item()),
        "loss_f64": float(loss64.item()),
        "input": {"seed_key": fixture_data.input_key(case), "labels": labels_np.tolist(),
                  "x_norm": float(np.sqrt(np.dot(x64, x64)))},
        "logits": summary(logits),
        "params": params,
        "running": running,
    }




def main() -> None:
    ap = argparse.ArgumentParser(description="Write PyTorch gradient summaries to models/grad_refs/.")
    ap.add_argument("--only", nargs="*", help="case names (default: all of GRAD_CASES)")
    args = ap.parse_args()
    torch.set_num_threads(2)
    try:
        torch.use_deterministic_algorithms(True)
        det = True
    except Exception as e:  # noqa: BLE001
        log(f"use_deterministic_algorithms unavailable: {e}")
        det = False
    log(f"torch {torch.__version__}, torchvision {torchvision.__version__}, "
        f"threads {torch.get_num_threads()}, deterministic {det}")
    cases = fixture_data.GRAD_CASES
    if args.only:
        known = {c["case"] for c in cases}
        bad = [c for c in args.only if c not in known]
        if bad:
            raise SystemExit(f"unknown cases {bad}; known: {sorted(known)}")
        cases = [c for c in cases if c["case"] in args.only]
    OUT.mkdir(parents=True, exist_ok=True)
    for info in cases:
        t0 = time.perf_counter()
        ref = run_case(info)
        dt = time.perf_counter() - t0
        path = OUT / f"{info['case']}.json"
        text = fixture_data.summaries_to_text(ref)
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(text)
        tmp.replace(path)
        worst = max(ref["params"].items(), key=lambda kv: kv[1]["f32_rel_err"])
        log(f"{info['case']}: loss {ref['loss']:.6f} (f64 {ref['loss_f64']:.6f}), "
            f"{len(ref['params'])} params, {len(ref['running'])} running buffers, "
            f"worst f32 rel err {worst[1]['f32_rel_err']:.1e} ({worst[0]}), {dt:.2f} s, "
            f"{len(text) / 1024:.0f} KB")


if __name__ == "__main__":
    main()
