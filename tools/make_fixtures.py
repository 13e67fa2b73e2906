#!/usr/bin/env python3
"""Build the test models and their onnxruntime reference outputs under build/.

Runs in the light venv (numpy + onnx + onnxruntime; no torch), from tools/fixtures.sh:

    tools/.venv-light/bin/python tools/make_fixtures.py [--force]

Idempotent: a file is rebuilt only when it is missing or older than one of its inputs
(the committed model, this script).

1. Models -> build/models/<name>.onnx
   * models/skeletons/<name>.onnx (committed without weight data) are filled with the
     deterministic rule below. A skeleton whose metadata_props holds
     `edgetune.external_data = 1` (the dynamo export) is written with external data beside it:
     build/models/<name>.onnx.data (location relative to the model).
   * models/tiny/<name>.onnx (committed whole) are copied unchanged.
   * build/models/resnet50_imagenet.onnx (tools/fetch_resnet50.py) is used where it exists.

2. References -> build/refs/<name>.npz with float32 arrays x0, y0, x1, y1, ... (inputs and
   onnxruntime outputs; ORT_ENABLE_ALL, one intra-op thread) and build/refs/index.json:
   [{"name": ..., "model": "build/models/<name>.onnx", "cases": [{"x": "x0", "y": "y0"}, ...]}]
   Inputs are standard normal float32 from numpy Generator(PCG64(crc32(name) + case index)).
   Cases: a model whose input declares a fixed batch (resnet18_dynamo_b1: [1,3,224,224], the
   batch baked into a Reshape) runs only at its declared shape: two cases at that shape;
   ImageNet-size models (declared 224x224): batch 1 at 224x224 and batch 2 at 64x64;
   resnet20_cifar: batch 8 at 32x32; tiny models: batch 2 and batch 1 at their declared size;
   resnet50_imagenet: batch 1 chelsea.png and batch 1 coffee.png, 224x224 Caffe-preprocessed NHWC
   (build/images/*_224_caffe_nhwc.npy from fetch_resnet50.py).

3. Gradient-case inputs -> build/refs/grad/<case>.npz with arrays x (float32 NCHW) and labels
   (int64 [N]) for every case of tools/fixture_data.py:GRAD_CASES (fixture_data.grad_case; the
   train and frozen cases of one model+shape hold the same arrays). The matching PyTorch gradient
   summaries are committed in models/grad_refs/<case>.json (tools/grad_refs.py, torch venv).

Weight fill rule (fill_array; also used by tools/export_models.py for the tiny models):
   every float initializer without data gets values from
   numpy.random.Generator(PCG64(zlib.crc32(initializer name as UTF-8))), by shape and name
   (name matched lower-case, first rule that applies):
     ndim >= 2                              normal * sqrt(2 / fan_in), fan_in = prod(dims[1:])
     1-D, name contains "var"               uniform(0.5, 1.5)     (running_var, moving_variance)
     1-D, name contains "mean"              normal * 0.1          (running_mean, moving_mean)
     1-D, name contains "bias" or "beta"    normal * 0.05
     1-D, name contains "weight"/"gamma"/"scale"   uniform(0.5, 1.0)   (BatchNorm scale)
     any other 1-D tensor                   normal * 0.05         (e.g. folded Conv biases)
   Skeletons keep the data of every non-float initializer (int64 shape constants, ...) and of
   0-d float scalars; only float tensors with ndim >= 1 are stripped and refilled.
"""
from __future__ import annotations

import argparse
import json
import math
import shutil
import sys
import zlib
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper

sys.path.insert(0, str(Path(__file__).resolve().parent))
import fixture_data  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
SKELETONS = ROOT / "models" / "skeletons"
TINY = ROOT / "models" / "tiny"
BUILD_MODELS = ROOT / "build" / "models"
REFS = ROOT / "build" / "refs"
IMAGES = ROOT / "build" / "images"
SCRIPT = Path(__file__).resolve()
GRAD_REFS = REFS / "grad"
FIXTURE_DATA = Path(fixture_data.__file__).resolve()
EXTERNAL_KEY = "edgetune.external_data"
FLOAT_TYPES = (TensorProto.FLOAT, TensorProto.DOUBLE, TensorProto.FLOAT16, TensorProto.BFLOAT16)


def log(msg: str) -> None:
    print(f"[make_fixtures] {msg}", flush=True)


def newer(out: Path, *inputs: Path) -> bool:
    if not out.exists():
        return False
    t = out.stat().st_mtime
    return all(t >= p.stat().st_mtime for p in inputs if p.exists())


# ---------------------------------------------------------------- weight fill
def fill_array(name: str, dims) -> np.ndarray:
    """Deterministic float32 values for initializer `name` of shape `dims` (rule in the module doc)."""
    dims = tuple(int(d) for d in dims)
    rng = np.random.Generator(np.random.PCG64(zlib.crc32(name.encode("utf-8"))))
    n = name.lower()
    if len(dims) >= 2:
        fan_in = int(np.prod(dims[1:]))
        a = rng.standard_normal(dims) * math.sqrt(2.0 / max(fan_in, 1))
    elif "var" in n:
        a = rng.uniform(0.5, 1.5, dims)
    elif "mean" in n:
        a = rng.standard_normal(dims) * 0.1
    elif "bias" in n or "beta" in n:
        a = rng.standard_normal(dims) * 0.05
    elif "weight" in n or "gamma" in n or "scale" in n:
        a = rng.uniform(0.5, 1.0, dims)
    else:
        a = rng.standard_normal(dims) * 0.05
    return a.astype(np.float32)


def has_data(t: TensorProto) -> bool:
    return bool(t.raw_data or t.float_data or t.double_data or t.int32_data or t.int64_data
                or t.data_location == TensorProto.EXTERNAL or t.external_data)


def is_strippable(t: TensorProto) -> bool:
    """The skeleton rule: float tensors with ndim >= 1 lose their data."""
    return t.data_type in FLOAT_TYPES and len(t.dims) >= 1


def strip(model: onnx.ModelProto) -> onnx.ModelProto:
    """Skeleton of `model`: float initializers (ndim >= 1) keep name, dims, data_type, lose data."""
    m = onnx.ModelProto()
    m.CopyFrom(model)
    for t in m.graph.initializer:
        if is_strippable(t):
            for f in ("raw_data", "float_data", "double_data", "int32_data", "int64_data",
                      "external_data", "data_location"):
                t.ClearField(f)
    return m


def fill(model: onnx.ModelProto) -> int:
    """Fill every float initializer without data in place; returns the count filled."""
    count = 0
    for t in model.graph.initializer:
        if t.data_type in FLOAT_TYPES and not has_data(t) and int(np.prod(t.dims)) > 0:
            np_dtype = helper.tensor_dtype_to_np_dtype(t.data_type)
            if t.data_type == TensorProto.BFLOAT16:
                raise SystemExit(f"bfloat16 initializer {t.name} not supported by the filler")
            t.raw_data = fill_array(t.name, t.dims).astype(np_dtype).tobytes()
            count += 1
    return count


def build_skeleton(src: Path, dst: Path) -> None:
    m = onnx.load(str(src))
    n = fill(m)
    for p in m.metadata_props:
        if p.key == "edgetune.skeleton":
            p.value = "weights filled by tools/make_fixtures.py (deterministic rule, not trained)"
    external = any(p.key == EXTERNAL_KEY and p.value == "1" for p in m.metadata_props)
    tmp = dst.with_name(dst.name + ".tmp")
    data = dst.with_name(dst.name + ".data")
    for p in (tmp, data):
        p.unlink(missing_ok=True)
    if external:
        # location is relative to the model file; the file is renamed below, so name it for dst
        onnx.save_model(m, str(tmp), save_as_external_data=True, all_tensors_to_one_file=True,
                        location=data.name, size_threshold=1024)
    else:
        onnx.save_model(m, str(tmp))
    onnx.checker.check_model(str(tmp))
    tmp.replace(dst)
    log(f"filled {n} initializers: {src.relative_to(ROOT)} -> {dst.relative_to(ROOT)}"
        + (f" (+ {data.name})" if external else ""))


def build_models(force: bool) -> list[tuple[str, Path, str]]:
    """Returns [(name, build model path, kind)] with kind skeleton|tiny|real."""
    BUILD_MODELS.mkdir(parents=True, exist_ok=True)
    out = []
    for src in sorted(SKELETONS.glob("*.onnx")):
        dst = BUILD_MODELS / src.name
        if force or not newer(dst, src, SCRIPT):
            build_skeleton(src, dst)
        out.append((src.stem, dst, "skeleton"))
    for src in sorted(TINY.glob("*.onnx")):
        dst = BUILD_MODELS / src.name
        if force or not newer(dst, src):
            shutil.copyfile(src, dst)
        out.append((src.stem, dst, "tiny"))
    real = BUILD_MODELS / "resnet50_imagenet.onnx"
    if real.exists():
        out.append(("resnet50_imagenet", real, "real"))
    else:
        log("build/models/resnet50_imagenet.onnx missing (run tools/fetch_resnet50.py); skipped")
    return out


# ---------------------------------------------------------------- references
def input_dims(path: Path) -> list:
    m = onnx.load(str(path), load_external_data=False)
    inits = {t.name for t in m.graph.initializer}
    ins = [i for i in m.graph.input if i.name not in inits]
    if len(ins) != 1:
        raise SystemExit(f"{path}: expected one graph input, got {[i.name for i in ins]}")
    return [d.dim_value if d.HasField("dim_value") else None
            for d in ins[0].type.tensor_type.shape.dim]


def case_inputs(name: str, path: Path, kind: str) -> list[np.ndarray]:
    if kind == "real":
        return [np.load(IMAGES / f"{p}_224_caffe_nhwc.npy").astype(np.float32)
                for p in ("chelsea", "coffee")]
    dims = input_dims(path)
    rest = list(dims[1:])
    if None in rest:
        raise SystemExit(f"{path}: only the batch dim may be dynamic, got {dims}")
    if dims[0] is not None:  # batch fixed by the export (and baked into the graph): as declared
        shapes = [dims, dims]
    elif name == "resnet20_cifar":
        shapes = [[8] + rest]
    elif kind == "skeleton" and rest[-2:] == [224, 224]:
        shapes = [[1] + rest, [2] + rest[:-2] + [64, 64]]
    else:
        shapes = [[2] + rest, [1] + rest]
    seed = zlib.crc32(name.encode("utf-8"))
    return [np.random.Generator(np.random.PCG64(seed + i)).standard_normal(s).astype(np.float32)
            for i, s in enumerate(shapes)]


def relaxed_model(path: Path) -> bytes:
    """The model with its input's non-batch dims made symbolic (and intermediate value_info
    dropped), so onnxruntime accepts a spatial size other than the declared one. Only used to
    compute references; the model file under build/models/ keeps its declared shape."""
    m = onnx.load(str(path))  # external data loaded too
    inits = {t.name for t in m.graph.initializer}
    inp = [i for i in m.graph.input if i.name not in inits][0]
    for k, d in enumerate(inp.type.tensor_type.shape.dim):
        if k > 0:
            d.ClearField("dim_value")
            d.dim_param = f"d{k}"
    del m.graph.value_info[:]
    return m.SerializeToString()


def make_refs(name: str, path: Path, kind: str, force: bool) -> list[dict]:
    import onnxruntime as ort
    REFS.mkdir(parents=True, exist_ok=True)
    npz = REFS / f"{name}.npz"
    deps = [path, SCRIPT] + ([IMAGES / f"{p}_224_caffe_nhwc.npy" for p in ("chelsea", "coffee")]
                             if kind == "real" else [])
    if force or not newer(npz, *deps):
        so = ort.SessionOptions()
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        so.intra_op_num_threads = 1
        declared = input_dims(path)
        sessions = {}
        arrays = {}
        for i, x in enumerate(case_inputs(name, path, kind)):
            spatial = list(x.shape[1:]) != declared[1:]
            if spatial not in sessions:
                src = relaxed_model(path) if spatial else str(path)
                sessions[spatial] = ort.InferenceSession(src, so, providers=["CPUExecutionProvider"])
            sess = sessions[spatial]
            y = sess.run(None, {sess.get_inputs()[0].name: x})[0].astype(np.float32)
            if not np.all(np.isfinite(y)):
                raise SystemExit(f"{name}: non-finite onnxruntime output for case {i}")
            arrays[f"x{i}"], arrays[f"y{i}"] = x, y
        tmp = REFS / f"{name}.tmp.npz"
        np.savez(tmp, **arrays)
        tmp.replace(npz)
        shapes = ", ".join(f"{arrays[f'x{i}'].shape}->{arrays[f'y{i}'].shape} "
                           f"(|y|max {np.abs(arrays[f'y{i}']).max():.3g})"
                           for i in range(len(arrays) // 2))
        log(f"refs {npz.relative_to(ROOT)}: {shapes}")
    with np.load(npz) as z:
        n = len([k for k in z.files if k.startswith("x")])
    return [{"x": f"x{i}", "y": f"y{i}"} for i in range(n)]


def make_grad_inputs(force: bool) -> None:
    """build/refs/grad/<case>.npz (x float32, labels int64) for every fixture_data.GRAD_CASES case."""
    GRAD_REFS.mkdir(parents=True, exist_ok=True)
    made = []
    for c in fixture_data.GRAD_CASES:
        npz = GRAD_REFS / f"{c['case']}.npz"
        if not force and newer(npz, SCRIPT, FIXTURE_DATA):
            continue
        x, labels = fixture_data.grad_case(c["case"])
        tmp = GRAD_REFS / f"{c['case']}.tmp.npz"
        np.savez(tmp, x=x, labels=labels)
        tmp.replace(npz)
        made.append(c["case"])
    if made:
        log(f"grad inputs {GRAD_REFS.relative_to(ROOT)}/: {', '.join(made)}")


def main() -> None:
    ap = argparse.ArgumentParser(description="Build test models and onnxruntime references.")
    ap.add_argument("--force", action="store_true", help="rebuild everything")
    args = ap.parse_args()
    models = build_models(args.force)
    if not models:
        raise SystemExit("no models found under models/skeletons or models/tiny")
    index = []
    for name, path, kind in models:
        cases = make_refs(name, path, kind, args.force)
        index.append({"name": name, "model": path.relative_to(ROOT).as_posix(), "cases": cases})
    text = json.dumps(index, indent=2) + "\n"
    idx = REFS / "index.json"
    if not idx.exists() or idx.read_text() != text:
        idx.write_text(text)
    log(f"{len(index)} models, index {idx.relative_to(ROOT)}")
    make_grad_inputs(args.force)


if __name__ == "__main__":
    try:
        main()
    except onnx.checker.ValidationError as e:
        print(f"[make_fixtures] error: {e}", file=sys.stderr)
        sys.exit(1)
