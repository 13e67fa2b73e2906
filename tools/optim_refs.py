#!/usr/bin/env python3
"""PyTorch optimizer-trajectory references for edgetune's finetuning (run by hand; needs the torch
venv and the filled models from tools/fixtures.sh; its outputs in models/optim_refs/ are committed).

    bash tools/fixtures.sh
    PY=$(tools/venv.sh torch) && $PY tools/optim_refs.py [--only CASE ...]

Model: the CIFAR ResNet-20 of tools/cifar_resnet.py, every float state_dict entry loaded from the
same-named initializer of build/models/resnet20_cifar.onnx (tools/grad_refs.py:load_onnx_weights),
model.train() (BatchNorm on batch statistics; running stats updated at every forward), float32,
torch.set_num_threads(2), torch.use_deterministic_algorithms(True).
Data: x, labels = fixture_data.grad_case("resnet20_cifar-b8-32x32-train"), the SAME batch at every
step. One optimizer over model.parameters() (a single parameter group, every parameter: conv/fc
weights, fc bias, BN weight/bias), torch.optim with foreach=False, fused=False.
Each of STEPS = 3 steps:
    opt.zero_grad(); loss = cross_entropy(model(x), labels) (mean); loss.backward();
    every p.grad transformed in place (TRANSFORMS below); opt.step()
Transforms (design.md "Numerics"), per parameter tensor g = p.grad, computed in the model's dtype:
    none:  g unchanged
    znorm: if g.numel() > 1: g = (g - g.mean()) / (g.std(unbiased=False) + 1e-8)
    gc:    if g.dim() > 1:   g = g - g.mean(dim=(1, ..., g.dim()-1), keepdim=True)
Optimizers (OPTIMIZERS below; torch defaults otherwise):
    sgd:   SGD(lr=0.05, momentum=0.9, weight_decay=5e-4)    (dampening 0, nesterov False)
    adam:  Adam(lr=1e-3)                                    (betas (0.9, 0.999), eps 1e-8, wd 0)
    adamw: AdamW(lr=1e-3, weight_decay=1e-2)                (betas (0.9, 0.999), eps 1e-8)
Cases `<opt>-<transform>` (9). Writes models/optim_refs/<case>.json (one line per tensor):
  {"case", "model", "input_case", "optimizer": {"name", "lr", "momentum", "dampening", "nesterov",
   "weight_decay", "betas", "eps"} (null where the optimizer has no such setting), "transform",
   "znorm_eps", "steps", "torch", "generated_by",
   "losses": [float32 loss at step 1, 2, 3, each before that step's update], "losses_f64",
   "losses_f32_noise": [per step, the largest |loss - loss_f64| / |loss_f64| among the float32 runs
   below (this one and VARIANTS)],
   "f32_runs_within_tol": [how many of those float32 runs are within TOL = 1e-5 of float64 on every
   tensor (fixture_data.summary_err), how many runs],
   "params": {name: summary of the parameter after the 3 steps, named_parameters() order},
   "state": {name: {"momentum_buffer": summary} (sgd) or {"exp_avg", "exp_avg_sq"} (adam, adamw)},
   "running": {name: summary of running_mean / running_var after the 3 steps}}
with summary(t) = fixture_data.summary (shape, norm, proj, max_abs, samples; see tools/grad_refs.py)
plus "f32_rel_err" = ||t32 - t64||_2 / ||t64||_2: the same trajectory run in float64 (weights and
input cast exactly, model.double(), same transforms and optimizers), i.e. the float32 rounding noise
of the reference itself; "f32_noise": the largest distance from the float64 result, in the measure
the Rust test applies (fixture_data.summary_err), among this float32 run and PyTorch's other float32
implementations of it (VARIANTS: 1 thread, channels-last, oneDNN off, the batch rows in 8 other
orders), for choosing test tolerances; and "f64": the summary of that float64 result (what
tests/optim_reference.rs compares against). The noise floor is ~1e-7 for SGD without ZNorm but
reaches 1e-3 to 1e-1 (optimizer state) with Adam/AdamW and with ZNorm: Adam's first step is
lr * g / (|g| + eps), so a gradient entry near zero whose rounding differs moves its weight by up to
lr; a ReLU input within rounding of zero passes or stops its gradient depending on the rounding;
and BatchNorm-train gradients at later steps amplify both; SGD+ZNorm (unit-std steps of 0.05)
drives the loss up (2.42 -> 4.39) into a badly conditioned region. Reruns are byte-identical.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
import fixture_data  # noqa: E402
from grad_refs import build_model, load_onnx_weights, rel_err, summary  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
MODEL = "resnet20_cifar"
INPUT_CASE = "resnet20_cifar-b8-32x32-train"
OUT = ROOT / "models" / "optim_refs"
STEPS = 3
ZNORM_EPS = 1e-8
# The bound, relative to the float64 trajectory (tests/optim_reference.rs: TOL).
TOL = 1e-5

OPTIMIZERS = {
    "sgd": (torch.optim.SGD, {"lr": 0.05, "momentum": 0.9, "weight_decay": 5e-4}),
    "adam": (torch.optim.Adam, {"lr": 1e-3}),
    "adamw": (torch.optim.AdamW, {"lr": 1e-3, "weight_decay": 1e-2}),
}
TRANSFORMS = ("none", "znorm", "gc")
CASES = [f"{o}-{t}" for o in OPTIMIZERS for t in TRANSFORMS]


def log(msg: str) -> None:
    print(f"[optim_refs] {msg}", flush=True)


def transform_(g: torch.Tensor, kind: str) -> None:
    """Apply the gradient transform to g in place (in g's dtype)."""
    if kind == "none":
        return
    if kind == "znorm":
        if g.numel() > 1:
            g.copy_((g - g.mean()) / (g.std(unbiased=False) + ZNORM_EPS))
        return
    if kind == "gc":
        if g.dim() > 1:
            g.copy_(g - g.mean(dim=tuple(range(1, g.dim())), keepdim=True))
        return
    raise ValueError(f"unknown transform {kind}")


def make_optimizer(name: str, params) -> torch.optim.Optimizer:
    cls, kw = OPTIMIZERS[name]
    return cls(params, **kw, foreach=False, fused=False)


# Other float32 implementations of the same arithmetic: PyTorch with one thread instead of two,
# with channels-last activations, with oneDNN (mkldnn) convolutions off, and with the batch's rows
# in other orders (the loss is a mean over rows and BatchNorm's statistics are sums over them, so
# the order changes only the order of float32 additions). Each is as correct as the default; how far
# each lands from the float64 trajectory measures how much float32 rounding alone can move this case.
BATCH_ORDERS = 8
VARIANTS = ("1-thread", "channels-last", "no-mkldnn") + tuple(f"batch-order-{k}" for k in range(1, BATCH_ORDERS + 1))


def batch(variant: str | None) -> tuple[np.ndarray, np.ndarray]:
    """The fixture batch; for a `batch-order-K` variant, its rows permuted by a seed-K shuffle."""
    x, labels = fixture_data.grad_case(INPUT_CASE)
    if variant is not None and variant.startswith("batch-order-"):
        order = np.random.default_rng(int(variant.rsplit("-", 1)[1])).permutation(len(labels))
        x, labels = x[order], labels[order]
    return np.ascontiguousarray(x), np.ascontiguousarray(labels)


def trajectory(case: str, dtype: torch.dtype, variant: str | None = None, watch=None, after_step=None):
    """(model, optimizer, losses) after STEPS steps of `case` in `dtype` (PyTorch run as `variant`).
    `watch(model)` is called once before the first step (to register hooks), `after_step(model,
    step)` after each optimizer step (p.grad still holds that step's transformed gradient)."""
    torch.set_num_threads(1 if variant == "1-thread" else 2)
    torch.backends.mkldnn.enabled = variant != "no-mkldnn"
    opt_name, kind = case.split("-")
    model = build_model(MODEL)
    load_onnx_weights(model, ROOT / "build" / "models" / f"{MODEL}.onnx")
    model.to(dtype)
    if variant == "channels-last":
        model.to(memory_format=torch.channels_last)
    model.train()
    for p in model.parameters():
        p.requires_grad_(True)
    if watch is not None:
        watch(model)
    opt = make_optimizer(opt_name, model.parameters())
    x_np, labels_np = batch(variant)
    x = torch.from_numpy(x_np).to(dtype)
    if variant == "channels-last":
        x = x.contiguous(memory_format=torch.channels_last)
    labels = torch.from_numpy(labels_np)
    losses = []
    for step in range(STEPS):
        opt.zero_grad(set_to_none=True)
        loss = F.cross_entropy(model(x), labels)
        if not torch.isfinite(loss):
            raise SystemExit(f"{case} {dtype}: non-finite loss {loss.item()}")
        loss.backward()
        with torch.no_grad():
            for p in model.parameters():
                transform_(p.grad, kind)
        opt.step()
        losses.append(float(loss.item()))
        if after_step is not None:
            after_step(model, step)
    torch.set_num_threads(2)
    torch.backends.mkldnn.enabled = True
    return model, opt, losses


def tensors_of(model, opt) -> dict:
    """Every compared tensor of a trajectory's end, keyed like the JSON (params/state/running)."""
    out = {("params", n): p for n, p in model.named_parameters()}
    out.update({("state", n, k): t for n, st in state_of(model, opt).items() for k, t in st.items()})
    out.update({("running", n): b for n, b in model.named_buffers()
                if n.endswith("running_mean") or n.endswith("running_var")})
    return out


def opt_meta(name: str, opt: torch.optim.Optimizer) -> dict:
    d = opt.defaults
    betas = d.get("betas")
    def num(v):
        return None if v is None else float(v)

    return {"name": name, "lr": num(d["lr"]), "momentum": num(d.get("momentum")),
            "dampening": num(d.get("dampening")), "nesterov": d.get("nesterov"),
            "weight_decay": num(d["weight_decay"]),
            "betas": [float(b) for b in betas] if betas is not None else None,
            "eps": num(d.get("eps"))}


def state_of(model, opt) -> dict:
    """{param name: {state key: tensor}} for the tensor entries of the optimizer state."""
    keys = {"SGD": ("momentum_buffer",), "Adam": ("exp_avg", "exp_avg_sq"),
            "AdamW": ("exp_avg", "exp_avg_sq")}[type(opt).__name__]
    return {name: {k: opt.state[p][k] for k in keys} for name, p in model.named_parameters()}


def with_err(key: tuple, t32: dict, t64: dict, variants: list[dict]) -> dict:
    if not torch.all(torch.isfinite(t32[key])):
        raise SystemExit("non-finite tensor in the reference")
    ref = summary(t64[key])
    noise = max(fixture_data.summary_err(t[key].detach().double().numpy(), ref) for t in [t32] + variants)
    return {**summary(t32[key]), "f32_rel_err": rel_err(t32[key], t64[key]), "f32_noise": noise, "f64": ref}


def run_case(case: str) -> dict:
    m32, o32, losses = trajectory(case, torch.float32)
    m64, o64, losses64 = trajectory(case, torch.float64)
    t32, t64 = tensors_of(m32, o32), tensors_of(m64, o64)
    runs = [trajectory(case, torch.float32, v) for v in VARIANTS]
    variants = [tensors_of(m, o) for m, o, _ in runs]
    loss_noise = [max(abs(run[step] - want) / abs(want) for run in [losses] + [r[2] for r in runs])
                  for step, want in enumerate(losses64)]
    params = {n: with_err(("params", n), t32, t64, variants) for n, _ in m32.named_parameters()}
    state = {n: {k: with_err(("state", n, k), t32, t64, variants) for k in st}
             for n, st in state_of(m32, o32).items()}
    running = {key[1]: with_err(key, t32, t64, variants) for key in t32 if key[0] == "running"}
    refs = {key: summary(t) for key, t in t64.items()}
    within = sum(bool(max(fixture_data.summary_err(run[key].detach().double().numpy(), ref) for key, ref in refs.items())
                 <= TOL) for run in [t32] + variants)
    opt_name, kind = case.split("-")
    return {
        "case": case,
        "model": MODEL,
        "input_case": INPUT_CASE,
        "optimizer": opt_meta(opt_name, o32),
        "transform": kind,
        "znorm_eps": ZNORM_EPS if kind == "znorm" else None,
        "steps": STEPS,
        "torch": torch.__version__,
        "generated_by": "tools/optim_refs.py",
        "losses": losses,
        "losses_f64": losses64,
        "losses_f32_noise": loss_noise,
        "f32_runs_within_tol": [within, 1 + len(variants)],
        "params": params,
        "state": state,
        "running": running,
    }




def worst_err(ref: dict) -> tuple[float, str]:
    """(largest f32_rel_err in the file, where)."""
    cands = [(s["f32_rel_err"], f"params.{n}") for n, s in ref["params"].items()]
    cands += [(s["f32_rel_err"], f"state.{n}.{k}") for n, st in ref["state"].items()
              for k, s in st.items()]
    cands += [(s["f32_rel_err"], f"running.{n}") for n, s in ref["running"].items()]
    return max(cands)


def main() -> None:
    ap = argparse.ArgumentParser(description="Write PyTorch optimizer trajectories to models/optim_refs/.")
    ap.add_argument("--only", nargs="*", help=f"case names (default: all of {CASES})")
    args = ap.parse_args()
    torch.set_num_threads(2)
    torch.use_deterministic_algorithms(True)
    log(f"torch {torch.__version__}, threads {torch.get_num_threads()}, deterministic "
        f"{torch.are_deterministic_algorithms_enabled()}")
    cases = CASES
    if args.only:
        bad = [c for c in args.only if c not in CASES]
        if bad:
            raise SystemExit(f"unknown cases {bad}; known: {CASES}")
        cases = [c for c in CASES if c in args.only]
    OUT.mkdir(parents=True, exist_ok=True)
    for case in cases:
        t0 = time.perf_counter()
        ref = run_case(case)
        dt = time.perf_counter() - t0
        text = fixture_data.summaries_to_text(ref)
        path = OUT / f"{case}.json"
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(text)
        tmp.replace(path)
        err, where = worst_err(ref)
        pe = [s["f32_rel_err"] for s in ref["params"].values()]
        log(f"{case}: losses {', '.join(f'{v:.6f}' for v in ref['losses'])}; worst f32 rel err "
            f"{err:.1e} ({where}), params median {float(np.median(pe)):.1e} max {max(pe):.1e}; float32 runs "
            f"within {TOL:g} on every tensor {ref['f32_runs_within_tol'][0]}/{ref['f32_runs_within_tol'][1]}; "
            f"{dt:.2f} s, {len(text) / 1024:.0f} KB")


if __name__ == "__main__":
    main()
