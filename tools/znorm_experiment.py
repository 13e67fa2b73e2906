#!/usr/bin/env python3
"""Does ZNorm help? The comparison behind docs/znorm-study.md, in one command.

    cargo build --release && bash tools/fixtures.sh     # edgetune and the ImageNet ResNet-50
    PY=$(tools/venv.sh torch)                           # numpy, onnx, torch, matplotlib
    $PY tools/znorm_experiment.py                       # ~75 min on 2 cores; resumable

Settings (every run: Adam, cosine learning rate to zero, BatchNorm in training mode, random-crop
augmentation (pad 4), batch 32, validation every 25 steps):
  from scratch  CIFAR-style ResNet-20 and ResNet-56 (tools/cifar_resnet_onnx.py, initialised
                with the run's seed) on Fashion-MNIST and on MNIST: 2 epochs over 2,000 training
                images, lr 1e-3, tested on 1,000 held-out images. Gradient transforms: none,
                znorm, gc, clip:1 (global norm 1). Seeds 1, 2, 3 (initialisation, order, crops).
  finetune      the ImageNet ResNet-50 (build/models/resnet50_imagenet.onnx) with a new 10-way
                head on Fashion-MNIST at 32x32: 150 steps, lr 1e-4, 20 warm-up steps, none vs
                znorm, seeds 1 and 2 (its steps cost ~10x ResNet-20's).
  PyTorch       ResNet-20 on Fashion-MNIST with znorm, seeds 1-3, by tools/torch_recipe.py from
                the same ONNX weights and data (its random streams differ from edgetune's).

Data: Fashion-MNIST from Debian's dataset-fashion-mnist (/usr/share/datasets/fashion-mnist),
MNIST from models/data/mnist-slice; subsets drawn with numpy PCG64(0), written as idx files
under build/exp/data. Runs go to build/exp/runs (a finished run is not repeated); the report
(results.md, results.json, one PNG of curves per setting) to docs/znorm/.
"""
from __future__ import annotations

import argparse
import atexit
import gzip
import json
import math
import os
import shutil
import struct
import subprocess
import sys
import time
from collections import defaultdict
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
EXP = ROOT / "build" / "exp"
BUILT = ROOT / "target" / "release" / "edgetune"
# Each invocation runs a copy of the built binary, so a rebuild while it runs changes nothing.
BIN = EXP / "bin" / f"edgetune-{os.getpid()}"
sys.path.insert(0, str(ROOT / "tools"))
from cifar_resnet_onnx import resnet  # noqa: E402
from torch_recipe import read_idx  # noqa: E402

SOURCES = {"fashion": Path("/usr/share/datasets/fashion-mnist"), "mnist": ROOT / "models" / "data" / "mnist-slice"}
TRAIN, TEST = 2000, 1000
METHODS = ["none", "znorm", "gc", "clip:1"]
SEEDS = [1, 2, 3]
# ResNet-50 steps cost ~10x ResNet-20's here: two seeds per method.
FINETUNE_SEEDS = [1, 2]
# "Steps to" thresholds: roughly what the slowest method reaches by the end.
TARGET = {"fashion": 0.70, "mnist": 0.90}
COMMON = ["--batch", "32", "--optimizer", "adam", "--schedule", "cosine", "--augment", "crop", "--val-every", "25"]
SCRATCH = ["--epochs", "2", "--lr", "1e-3"]
FINETUNE = ["--steps", "150", "--lr", "1e-4", "--warmup", "20", "--num-classes", "10", "--size", "32x32",
            "--preprocess", "caffe"]


def write_idx(path: Path, a: np.ndarray) -> None:
    head = bytes([0, 0, 8, a.ndim]) + struct.pack(f">{a.ndim}I", *a.shape)
    path.write_bytes(gzip.compress(head + a.tobytes(), mtime=0))


def make_data(name: str) -> Path:
    """A seeded random subset (the MNIST slice is sorted by digit): TRAIN and TEST images."""
    out = EXP / "data" / name
    if (out / "t10k-labels-idx1-ubyte.gz").exists():
        return out
    src = SOURCES[name]
    if not src.is_dir():
        raise SystemExit(f"error: {src}: missing (Fashion-MNIST: apt-get install dataset-fashion-mnist)")
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.Generator(np.random.PCG64(0))
    for split, n in (("train", TRAIN), ("t10k", TEST)):
        x, y = read_idx(src / f"{split}-images-idx3-ubyte.gz"), read_idx(src / f"{split}-labels-idx1-ubyte.gz")
        pick = rng.permutation(len(y))[:n]
        write_idx(out / f"{split}-images-idx3-ubyte.gz", x[pick])
        write_idx(out / f"{split}-labels-idx1-ubyte.gz", y[pick])
    return out


def make_model(depth: int, seed: int) -> Path:
    import onnx
    path = EXP / "models" / f"resnet{depth}_s{seed}.onnx"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        onnx.save(resnet(depth, 10, seed), path)
    return path


def run(name: str, cmd: list[str]) -> Path:
    """Runs one training unless its output says it finished; returns the log path."""
    runs = EXP / "runs"
    runs.mkdir(parents=True, exist_ok=True)
    out, log = runs / f"{name}.out", runs / f"{name}.jsonl"
    if out.exists():  # written (renamed into place) only when the run succeeded
        return log
    t = time.perf_counter()
    print(f"[{time.strftime('%H:%M:%S')}] {name} ...", end="", flush=True)
    with open(out.with_suffix(".tmp"), "w") as f:
        r = subprocess.run(cmd + ["--log", str(log)], stdout=f, stderr=subprocess.STDOUT, cwd=ROOT)
    if r.returncode != 0:
        raise SystemExit(f"\nerror: {name} failed (exit {r.returncode}); see {out.with_suffix('.tmp')}")
    out.with_suffix(".tmp").rename(out)
    print(f" {time.perf_counter() - t:.0f} s", flush=True)
    return log


def finished(name: str) -> Path | None:
    """The log of a run that completed (its .out is renamed into place only then)."""
    runs = EXP / "runs"
    return runs / f"{name}.jsonl" if (runs / f"{name}.out").exists() else None


def edgetune(model: Path, data: Path, method: str, seed: int, extra: list[str], name: str) -> Path:
    spec = f"idx:{data}"
    cmd = [str(BIN), "finetune", str(model), "--data", spec, "--val", spec, "--grad-norm", method,
           "--seed", str(seed), "--threads", "2", "--quiet", "--output", str(EXP / "runs" / f"{name}.onnx")]
    return run(name, cmd + COMMON + extra)


def torch_run(model: Path, data: Path, seed: int, name: str) -> Path:
    cmd = [sys.executable, str(ROOT / "tools" / "torch_recipe.py"), str(model), "--data", str(data),
           "--epochs", "2", "--batch", "32", "--lr", "1e-3", "--augment", "crop", "--val-every", "25",
           "--seed", str(seed), "--threads", "2"]
    return run(name, cmd)


def read_log(path: Path) -> tuple[list[tuple[int, float]], list[tuple[int, float]]]:
    """(training rows (step, loss), validation rows (step, accuracy))."""
    train, val = [], []
    for line in path.read_text().splitlines():
        r = json.loads(line)
        if "val_accuracy" in r:
            val.append((r["step"], r["val_accuracy"]))
        elif r.get("loss") is not None:
            train.append((r["step"], r["loss"]))
    return train, val


def summarise(logs: list[Path], target: float) -> dict:
    finals, losses, reach = [], [], []
    for p in logs:
        train, val = read_log(p)
        finals.append(val[-1][1])
        losses.append(float(np.mean([l for _, l in train[-25:]])))
        reach.append(next((s for s, a in val if a >= target), None))
    hit = [s for s in reach if s is not None]
    return {
        "runs": len(logs),
        "accuracy_mean": float(np.mean(finals)), "accuracy_std": float(np.std(finals, ddof=1)) if len(finals) > 1 else 0.0,
        "final_loss_mean": float(np.mean(losses)), "final_loss_std": float(np.std(losses, ddof=1)) if len(losses) > 1 else 0.0,
        "steps_to_target": reach, "steps_to_target_mean": float(np.mean(hit)) if hit else None,
        "accuracies": finals,
    }


def curves(path: Path, title: str, groups: dict[str, list[Path]]) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax_acc, ax_loss) = plt.subplots(1, 2, figsize=(11, 4))
    for label, logs in groups.items():
        parsed = [read_log(p) for p in logs]
        steps = [s for s, _ in parsed[0][1]]
        acc = np.array([[a for _, a in v] for _, v in parsed])
        line, = ax_acc.plot(steps, acc.mean(0), marker="o", ms=3, label=label)
        if len(acc) > 1:
            ax_acc.fill_between(steps, acc.mean(0) - acc.std(0), acc.mean(0) + acc.std(0), alpha=0.15,
                                color=line.get_color())
        n = min(len(t) for t, _ in parsed)
        loss = np.array([[l for _, l in t[:n]] for t, _ in parsed]).mean(0)
        k = 10
        smooth = np.convolve(loss, np.ones(k) / k, mode="valid")
        ax_loss.plot(np.arange(k, n + 1), smooth, label=label, color=line.get_color())
    ax_acc.set(title=f"{title}: test accuracy (mean ± std over seeds)", xlabel="step", ylabel="accuracy")
    ax_loss.set(title="training loss (10-step mean, mean over seeds)", xlabel="step", ylabel="loss", yscale="log")
    for ax in (ax_acc, ax_loss):
        ax.grid(alpha=0.3)
        ax.legend()
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)
    plt.close(fig)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--only", choices=["scratch", "finetune", "torch", "report"], action="append",
                    help="run only these parts (repeatable); default: all, then the report")
    ap.add_argument("--depths", default="20,56", help="from-scratch depths (default 20,56)")
    ap.add_argument("--report", default=str(ROOT / "docs" / "znorm"), help="where results.md and the PNGs go")
    a = ap.parse_args()
    parts = set(a.only or ["scratch", "finetune", "torch", "report"])
    if not BUILT.exists():
        raise SystemExit(f"error: {BUILT}: missing (cargo build --release)")
    BIN.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy2(BUILT, BIN)
    atexit.register(BIN.unlink, missing_ok=True)
    depths = [int(d) for d in a.depths.split(",")]
    groups: dict[str, dict[str, list[Path]]] = defaultdict(lambda: defaultdict(list))
    targets: dict[str, float] = {}
    for ds in ("fashion", "mnist"):
        data = make_data(ds)
        for depth in depths:
            setting = f"{ds}-resnet{depth}"
            targets[setting] = TARGET[ds]
            for method in METHODS:
                for seed in SEEDS:
                    name = f"{setting}-{method.replace(':', '')}-s{seed}"
                    if "scratch" in parts:
                        edgetune(make_model(depth, seed), data, method, seed, SCRATCH, name)
                    if finished(name):
                        groups[setting][method].append(finished(name))
    fashion = make_data("fashion")
    r50 = ROOT / "build" / "models" / "resnet50_imagenet.onnx"
    targets["fashion-resnet50-finetune"] = 0.60
    for method in ("none", "znorm"):
        for seed in FINETUNE_SEEDS:
            name = f"fashion-resnet50ft-{method}-s{seed}"
            if "finetune" in parts:
                if not r50.exists():
                    raise SystemExit(f"error: {r50}: missing (bash tools/fixtures.sh fetches it)")
                edgetune(r50, fashion, method, seed, FINETUNE, name)
            if finished(name):
                groups["fashion-resnet50-finetune"][method].append(finished(name))
    for seed in SEEDS:
        name = f"fashion-resnet20-znorm-s{seed}-torch"
        if "torch" in parts:
            torch_run(make_model(20, seed), fashion, seed, name)
        if finished(name):
            groups["fashion-resnet20"]["znorm (PyTorch)"].append(finished(name))
    if "report" in parts:
        report(Path(a.report), groups, targets)


def report(out: Path, groups: dict[str, dict[str, list[Path]]], targets: dict[str, float]) -> None:
    out.mkdir(parents=True, exist_ok=True)
    results, lines = {}, []
    lines.append("| setting | method | test accuracy | final loss | steps to target |")
    lines.append("|---|---|---|---|---|")
    for setting, by_method in groups.items():
        target = targets[setting]
        results[setting] = {}
        for method, logs in by_method.items():
            s = summarise(logs, target)
            results[setting][method] = s
            reach = s["steps_to_target"]
            got = [r for r in reach if r is not None]
            steps = f"{np.mean(got):.0f} ({len(got)}/{len(reach)} runs)" if got else f"not reached (0/{len(reach)})"
            lines.append(
                f"| {setting} | {method} | {s['accuracy_mean']:.2%} ± {s['accuracy_std']:.2%} (n={s['runs']}) "
                f"| {s['final_loss_mean']:.3f} ± {s['final_loss_std']:.3f} | {steps} (≥ {target:.0%}) |")
        curves(out / f"{setting}.png", setting, by_method)
    (out / "results.md").write_text("\n".join(lines) + "\n")
    (out / "results.json").write_text(json.dumps(results, indent=1) + "\n")
    print("\n".join(lines))
    print(f"wrote {out}/results.md, results.json and {len(groups)} PNGs")


if __name__ == "__main__":
    main()
