#!/usr/bin/env python3
"""Inference latency: onnxruntime vs edgetune vs tract, in one script run.

    PY=$(tools/venv.sh light); $PY tools/bench_infer.py [--iters N] [--models M ...] [--batches B ...]

For each model and batch (default: ResNet-18 and ResNet-50 from build/models/, batch 1 and 8,
224x224; `bash tools/fixtures.sh` makes the models):
  1. onnxruntime runs in this process (ORT_ENABLE_ALL, intra_op_num_threads=2), 2 untimed
     warm-up runs then ITERS timed runs;
  2. the `infer_peers` bench (benches/infer_peers.rs, built once up front with
     `cargo bench --bench infer_peers --no-run`) runs edgetune and tract in one process, same
     warm-up/iteration policy, interleaved.
All three engines get the same input: the bench's fixed LCG in [-1, 1) (reproduced exactly here),
NCHW, or NHWC when the model's input is declared NHWC.

Prints a Markdown table (median ms per batch and ratios; a ratio below 1 means edgetune is
faster), then model load to first output at batch 1 for each model (onnxruntime: session
creation + first run; edgetune: `target/release/edgetune bench infer --iters 1`, build it first),
and writes every raw JSON line to build/bench/infer.jsonl.
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_MODELS = ["build/models/resnet18_bn_op17.onnx", "build/models/resnet50_bn_op17.onnx"]
WARMUP = 2
ORT_THREADS = 2


def lcg_input(shape):
    """The bench's input: s <- s * 1664525 + 1013904223 (mod 2^32) from s = 12345, each value
    (s >> 8) / 2^23 - 1, computed in closed form with wrapping uint32 arithmetic."""
    n = int(np.prod(shape))
    a, c, s0 = np.uint32(1664525), np.uint32(1013904223), np.uint32(12345)
    with np.errstate(over="ignore"):
        a_pow = np.cumprod(np.full(n, a, dtype=np.uint32), dtype=np.uint32)  # a^1 .. a^n
        geo = np.cumsum(np.concatenate([[np.uint32(1)], a_pow[:-1]]), dtype=np.uint32)
        s = a_pow * s0 + geo * c  # s_k = a^k s0 + c (1 + a + ... + a^(k-1)), k = 1..n
    return ((s >> 8).astype(np.float64) / float(1 << 23) - 1.0).astype(np.float32).reshape(shape)


def check_lcg():
    s, want = 12345, []
    for _ in range(1000):
        s = (s * 1664525 + 1013904223) % (1 << 32)
        want.append((s >> 8) / float(1 << 23) - 1.0)
    assert np.array_equal(lcg_input([1000]), np.array(want, dtype=np.float32)), "LCG mismatch"


def input_shape(decl, batch, size):
    """NHWC when the declared input's last dim is 3 and dim 1 is not, else NCHW."""
    h, w = size
    nhwc = len(decl) == 4 and decl[3] == 3 and decl[1] != 3
    return [batch, h, w, 3] if nhwc else [batch, 3, h, w]


def bench_ort(model, batch, size, iters):
    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.intra_op_num_threads = ORT_THREADS
    opts.inter_op_num_threads = 1
    t = time.perf_counter()
    sess = ort.InferenceSession(str(ROOT / model), opts, providers=["CPUExecutionProvider"])
    load_ms = (time.perf_counter() - t) * 1e3
    inp = sess.get_inputs()[0]
    x = lcg_input(input_shape(inp.shape, batch, size))
    feed = {inp.name: x}
    for _ in range(WARMUP):
        sess.run(None, feed)
    times = []
    for _ in range(iters):
        t = time.perf_counter()
        sess.run(None, feed)
        times.append((time.perf_counter() - t) * 1e3)
    del sess
    med = statistics.median(times)
    return {"engine": "onnxruntime", "model": model, "batch": batch, "size": list(size),
            "threads": ORT_THREADS, "iters": iters, "median_ms": med, "min_ms": min(times),
            "img_per_s": batch / (med / 1e3), "load_ms": load_ms, "version": ort.__version__}


def first_output(model, size, repeats=3):
    """Model load to first output, batch 1, median of `repeats` (file in the page cache):
    onnxruntime session creation + first run in this process; edgetune's `bench infer`
    first_output_ms (import, plan, weight packing, first run) in a fresh process each time."""
    ort_ms, et_ms = [], []
    for _ in range(repeats):
        opts = ort.SessionOptions()
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        opts.intra_op_num_threads = ORT_THREADS
        t = time.perf_counter()
        sess = ort.InferenceSession(str(ROOT / model), opts, providers=["CPUExecutionProvider"])
        inp = sess.get_inputs()[0]
        x = lcg_input(input_shape(inp.shape, 1, size))
        sess.run(None, {inp.name: x})
        ort_ms.append((time.perf_counter() - t) * 1e3)
        del sess
        out = subprocess.run([str(ROOT / "target" / "release" / "edgetune"), "bench", "infer", model, "--batch", "1",
                              "--size", f"{size[0]}x{size[1]}", "--iters", "1", "--threads", "2", "--json"],
                             cwd=ROOT, stdout=subprocess.PIPE, text=True, check=True)
        et_ms.append(json.loads(out.stdout.strip().splitlines()[-1])["first_output_ms"])
    return {"engine": "first_output", "model": model, "onnxruntime_ms": statistics.median(ort_ms),
            "edgetune_ms": statistics.median(et_ms)}


def build_bench():
    """Builds the infer_peers bench once and returns its executable."""
    out = subprocess.run(
        ["cargo", "bench", "--bench", "infer_peers", "--no-run", "--message-format=json"],
        cwd=ROOT, stdout=subprocess.PIPE, text=True)
    msgs = [json.loads(l) for l in out.stdout.splitlines() if l.startswith("{")]
    if out.returncode != 0:
        for msg in msgs:
            if msg.get("reason") == "compiler-message" and msg["message"]["level"] == "error":
                print(msg["message"].get("rendered", ""), file=sys.stderr)
        sys.exit("error: cannot build the infer_peers bench (see above); "
                 "--bin PATH runs an already-built one")
    for msg in msgs:
        if msg.get("reason") == "compiler-artifact" and msg["target"]["name"] == "infer_peers" \
                and msg.get("executable"):
            return msg["executable"]
    sys.exit("error: cargo did not report the infer_peers executable")


def bench_peers(exe, model, batch, size, iters):
    out = subprocess.run([exe, model, str(batch), f"{size[0]}x{size[1]}", str(iters)],
                         cwd=ROOT, stdout=subprocess.PIPE, text=True)
    lines = [json.loads(l) for l in out.stdout.splitlines() if l.startswith("{")]
    if out.returncode != 0:
        lines.append({"engine": "edgetune", "model": model, "batch": batch,
                      "error": f"infer_peers exited with {out.returncode}"})
    return lines


def cpu_name():
    """The CPU's model name as /proc/cpuinfo gives it (lscpu's "Model name")."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "unknown CPU"


def cpu_isa():
    """AVX-512 / AVX2+FMA / neither, from the CPU's flags."""
    try:
        flags = next(l for l in Path("/proc/cpuinfo").read_text().splitlines() if l.startswith("flags")).split()
    except (OSError, StopIteration):
        return "ISA unknown"
    if "avx512f" in flags:
        return "AVX-512, AVX2+FMA"
    return "AVX2+FMA" if "avx2" in flags and "fma" in flags else "no AVX2"


def fmt_ms(r):
    return f"{r['median_ms']:.1f}" if r and "median_ms" in r else "failed"


def fmt_ratio(a, b):
    if a and b and "median_ms" in a and "median_ms" in b:
        return f"{a['median_ms'] / b['median_ms']:.2f}"
    return "n/a"


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--iters", type=int, default=10)
    p.add_argument("--models", nargs="+", default=DEFAULT_MODELS)
    p.add_argument("--batches", nargs="+", type=int, default=[1, 8])
    p.add_argument("--size", default="224x224", help="HxW (default 224x224)")
    p.add_argument("--out", default="build/bench/infer.jsonl")
    p.add_argument("--bin", help="a built infer_peers executable (default: build it with cargo)")
    a = p.parse_args()
    size = [int(v) for v in a.size.lower().split("x")]
    check_lcg()

    exe = a.bin or build_bench()
    rows, raw = [], []
    for model in a.models:
        for batch in a.batches:
            print(f"# {model} batch {batch} ...", file=sys.stderr, flush=True)
            try:
                o = bench_ort(model, batch, size, a.iters)
            except Exception as e:  # report, keep going
                o = {"engine": "onnxruntime", "model": model, "batch": batch, "error": str(e)}
            peers = bench_peers(exe, model, batch, size, a.iters)
            raw += [o] + peers
            by = {r["engine"]: r for r in peers}
            rows.append((model, batch, o, by.get("edgetune"), by.get("tract")))

    firsts = [first_output(model, size) for model in a.models]
    raw += firsts
    out = ROOT / a.out
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("".join(json.dumps(r) + "\n" for r in raw))

    thr = {r["engine"]: r.get("threads") for r in raw if "threads" in r}
    kernel = next((r["kernel"] for r in raw if "kernel" in r), "?")
    print(f"\nCPU: {cpu_name()} ({cpu_isa()}); edgetune's GEMM kernel: {kernel}")
    print(f"\nmedian ms per batch at {size[0]}x{size[1]}, {a.iters} timed runs after {WARMUP} "
          f"warm-up; threads: onnxruntime {thr.get('onnxruntime')}, "
          f"edgetune {thr.get('edgetune')}, tract {thr.get('tract')}\n")
    print("| model | batch | onnxruntime ms | edgetune ms | tract ms "
          "| edgetune/onnxruntime | edgetune/tract |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for model, batch, o, e, t in rows:
        print(f"| {Path(model).stem} | {batch} | {fmt_ms(o)} | {fmt_ms(e)} | {fmt_ms(t)} "
              f"| {fmt_ratio(e, o)} | {fmt_ratio(e, t)} |")
    print("\nmodel load to first output, batch 1 (median of 3; edgetune: target/release/edgetune "
          "bench infer, a fresh process each time)\n")
    print("| model | onnxruntime ms | edgetune ms |")
    print("|---|---:|---:|")
    for f in firsts:
        print(f"| {Path(f['model']).stem} | {f['onnxruntime_ms']:.0f} | {f['edgetune_ms']:.0f} |")
    print(f"\nraw JSON lines: {os.path.relpath(out, ROOT)}")


if __name__ == "__main__":
    main()
