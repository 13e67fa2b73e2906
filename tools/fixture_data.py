"""Deterministic inputs for the gradient fixtures (numpy only; imported by tools/make_fixtures.py
in the light venv and by tools/grad_refs.py in the torch venv).

GRAD_CASES lists the gradient cases: {"case", "model", "shape" [N,C,H,W], "classes", "bn"}.
Case names are `<model>-b<N>-<H>x<W>-<bn>`, e.g. `resnet20_cifar-b8-32x32-train`.

grad_case(case) -> (x float32 NCHW, labels int64 [N]):
    key = the case name without its `-<bn>` suffix (`input_key`), so the train and frozen cases
    of one model+shape share their inputs;
    rng = numpy.random.Generator(PCG64(zlib.crc32(key as UTF-8)));
    x = rng.standard_normal(shape) as float32, then labels = rng.integers(0, classes, N) (int64),
    from the same generator, in that order.

projection(n) -> float64 [n]: r_i = ((i * 2654435761) mod 1000) / 1000 - 0.5, with the product and
    the remainder in uint64 (exact for any n below 2^32), then one float64 division by 1000.0 and a
    subtraction of 0.5. The Rust tests reproduce it bit for bit.

sample_indices(n) -> 16 ints: (k * 7919 + 13) mod n for k = 0..15 (duplicates when n is small).

Both define the compact gradient summaries in models/grad_refs/ (see tools/grad_refs.py).
"""
from __future__ import annotations

import zlib

import json

import numpy as np

BN_MODES = ("train", "frozen")
# The residual CNN families beyond ResNet (issue 19): torchvision architectures that
# tools/export_models.py exports twice, as `<arch>_legacy` and `<arch>_dynamo`.
FAMILIES = ["mobilenet_v2", "mobilenet_v3_small", "mobilenet_v3_large", "efficientnet_b0",
            "regnet_y_400mf", "resnext50_32x4d"]


def _cases() -> list[dict]:
    specs = [
        ("resnet20_cifar", [8, 3, 32, 32], 10),
        ("resnet18_bn_op17", [2, 3, 224, 224], 1000),
        ("resnet18_bn_op17", [4, 3, 64, 64], 1000),
        ("resnet50_bn_op17", [2, 3, 224, 224], 1000),
        ("mobilenet_v2_bn", [2, 3, 64, 64], 1000),
    ]
    out = []
    for model, shape, classes in specs:
        for bn in BN_MODES:
            n, _, h, w = shape
            out.append({"case": f"{model}-b{n}-{h}x{w}-{bn}", "model": model,
                        "shape": list(shape), "classes": classes, "bn": bn, "torch": "state_dict"})
    # The families of issue 19, as their exporters' defaults write them: BatchNorm folded into
    # the convolutions, so there is no BN mode to choose (eval: `frozen`). The torch model is the
    # architecture with its BatchNorms fused the same way (tools/grad_refs.py, `fused`).
    for arch in FAMILIES:
        for exporter in ("legacy", "dynamo"):
            model = f"{arch}_{exporter}"
            out.append({"case": f"{model}-b2-64x64-frozen", "model": model, "shape": [2, 3, 64, 64],
                        "classes": 1000, "bn": "frozen", "torch": "fused", "arch": arch})
    return out


GRAD_CASES: list[dict] = _cases()
_BY_NAME = {c["case"]: c for c in GRAD_CASES}


def case_info(case: str) -> dict:
    try:
        return _BY_NAME[case]
    except KeyError:
        raise KeyError(f"unknown gradient case {case!r}; known: {sorted(_BY_NAME)}") from None


def input_key(case: str) -> str:
    """The seed key of a case: its name without the `-train` / `-frozen` suffix."""
    info = case_info(case)
    suffix = "-" + info["bn"]
    assert case.endswith(suffix)
    return case[: -len(suffix)]


def grad_case(case: str) -> tuple[np.ndarray, np.ndarray]:
    """(x float32 [N,C,H,W], labels int64 [N]) for a case of GRAD_CASES (rule in the module doc)."""
    info = case_info(case)
    rng = np.random.Generator(np.random.PCG64(zlib.crc32(input_key(case).encode("utf-8"))))
    x = rng.standard_normal(info["shape"]).astype(np.float32)
    labels = rng.integers(0, info["classes"], info["shape"][0]).astype(np.int64)
    return x, labels


def projection(n: int) -> np.ndarray:
    """float64 [n]: r_i = ((i * 2654435761) mod 1000) / 1000 - 0.5, integer part in uint64."""
    i = np.arange(n, dtype=np.uint64)
    k = (i * np.uint64(2654435761)) % np.uint64(1000)
    return k.astype(np.float64) / 1000.0 - 0.5


def sample_indices(n: int) -> list[int]:
    """The 16 flat indices (k * 7919 + 13) mod n, k = 0..15."""
    if n <= 0:
        raise ValueError("sample_indices needs n >= 1")
    return [(k * 7919 + 13) % n for k in range(16)]


def summary(g: np.ndarray) -> dict:
    """Compact summary of a tensor (flattened, float64): shape, L2 norm, projection onto
    projection(n), max |g| and the values at sample_indices(n)."""
    shape = [int(d) for d in g.shape]
    f = np.asarray(g, dtype=np.float64).reshape(-1)
    n = f.size
    return {
        "shape": shape,
        "norm": float(np.sqrt(np.dot(f, f))),
        "proj": float(np.dot(f, projection(n))),
        "max_abs": float(np.abs(f).max()) if n else 0.0,
        "samples": [[i, float(f[i])] for i in sample_indices(n)],
    }


def summary_err(g: np.ndarray, s: dict) -> float:
    """How far `g` is from the tensor a summary describes, in the measure the Rust tests apply
    (tests/common/mod.rs: `compare_summary`): the largest of the norm's relative difference, the
    projection's difference over norm * |r|, and each sample's difference over max_abs + rms."""
    f = np.asarray(g, dtype=np.float64).reshape(-1)
    n = f.size
    scale = max(s["norm"], 1e-30)
    r = projection(n)
    worst = max(abs(float(np.sqrt(np.dot(f, f))) - s["norm"]) / scale,
                abs(float(np.dot(f, r)) - s["proj"]) / (scale * float(np.linalg.norm(r))))
    allowed = max(s["max_abs"] + s["norm"] / np.sqrt(n), 1e-30)
    return max([worst] + [abs(float(f[i]) - want) / allowed for i, want in s["samples"]])


if __name__ == "__main__":
    for c in GRAD_CASES:
        x, y = grad_case(c["case"])
        print(c["case"], x.shape, x.dtype, float(np.abs(x).mean()), y.tolist())


def summaries_to_text(ref: dict, tables: tuple = ("params", "state", "running")) -> str:
    """JSON with one line per entry of the `tables` dicts (one per tensor summary): small
    diffs and small files for the committed references."""
    lines = ["{"]
    items = list(ref.items())
    for k, (key, val) in enumerate(items):
        comma = "," if k + 1 < len(items) else ""
        if key in tables:
            lines.append(f"  {json.dumps(key)}: {{")
            sub = list(val.items())
            for j, (name, s) in enumerate(sub):
                c = "," if j + 1 < len(sub) else ""
                lines.append(f"    {json.dumps(name)}: {json.dumps(s)}{c}")
            lines.append("  }" + comma)
        else:
            lines.append(f"  {json.dumps(key)}: {json.dumps(val)}{comma}")
    lines.append("}")
    text = "\n".join(lines) + "\n"
    json.loads(text)  # well-formed
    return text
