#!/usr/bin/env python3
"""One training step of the same model, batch and size in PyTorch and in edgetune, each in its own
process so that each process's peak resident memory is its own. Same run, same machine.

    PY=$(tools/venv.sh torch); $PY tools/bench_grad.py [--model resnet18|resnet50|resnet20|mobilenet_v2]
        [--batch 32] [--size 112] [--iters 5] [--threads 2] [--step train|grad]

--step train (default): the whole finetune step: forward with BatchNorm in training mode, mean
cross-entropy, backward, per-tensor ZNorm ((g - mean) / (population std + 1e-8)), Adam (lr 1e-3;
torch.optim.Adam(fused=True)). edgetune: `bench train` with its
defaults (the same step). --step grad: forward and backward only (`bench grad`).
Prints a Markdown table and one JSON line per engine (also to build/bench/grad.jsonl).
PyTorch runs torchvision's model (or tools/cifar_resnet.py's ResNet-20) with the same weights
(loaded from the same ONNX initializers); edgetune runs target/release/edgetune (build it first).
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
ONNX = {"resnet18": "resnet18_bn_op17", "resnet50": "resnet50_bn_op17", "resnet20": "resnet20_cifar",
        "mobilenet_v2": "mobilenet_v2_bn"}

TORCH_STEP = r'''
import json, resource, sys, time
import numpy as np, onnx, torch, torchvision
from onnx import numpy_helper
name, onnx_path, batch, size, iters, threads, full, tools = sys.argv[1:9]
batch, size, iters, threads, full = int(batch), int(size), int(iters), int(threads), full == "train"
torch.set_num_threads(threads)
if name == "resnet20":
    sys.path.insert(0, tools)
    from cifar_resnet import resnet20
    model = resnet20()
else:
    model = getattr(torchvision.models, name)(weights=None)
inits = {t.name: numpy_helper.to_array(t) for t in onnx.load(onnx_path).graph.initializer}
with torch.no_grad():
    for k, v in model.state_dict().items():
        if v.is_floating_point() and k in inits:
            v.copy_(torch.from_numpy(inits[k].copy()))
model.train()
x = torch.randn(batch, 3, size, size, generator=torch.Generator().manual_seed(0))
classes = (model.fc if hasattr(model, "fc") else model.classifier[-1]).out_features
for m in model.modules():  # edgetune's Dropout is Identity in training: the same step
    if isinstance(m, torch.nn.Dropout):
        m.p = 0.0
y = torch.arange(batch) * 7919 % classes
params = list(model.parameters())
opt = torch.optim.Adam(params, lr=1e-3, fused=True)
def step():
    for p in params:
        p.grad = None
    loss = torch.nn.functional.cross_entropy(model(x), y)
    loss.backward()
    if full:
        with torch.no_grad():
            for p in params:
                if p.grad.numel() > 1:
                    p.grad.sub_(p.grad.mean()).div_(p.grad.std(unbiased=False) + 1e-8)
        opt.step()
step()
times = []
for _ in range(iters):
    t = time.perf_counter(); step(); times.append((time.perf_counter() - t) * 1e3)
med = float(np.median(times))
print(json.dumps({"engine": "pytorch", "torch": torch.__version__, "threads": torch.get_num_threads(),
                  "median_step_ms": med, "img_per_s": batch / (med / 1e3),
                  "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
'''


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="resnet18", choices=sorted(ONNX))
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--size", type=int, default=112)
    ap.add_argument("--iters", type=int, default=5)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--step", choices=["train", "grad"], default="train")
    a = ap.parse_args()
    onnx_path = ROOT / "build" / "models" / f"{ONNX[a.model]}.onnx"
    if not onnx_path.exists():
        sys.exit(f"bench_grad: {onnx_path} missing: run `bash tools/fixtures.sh` first")
    binary = ROOT / "target" / "release" / "edgetune"
    if not binary.exists():
        sys.exit("bench_grad: build edgetune first: cargo build --release")
    rows = []
    torch_out = subprocess.run([sys.executable, "-c", TORCH_STEP, a.model, str(onnx_path), str(a.batch),
                                str(a.size), str(a.iters), str(a.threads), a.step, str(ROOT / "tools")], check=True, capture_output=True, text=True)
    rows.append(json.loads(torch_out.stdout.strip().splitlines()[-1]))
    et = subprocess.run([str(binary), "bench", a.step, str(onnx_path), "--batch", str(a.batch), "--size",
                         f"{a.size}x{a.size}", "--iters", str(a.iters), "--threads", str(a.threads), "--json"],
                        check=True, capture_output=True, text=True)
    rows.append({"engine": "edgetune", **json.loads(et.stdout.strip().splitlines()[-1])})
    out = ROOT / "build" / "bench" / "grad.jsonl"
    out.parent.mkdir(parents=True, exist_ok=True)
    with out.open("a") as f:
        stamp = time.strftime("%Y-%m-%d %H:%M:%S")
        for r in rows:
            f.write(json.dumps({"time": stamp, "model": a.model, "step": a.step, "batch": a.batch, "size": a.size, **r})
                    + "\n")
    pt, et_row = rows
    print(f"| engine | threads | median step ms | img/s | peak RSS MiB |")
    print(f"|---|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r['engine']} | {r['threads']} | {r['median_step_ms']:.0f} | {r['img_per_s']:.1f} | {r['peak_rss_mib']:.0f} |")
    print(f"\n{a.model} {a.step} step, batch {a.batch} at {a.size}x{a.size}: edgetune/PyTorch time "
          f"{et_row['median_step_ms'] / pt['median_step_ms']:.2f}x, peak RSS "
          f"{et_row['peak_rss_mib'] / pt['peak_rss_mib']:.2f}x")
    for r in rows:
        print(json.dumps(r))


if __name__ == "__main__":
    main()
