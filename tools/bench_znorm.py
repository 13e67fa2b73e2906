#!/usr/bin/env python3
"""ZNorm and ZNorm + Adam over ResNet-50's 25.6M parameter values: PyTorch and edgetune in one
script run, one after the other, with the ratios.

    cargo build --release && bash tools/fixtures.sh
    PY=$(tools/venv.sh torch); $PY tools/bench_znorm.py [--threads 2] [--iters 20]

PyTorch: tools/bench_znorm_torch.py (per-tensor `(g - g.mean()) / (g.std(unbiased=False) + eps)`
in place, and its fused Adam). edgetune: `edgetune bench znorm --model
build/models/resnet50_bn_op17.onnx --json` (the same shapes: the model's float initializers).
"""
import argparse
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def lines(cmd):
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    return [json.loads(l) for l in out.splitlines() if l.startswith("{")]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--iters", type=int, default=20)
    a = ap.parse_args()
    torch_rows = lines([sys.executable, str(ROOT / "tools" / "bench_znorm_torch.py"), "--model", "resnet50",
                        "--threads", str(a.threads), "--iters", str(a.iters)])
    et_rows = lines([str(ROOT / "target" / "release" / "edgetune"), "bench", "znorm", "--model",
                     str(ROOT / "build" / "models" / "resnet50_bn_op17.onnx"), "--threads", str(a.threads),
                     "--iters", str(a.iters), "--json"])
    pt = {r["what"]: r for r in torch_rows}
    et = {(r["bench"], r.get("variant", ""), r["threads"]): r for r in et_rows}
    t = a.threads
    z, zs, z1 = et[("znorm", "simd", t)], et[("znorm", "scalar", t)], et[("znorm", "simd", 1)]
    za, za1 = et[("znorm+adam", "", t)], et[("znorm+adam", "", 1)]
    print(f"| what | PyTorch ms | edgetune ms | PyTorch / edgetune |")
    print(f"|---|---:|---:|---:|")
    print(f"| ZNorm, {t} threads | {pt['znorm']['median_ms']:.1f} | {z['median_ms']:.1f} | {pt['znorm']['median_ms'] / z['median_ms']:.2f} |")
    print(f"| ZNorm + Adam ({pt['znorm+adam']['adam_impl']} in PyTorch), {t} threads | {pt['znorm+adam']['median_ms']:.1f} | {za['median_ms']:.1f} | {pt['znorm+adam']['median_ms'] / za['median_ms']:.2f} |")
    print()
    print(f"edgetune ZNorm: {z['median_ms']:.2f} ms = {z['ratio_to_floor']:.2f}x the read-and-write floor "
          f"({z['floor_ms']:.2f} ms), {z['gbps']:.1f} GB/s; scalar twin {zs['median_ms']:.2f} ms "
          f"(SIMD gain {zs['median_ms'] / z['median_ms']:.2f}x); 1 thread {z1['median_ms']:.2f} ms "
          f"(2-thread scaling {z1['median_ms'] / z['median_ms']:.2f}x); ZNorm + Adam 1 thread {za1['median_ms']:.2f} ms")
    for r in torch_rows + et_rows:
        print(json.dumps(r))


if __name__ == "__main__":
    main()
