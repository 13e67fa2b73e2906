#!/usr/bin/env python3
"""PyTorch CPU timings of the optimizer-side work edgetune does after backward: per-tensor ZNorm of
every gradient, an Adam step, and both, on a model's parameter shapes (the peer figures for
edgetune's own ZNorm / optimizer kernels). Run by hand in the torch venv:

    PY=$(tools/venv.sh torch); $PY tools/bench_znorm_torch.py [--model resnet50 | --params N]
        [--threads T ...] [--iters 20] [--warmup 3] [--seed 0]

Shapes: --model resnet50 takes torchvision resnet50's parameter shapes (161 tensors, 25,557,032
values); --params N one tensor of N floats. Parameters and gradients are float32 standard normal from
torch.Generator().manual_seed(seed) (gradients fixed across iterations; ZNorm rewrites them in place,
which leaves them normalized, so later iterations do the same work).
What is timed (each iteration alone, time.perf_counter; warm-up iterations first, then the median):
  znorm:      for g in grads: if g.numel() > 1: g.copy_((g - g.mean()) / (g.std(unbiased=False) + 1e-8))
  adam:       opt.step() of torch.optim.Adam(params, lr=1e-3, fused=True) (CPU fused kernel); if this
              torch refuses fused on CPU, foreach=True ("adam_impl" says which)
  znorm+adam: the two above, one after the other
Bandwidth convention (bytes counted per parameter element, float32): ZNorm reads g twice and writes
it once = 12; the Adam step reads g, p, m, v and writes p, m, v = 28; znorm+adam = 40. gbps =
bytes * N / median time / 1e9 (a convention for comparing engines, not the measured DRAM traffic:
PyTorch's ZNorm expression makes temporaries).
Prints one JSON line per (threads, what):
  {"engine": "pytorch", "what", "params", "tensors", "threads", "median_ms", "min_ms", "gbps",
   "iters", "torch", "adam_impl", "shapes"}
and appends them, with a time stamp, to build/bench/znorm_torch.jsonl.
"""
from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
BYTES = {"znorm": 12, "adam": 28, "znorm+adam": 40}
EPS = 1e-8


def model_shapes(name: str) -> list[tuple[int, ...]]:
    import torchvision

    model = getattr(torchvision.models, name)(weights=None)
    return [tuple(p.shape) for p in model.parameters()]


def znorm_(grads: list[torch.Tensor]) -> None:
    for g in grads:
        if g.numel() > 1:
            g.copy_((g - g.mean()) / (g.std(unbiased=False) + EPS))


def make_adam(params: list[torch.Tensor]) -> tuple[torch.optim.Optimizer, str]:
    """Fused Adam if this torch runs it on CPU (checked with one step on a scratch tensor)."""
    try:
        p = torch.zeros(4, requires_grad=True)
        p.grad = torch.ones(4)
        torch.optim.Adam([p], lr=1e-3, fused=True).step()
        return torch.optim.Adam(params, lr=1e-3, fused=True), "fused"
    except (RuntimeError, ValueError, TypeError) as e:
        print(f"[bench_znorm_torch] fused Adam unavailable on CPU ({e}); using foreach=True", flush=True)
        return torch.optim.Adam(params, lr=1e-3, foreach=True), "foreach"


def timed(fn, warmup: int, iters: int) -> list[float]:
    for _ in range(warmup):
        fn()
    out = []
    for _ in range(iters):
        t = time.perf_counter()
        fn()
        out.append((time.perf_counter() - t) * 1e3)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    src = ap.add_mutually_exclusive_group()
    src.add_argument("--model", default=None, help="torchvision model whose parameter shapes to use "
                     "(default resnet50)")
    src.add_argument("--params", type=int, default=None, help="one tensor of N floats instead")
    ap.add_argument("--threads", type=int, nargs="+", default=[2])
    ap.add_argument("--iters", type=int, default=20)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    if a.params is not None:
        if a.params < 2:
            ap.error("--params must be >= 2")
        shapes, label = [(a.params,)], f"single[{a.params}]"
    else:
        label = a.model or "resnet50"
        shapes = model_shapes(label)
    gen = torch.Generator().manual_seed(a.seed)
    params = [torch.randn(s, generator=gen).requires_grad_(True) for s in shapes]
    for p in params:
        p.grad = torch.randn(p.shape, generator=gen)
    grads = [p.grad for p in params]
    n = sum(p.numel() for p in params)
    opt, impl = make_adam(params)

    def adam() -> None:
        opt.step()

    def both() -> None:
        znorm_(grads)
        opt.step()

    rows = []
    with torch.no_grad():
        for t in a.threads:
            torch.set_num_threads(t)
            for what, fn in (("znorm", lambda: znorm_(grads)), ("adam", adam), ("znorm+adam", both)):
                ms = timed(fn, a.warmup, a.iters)
                med = statistics.median(ms)
                row = {"engine": "pytorch", "what": what, "params": n, "tensors": len(params),
                       "threads": torch.get_num_threads(), "median_ms": round(med, 3),
                       "min_ms": round(min(ms), 3), "gbps": round(BYTES[what] * n / (med / 1e3) / 1e9, 2),
                       "iters": a.iters, "torch": torch.__version__, "adam_impl": impl, "shapes": label}
                rows.append(row)
                print(json.dumps(row), flush=True)
    for p in params:
        if not torch.all(torch.isfinite(p)):
            raise SystemExit("bench_znorm_torch: non-finite parameter after the runs")
    out = ROOT / "build" / "bench" / "znorm_torch.jsonl"
    out.parent.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y-%m-%d %H:%M:%S")
    with out.open("a") as f:
        for r in rows:
            f.write(json.dumps({"time": stamp, **r}) + "\n")


if __name__ == "__main__":
    main()
