#!/usr/bin/env python3
"""Where an optimizer case leaves PyTorch's float64 trajectory, step by step (run by hand; needs
the torch venv, the fixtures and a release build):

    cargo build --release && bash tools/fixtures.sh
    PY=$(tools/venv.sh torch) && $PY tools/optim_probe.py adam-gc

Runs the case of tools/optim_refs.py (same model, batch, transform and optimizer settings) for
1, 2 and 3 steps through `edgetune finetune --steps N --no-shuffle`, and in PyTorch in float64 and
float32 keeping every tensor; prints, per step, the tensors furthest from float64 (edgetune's and
PyTorch float32's relative error, and how many entries are off by more than lr/2: Adam steps whose
direction flipped), at those entries the step's transformed gradient in float64 and float32, and
the ReLU inputs that are within 1e-6 of zero in float64 at each step. This is how docs/verification.md traces
the cases furthest from float64 to single events float32 cannot decide: a transformed gradient
entry about Adam's eps (1e-8), or a ReLU input within rounding of zero.
"""
from __future__ import annotations

import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import onnx
import torch
from onnx import numpy_helper

sys.path.insert(0, str(Path(__file__).resolve().parent))
import fixture_data  # noqa: E402
from optim_refs import INPUT_CASE, MODEL, OPTIMIZERS, STEPS, trajectory  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent


# ReLU inputs closer to zero than this (in float64) are reported: float32 rounding of the weights
# before them is ~1e-7 of the activation scale, so it can decide which side they fall on.
KINK = 1e-6


def torch_run(case: str, dtype: torch.dtype, kinks: list | None = None):
    """Parameters after each step, and each step's transformed gradients, as float64 arrays
    (optim_refs.trajectory's run of the case); when `kinks` is a list, appends (step, ReLU module,
    |input|, index) for each ReLU input within KINK of zero."""
    params, ghats = [], []

    def watch(model):
        def record(name, inp):
            v = inp[0].detach().abs()
            for i in map(tuple, torch.nonzero(v < KINK).tolist()):
                kinks.append((len(params) + 1, name, float(v[i]), i))
        for name, mod in model.named_modules():
            if isinstance(mod, torch.nn.ReLU):
                mod.register_forward_pre_hook(lambda _m, inp, name=name: record(name, inp))

    def after_step(model, _step):
        ghats.append({n: p.grad.double().numpy().copy() for n, p in model.named_parameters()})
        params.append({n: p.detach().double().numpy().copy() for n, p in model.named_parameters()})

    trajectory(case, dtype, watch=watch if kinks is not None else None, after_step=after_step)
    return params, ghats


def edgetune_run(case: str, tmp: Path) -> list[dict[str, np.ndarray]]:
    """edgetune's initializers after 1..STEPS steps of the case, through the CLI."""
    opt_name, kind = case.split("-")
    kw = OPTIMIZERS[opt_name][1]
    x, labels = fixture_data.grad_case(INPUT_CASE)
    data = tmp / "batch.npz"
    np.savez(data, x=x.astype(np.float32), y=labels.astype(np.int64))
    out = []
    for steps in range(1, STEPS + 1):
        path = tmp / f"steps{steps}.onnx"
        subprocess.run(
            [str(ROOT / "target/release/edgetune"), "finetune", str(ROOT / "build/models" / f"{MODEL}.onnx"),
             "--data", f"npz:{data}", "--output", str(path), "--steps", str(steps), "--batch", str(len(labels)),
             "--no-shuffle", "--bn", "train", "--optimizer", opt_name, "--lr", str(kw["lr"]),
             "--momentum", str(kw.get("momentum", 0.0)), "--weight-decay", str(kw.get("weight_decay", 0.0)),
             "--grad-norm", kind, "--quiet"],
            check=True, stdout=subprocess.DEVNULL)
        out.append({t.name: numpy_helper.to_array(t).astype(np.float64) for t in onnx.load(path).graph.initializer})
    return out


def main() -> None:
    case = sys.argv[1] if len(sys.argv) > 1 else "adam-gc"
    lr = OPTIMIZERS[case.split("-")[0]][1]["lr"]
    kinks = []
    p64, g64 = torch_run(case, torch.float64, kinks)
    p32, g32 = torch_run(case, torch.float32)
    with tempfile.TemporaryDirectory() as tmp:
        ours = edgetune_run(case, Path(tmp))
    rel = lambda a, b: float(np.linalg.norm(a - b) / np.linalg.norm(b))  # noqa: E731
    for step in range(STEPS):
        rows = []
        for name, ref in p64[step].items():
            e, t = ours[step][name].reshape(ref.shape), p32[step][name]
            rows.append((rel(e, ref), name, rel(t, ref), int((abs(e - ref) > lr / 2).sum()),
                         int((abs(t - ref) > lr / 2).sum())))
        rows.sort(reverse=True)
        print(f"{case} step {step + 1}: tensor, relative error from float64 (edgetune, PyTorch float32), "
              f"entries off by > lr/2 (edgetune, PyTorch float32)")
        for e, name, t, fe, ft in rows[:6]:
            print(f"  {name:32s} {e:.2e} {t:.2e} {fe:4d} {ft:4d}")
        for _, name, _, _, _ in rows[:3]:
            ref = p64[step][name]
            for i in map(tuple, np.argwhere(abs(ours[step][name].reshape(ref.shape) - ref) > lr / 2)[:3]):
                print(f"    {name}{[int(j) for j in i]}: this step's transformed gradient {g64[step][name][i]:.3e} "
                      f"(float64), {g32[step][name][i]:.3e} (PyTorch float32)")

    print(f"ReLU inputs within {KINK:g} of zero in float64 (float32 may put them on the other side):")
    for step, name, v, i in kinks:
        print(f"  step {step}: {name} input{list(i)} = {v:.2e}")


if __name__ == "__main__":
    main()
