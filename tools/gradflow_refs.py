#!/usr/bin/env python3
"""PyTorch references for `edgetune grad-flow` (run by hand; torch venv; needs tools/fixtures.sh's
models; its outputs in models/gradflow_refs/<case>.json are committed).

    PY=$(tools/venv.sh torch) && $PY tools/gradflow_refs.py

For the gradient cases below (tools/fixture_data.py: same models, inputs and labels as
tools/grad_refs.py), every residual block's forward is replaced by the same computation with its
input fed to the branch and to the shortcut through two separate `x * 1.0` nodes (exact), whose
gradients are captured: the branch's and the skip path's contributions to the gradient at the
block input. Computed in float64 (weights and inputs cast exactly) and, for reference, float32.
Writes {"case", "torch", "generated_by", "blocks": [{"block", "projection", "skip_norm",
"branch_norm", "cosine", "sum_norm"} in forward order], "float32": the same list}.
"""
from __future__ import annotations

import json
import sys
import time
import types
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
import fixture_data  # noqa: E402
from grad_refs import BUILD_MODELS, build_model, load_onnx_weights  # noqa: E402

CASES = ["resnet20_cifar-b8-32x32-train", "resnet20_cifar-b8-32x32-frozen", "resnet18_bn_op17-b4-64x64-train"]
OUT = Path(__file__).resolve().parent.parent / "models" / "gradflow_refs"


def split_forward(block: torch.nn.Module, captured: list) -> None:
    """Replace a BasicBlock's forward by one that records its skip and branch input gradients."""
    slot: dict = {}
    captured.append(slot)
    shortcut = getattr(block, "shortcut", None) or getattr(block, "downsample", None)

    def forward(self, x):
        xb, xs = x * 1.0, x * 1.0
        xb.register_hook(lambda g: slot.__setitem__("branch", g.detach().clone()))
        xs.register_hook(lambda g: slot.__setitem__("skip", g.detach().clone()))
        out = self.relu(self.bn1(self.conv1(xb)))
        out = self.bn2(self.conv2(out))
        skip = shortcut(xs) if shortcut is not None else xs
        return F.relu(out + skip)

    slot["projection"] = shortcut is not None and len(list(shortcut.parameters())) > 0
    block.forward = types.MethodType(forward, block)


def blocks_of(model: torch.nn.Module) -> list[torch.nn.Module]:
    return [m for m in model.modules() if type(m).__name__ == "BasicBlock"]


def run(case: str, dtype: torch.dtype) -> list[dict]:
    info = fixture_data.case_info(case)
    model = build_model(info["model"])
    load_onnx_weights(model, BUILD_MODELS / f"{info['model']}.onnx")
    model.to(dtype).train(info["bn"] == "train")
    captured: list = []
    for b in blocks_of(model):
        split_forward(b, captured)
    x, labels = fixture_data.grad_case(case)
    loss = F.cross_entropy(model(torch.from_numpy(x).to(dtype)), torch.from_numpy(labels))
    loss.backward()
    rows = []
    for i, c in enumerate(captured):
        s, b = c["skip"].double().flatten(), c["branch"].double().flatten()
        sn, bn = float(s.norm()), float(b.norm())
        rows.append({"block": i + 1, "projection": c["projection"], "skip_norm": sn, "branch_norm": bn,
                     "cosine": float(s @ b) / (sn * bn) if sn > 0 and bn > 0 else 0.0,
                     "sum_norm": float((s + b).norm())})
    return rows


def main() -> None:
    torch.set_num_threads(2)
    OUT.mkdir(parents=True, exist_ok=True)
    for case in CASES:
        out = {"case": case, "torch": torch.__version__, "generated_by": "tools/gradflow_refs.py",
               "generated_at": time.strftime("%Y-%m-%d"), "blocks": run(case, torch.float64),
               "float32": run(case, torch.float32)}
        path = OUT / f"{case}.json"
        path.write_text(json.dumps(out, indent=1) + "\n")
        print(f"wrote {path} ({len(out['blocks'])} blocks)")


if __name__ == "__main__":
    main()
