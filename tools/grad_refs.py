#!/usr/bin/env python3
"""PyTorch gradient references for edgetune's `grad` (run by hand; needs the torch venv and the
filled models from tools/fixtures.sh; its outputs in models/grad_refs/ are committed).

    bash tools/fixtures.sh
    PY=$(tools/venv.sh torch) && $PY tools/grad_refs.py [--only CASE ...]

For every case of tools/fixture_data.py:GRAD_CASES:
  * build the torch model (torchvision resnet18 / resnet50 with weights=None, or ResNet-20 from
    tools/cifar_resnet.py) and load every float state_dict entry from the initializer of the same
    name in build/models/<model>.onnx (the ONNX initializer names are the state_dict names);
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
the float64 result, which tests/grad_reference.rs compares against. f32_rel_err is ~1e-6 for most
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


def summary(t: torch.Tensor) -> dict:
    return fixture_data.summary(t.detach().cpu().numpy())


def forward_backward(info: dict, dtype: torch.dtype):
    """(model, logits, loss) after loss.backward() in `dtype` (float32 weights/inputs cast exactly)."""
    model = build_model(info["model"])
    load_onnx_weights(model, BUILD_MODELS / f"{info['model']}.onnx")
    model.to(dtype)
    if info["bn"] == "train":
        model.train()
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
    return model, logits, loss


def rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    """||a - b||_2 / ||b||_2 in float64 (0 when both are zero)."""
    a, b = a.detach().double(), b.detach().double()
    nb = float(torch.linalg.vector_norm(b))
    d = float(torch.linalg.vector_norm(a - b))
    return d / nb if nb > 0 else d


def run_case(info: dict) -> dict:
    case = info["case"]
    model, logits, loss = forward_backward(info, torch.float32)
    if not torch.isfinite(loss):
        raise SystemExit(f"{case}: non-finite loss {loss.item()}")
    # the same computation in float64: the float32 rounding noise of each reference tensor
    m64, _, loss64 = forward_backward(info, torch.float64)
    p64 = dict(m64.named_parameters())
    b64 = dict(m64.named_buffers())
    params = {}
    for name, p in model.named_parameters():
        if p.grad is None:
            raise SystemExit(f"{case}: no gradient for {name}")
        if not torch.all(torch.isfinite(p.grad)):
            raise SystemExit(f"{case}: non-finite gradient for {name}")
        params[name] = {**summary(p.grad), "f32_rel_err": rel_err(p.grad, p64[name].grad),
                        "f64": summary(p64[name].grad)}
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
