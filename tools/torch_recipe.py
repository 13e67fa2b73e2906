#!/usr/bin/env python3
"""PyTorch run of an `edgetune finetune` recipe on a CIFAR-style ResNet-20, to compare curves.

Same starting weights (read from the ONNX file edgetune starts from), same data (idx files:
Fashion-MNIST or MNIST, gray replicated to 3 channels, bilinear 28 -> 32, scaled to [0, 1]: the
`unit` preprocessing), same recipe: shuffled batches per epoch, `crop` (pad 4 with zeros, random
window) and `flip` augmentation, BatchNorm in training mode, per-tensor ZNorm
((g - mean) / (std_population + eps), one-element tensors unchanged) before Adam, cosine learning
rate to zero at the last step. The random streams differ from edgetune's (shuffling, augmentation),
so the curves agree within seed noise, not step by step.

Writes the same JSON lines as `edgetune finetune --log` (step, epoch, loss, accuracy, lr,
images_per_s; step, epoch, val_accuracy per validation) and prints the same "epoch N validation
accuracy X" lines. The depth (ResNet-20, -56, ...) is read off the ONNX file's initializer names.

  PY=$(tools/venv.sh torch)
  $PY tools/torch_recipe.py build/models/resnet20_cifar.onnx --data /usr/share/datasets/fashion-mnist \
      --epochs 4 --batch 128 --lr 2e-3 --seed 1 --log build/runs/r20_fashion_torch.jsonl
"""
from __future__ import annotations

import argparse
import gzip
import json
import math
import pathlib
import struct
import sys
import time

import numpy as np
import onnx
import torch
import torch.nn.functional as F
from onnx import numpy_helper

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
from cifar_resnet import CifarResNet  # noqa: E402


def read_idx(path: pathlib.Path) -> np.ndarray:
    raw = path.read_bytes()
    if raw[:2] == b"\x1f\x8b":
        raw = gzip.decompress(raw)
    dims = raw[3]
    shape = struct.unpack(f">{dims}I", raw[4:4 + 4 * dims])
    return np.frombuffer(raw, np.uint8, offset=4 + 4 * dims).reshape(shape)


def load_split(folder: pathlib.Path, prefix: str) -> tuple[torch.Tensor, torch.Tensor]:
    def find(stem: str) -> pathlib.Path:
        for name in (stem, stem + ".gz"):
            if (folder / name).exists():
                return folder / name
        raise SystemExit(f"error: {folder}: no {stem}[.gz]")

    x = read_idx(find(f"{prefix}-images-idx3-ubyte")).astype(np.float32) / 255.0
    y = read_idx(find(f"{prefix}-labels-idx1-ubyte")).astype(np.int64)
    x = torch.from_numpy(x)[:, None]
    x = F.interpolate(x, size=(32, 32), mode="bilinear", align_corners=False).clamp(0, 1)
    return x.expand(-1, 3, -1, -1).contiguous(), torch.from_numpy(y)


def model_from_onnx(path: str) -> torch.nn.Module:
    weights = {i.name: torch.from_numpy(numpy_helper.to_array(i).copy()) for i in onnx.load(path).graph.initializer}
    # ResNet-(6n+2): n blocks per stage.
    n = sum(1 for k in weights if k.startswith("layer1.") and k.endswith(".conv1.weight"))
    net = CifarResNet((n, n, n))
    missing = [k for k in net.state_dict() if k not in weights and not k.endswith("num_batches_tracked")]
    if missing:
        raise SystemExit(f"error: {path} lacks {missing[:3]}...")
    net.load_state_dict(weights, strict=False)
    return net


def augment(x: torch.Tensor, gen: torch.Generator, kinds: set[str]) -> torch.Tensor:
    n, _, h, w = x.shape
    out = x.clone()
    if "crop" in kinds:
        padded = F.pad(x, (4, 4, 4, 4))
        dy = torch.randint(0, 9, (n,), generator=gen)
        dx = torch.randint(0, 9, (n,), generator=gen)
        out = torch.stack([padded[i, :, dy[i]:dy[i] + h, dx[i]:dx[i] + w] for i in range(n)])
    if "flip" in kinds:
        flip = torch.rand(n, generator=gen) < 0.5
        out[flip] = out[flip].flip(-1)
    return out


@torch.no_grad()
def znorm_(params: list[torch.nn.Parameter], eps: float) -> None:
    for p in params:
        if p.grad is not None and p.grad.numel() > 1:
            g = p.grad
            g.sub_(g.mean()).div_(g.std(unbiased=False) + eps)


@torch.no_grad()
def accuracy(net: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, batch: int) -> float:
    net.eval()
    correct = sum((net(x[i:i + batch]).argmax(1) == y[i:i + batch]).sum().item() for i in range(0, len(y), batch))
    net.train()
    return correct / len(y)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("model")
    ap.add_argument("--data", required=True, help="folder of idx files (train-* and t10k-*)")
    ap.add_argument("--epochs", type=int, default=4)
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--znorm-eps", type=float, default=1e-8)
    ap.add_argument("--no-znorm", action="store_true")
    ap.add_argument("--augment", default="crop,flip", help="crop,flip (default), crop, or none")
    ap.add_argument("--val-every", type=int, default=0, help="also validate every N steps, as edgetune's --val-every")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--log", required=True)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    gen = torch.Generator().manual_seed(a.seed)
    folder = pathlib.Path(a.data)
    x, y = load_split(folder, "train")
    vx, vy = load_split(folder, "t10k")
    net = model_from_onnx(a.model).train()
    params = list(net.parameters())
    opt = torch.optim.Adam(params, lr=a.lr)
    per_epoch = math.ceil(len(y) / a.batch)
    total = a.epochs * per_epoch
    kinds = set(a.augment.split(",")) - {"none", ""}
    before = accuracy(net, vx, vy, a.batch)
    print(f"validation accuracy before: {before:.4f}", flush=True)
    started, step, val_secs = time.perf_counter(), 0, 0.0
    with open(a.log, "w") as log:
        log.write(json.dumps({"step": 0, "epoch": 0, "val_accuracy": before}) + "\n")
        for epoch in range(a.epochs):
            order = torch.randperm(len(y), generator=gen)
            for pos in range(per_epoch):
                idx = order[pos * a.batch:(pos + 1) * a.batch]
                xb, yb = augment(x[idx], gen, kinds), y[idx]
                lr = a.lr * 0.5 * (1 + math.cos(math.pi * step / total))
                for group in opt.param_groups:
                    group["lr"] = lr
                t = time.perf_counter()
                opt.zero_grad(set_to_none=True)
                logits = net(xb)
                loss = F.cross_entropy(logits, yb)
                loss.backward()
                if not a.no_znorm:
                    znorm_(params, a.znorm_eps)
                opt.step()
                ips = len(yb) / (time.perf_counter() - t)
                step += 1
                acc = (logits.argmax(1) == yb).float().mean().item()
                row = {"step": step, "epoch": epoch + 1, "loss": loss.item(), "accuracy": acc, "lr": lr,
                       "images_per_s": ips}
                log.write(json.dumps(row) + "\n")
                epoch_end = pos + 1 == per_epoch
                if epoch_end or (a.val_every and step % a.val_every == 0):
                    t = time.perf_counter()
                    acc = accuracy(net, vx, vy, a.batch)
                    val_secs += time.perf_counter() - t
                    log.write(json.dumps({"step": step, "epoch": epoch + 1, "val_accuracy": acc}) + "\n")
                    where = f"epoch {epoch + 1}" if epoch_end else f"step {step}"
                    print(f"{where} validation accuracy {acc:.4f}", flush=True)
    secs = time.perf_counter() - started - val_secs
    print(f"{total} steps ({a.epochs * len(y)} images) in {secs:.1f} s, {a.epochs * len(y) / secs:.1f} img/s; "
          f"torch {torch.__version__}, {a.threads} threads")


if __name__ == "__main__":
    main()
