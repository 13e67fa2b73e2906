#!/usr/bin/env python3
"""Write the ONNX backend node test cases of every op edgetune supports under build/backend-node/.

Runs in the light venv, from tools/fixtures.sh (tests/backend_node.rs reads the result):

    tools/.venv-light/bin/python tools/backend_node_cases.py [--force]

The cases come from the installed onnx package: onnx.backend.test.case.node.collect_testcases(),
the same models and data `onnx.backend.test.cmd_tools generate-data` writes. Kept: every case
whose model is one node of an op in src/ops/mod.rs (`TABLE` and `FOLD_ONLY`, parsed from that
file, so the op table stays the one owner). Left out: the `*_expanded*` variants (the op's
function body, i.e. other ops such as ReduceMax/Exp standing in for Softmax).

Layout, per case:
    build/backend-node/<case>/model.onnx
    build/backend-node/<case>/test_data_set_<i>/input_<k>.npy    float32, one per graph input
    build/backend-node/<case>/test_data_set_<i>/output_<k>.npy   float32, one per graph output
    build/backend-node/<case>/case.json   {"op", "opset", "rtol", "atol", "rewrites"}
and build/backend-node/index.json: {"onnx", "ops", "cases": [names], "left_out": {...}}.
rtol/atol are the case's own (onnx's TestCase fields: 1e-3 / 1e-7 for every node case, which its
runner passes to numpy.testing.assert_allclose).

Rewrites (recorded per case in case.json "rewrites"; the semantics under test stay the same):
  * An input edgetune cannot take at run time becomes an initializer holding the case's value:
    - every non-float32 input (Reshape's shape, Slice's starts, Gather's indices, Pad's pads,
      an int8 Add operand, a float16 Cast source ...): edgetune's Session takes float32 tensors,
      and integer tensors only exist as constants folded at load time;
    - the float parameters edgetune reads as constants: Clip's min/max, Pad's constant_value,
      Dropout's ratio;
    - every input of a fold-only op other than Shape/Size (Equal, Where, Range,
      ConstantOfShape): edgetune evaluates these at load time only.
  * A graph output that is not a float type (int64 from Shape, bool from Equal, int8 from an
    integer Add) gets a Cast to FLOAT after it, under the output's name, and its expected values
    are converted to float32 (exact: every such value here is an integer below 2^24 or a bool).
    edgetune returns float32 tensors, so this is how its load-time integer folding is checked.
  * Expected float16/bfloat16/double outputs are compared as float32 (edgetune computes in
    float32, a Cast to float16/bfloat16 rounding the value to that type).
  * A case with a non-tensor input (sequence, optional) is written as it is, without data: the
    test expects edgetune to refuse the model at load.

Idempotent: build/backend-node/.stamp holds a hash of this script, src/ops/mod.rs and the onnx
version; when it matches, nothing is rebuilt (the check imports no onnx: well under a second).
"""
from __future__ import annotations

import argparse
import hashlib
import importlib.metadata
import json
import re
import shutil
import sys
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "build" / "backend-node"
OPS_FILE = ROOT / "src" / "ops" / "mod.rs"

# Node input slots edgetune reads as constants although they are float (see the module doc).
CONST_FLOAT_INPUTS = {"Clip": {1, 2}, "Pad": {2}, "Dropout": {1}}
# Fold-only ops that read only their input's shape (the input may stay a run-time tensor).
SHAPE_ONLY = {"Shape", "Size"}


def supported_ops() -> tuple[list[str], list[str]]:
    """(runtime ops, fold-only ops) as src/ops/mod.rs lists them."""
    text = OPS_FILE.read_text()
    table = re.search(r"const TABLE: [^=]*= &\[(.*?)\n\];", text, re.S)
    fold = re.search(r"pub const FOLD_ONLY: [^=]*= &\[(.*?)\];", text, re.S)
    if not table or not fold:
        sys.exit(f"backend_node_cases.py: error: cannot find TABLE / FOLD_ONLY in {OPS_FILE}")
    runtime = re.findall(r'\(\s*"(\w+)"\s*,', table.group(1))
    fold_only = re.findall(r'"(\w+)"', fold.group(1))
    if not runtime or not fold_only:
        sys.exit(f"backend_node_cases.py: error: empty op lists parsed from {OPS_FILE}")
    return runtime, fold_only


def stamp_text(runtime: list[str], fold_only: list[str]) -> str:
    h = hashlib.sha256()
    h.update(Path(__file__).read_bytes())
    h.update(" ".join(runtime + ["|"] + fold_only).encode())
    h.update(importlib.metadata.version("onnx").encode())
    return h.hexdigest() + "\n"


def as_float32(value, np, numpy_helper):
    """A case value (numpy array or TensorProto) as a float32 numpy array."""
    if hasattr(value, "HasField"):  # a TensorProto (types numpy lacks: float8, int4 ...)
        value = numpy_helper.to_array(value)
    return np.asarray(value).astype(np.float32)


def rewrite(case, fold_only: set[str]):
    """The case's model and data in the form edgetune takes (see the module doc).

    Returns (model, data_sets, rewrites), data_sets a list of (inputs, outputs) of float32
    arrays, or None for a model with a non-tensor input.
    """
    import numpy as np
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    model = onnx.ModelProto()
    model.CopyFrom(case.model)
    graph = model.graph
    node = graph.node[0]
    op = node.op_type
    rewrites: list[str] = []

    if any(not vi.type.HasField("tensor_type") for vi in list(graph.input) + list(graph.output)):
        return model, None, ["none (a graph input or output is not a tensor: no data written)"]

    slot_of = {name: i for i, name in enumerate(node.input) if name}
    keep_inputs = []
    to_init = []  # (graph input index, value info)
    for gi, vi in enumerate(graph.input):
        slot = slot_of.get(vi.name)
        elem = vi.type.tensor_type.elem_type
        why = None
        if elem != TensorProto.FLOAT:
            why = f"{TensorProto.DataType.Name(elem).lower()} input"
        elif slot in CONST_FLOAT_INPUTS.get(op, ()):
            why = "parameter edgetune reads as a constant"
        elif op in fold_only and op not in SHAPE_ONLY:
            why = "input of a load-time (fold-only) op"
        if why:
            to_init.append((gi, vi))
            rewrites.append(f"input '{vi.name}' -> initializer ({why})")
        else:
            keep_inputs.append(gi)
    if len(case.data_sets) != 1 and to_init:
        raise SystemExit(f"backend_node_cases.py: error: {case.name}: initializers need one data set")

    data_sets = []
    for inputs, outputs in case.data_sets:
        for gi, vi in to_init:
            value = inputs[gi]
            if isinstance(value, TensorProto):
                t = TensorProto()
                t.CopyFrom(value)
                t.name = vi.name
            else:
                t = numpy_helper.from_array(np.asarray(value), vi.name)
            graph.initializer.append(t)
        data_sets.append(
            (
                [as_float32(inputs[gi], np, numpy_helper) for gi in keep_inputs],
                [as_float32(o, np, numpy_helper) for o in outputs],
            )
        )
    kept = [graph.input[gi] for gi in keep_inputs]
    del graph.input[:]
    graph.input.extend(kept)

    float_types = {TensorProto.FLOAT, TensorProto.FLOAT16, TensorProto.BFLOAT16, TensorProto.DOUBLE}
    for vo in graph.output:
        elem = vo.type.tensor_type.elem_type
        if elem in float_types:
            if elem != TensorProto.FLOAT:
                rewrites.append(f"output '{vo.name}': {TensorProto.DataType.Name(elem).lower()} compared as float32")
            continue
        raw = vo.name + "_before_cast"
        for n in graph.node:
            n.output[:] = [raw if o == vo.name else o for o in n.output]
        graph.node.append(helper.make_node("Cast", [raw], [vo.name], to=TensorProto.FLOAT))
        vo.type.tensor_type.elem_type = TensorProto.FLOAT
        rewrites.append(f"output '{vo.name}' ({TensorProto.DataType.Name(elem).lower()}) -> Cast to float")
    return model, data_sets, rewrites


def check_exact_casts(case, np) -> None:
    """Integer outputs converted to float32 must be exact (|v| < 2^24)."""
    from onnx import TensorProto

    for (_, outputs) in case.data_sets:
        for vo, o in zip(case.model.graph.output, outputs):
            elem = vo.type.tensor_type.elem_type
            if elem in (TensorProto.FLOAT, TensorProto.FLOAT16, TensorProto.BFLOAT16, TensorProto.DOUBLE):
                continue
            if isinstance(o, np.ndarray) and o.dtype.kind in "iu" and o.size and np.abs(o).max() >= 2**24:
                raise SystemExit(f"backend_node_cases.py: error: {case.name}: integer output too large for float32")


def generate(runtime: list[str], fold_only: list[str]) -> dict:
    import numpy as np
    import onnx
    from onnx.backend.test.case.node import collect_testcases

    with warnings.catch_warnings():
        # The Cast/Reduce case builders overflow on purpose (inf, NaN test values).
        warnings.simplefilter("ignore")
        np.seterr(all="ignore")
        cases = collect_testcases()
    wanted = set(runtime) | set(fold_only)
    left_out = {"expanded (function bodies)": 0, "other ops": 0}
    written = []
    if OUT.exists():
        shutil.rmtree(OUT)
    OUT.mkdir(parents=True)
    for case in cases:
        ops = {n.op_type for n in case.model.graph.node}
        if "_expanded" in case.name:
            left_out["expanded (function bodies)"] += 1
            continue
        if len(case.model.graph.node) != 1 or not ops <= wanted:
            left_out["other ops"] += 1
            continue
        op = case.model.graph.node[0].op_type
        opset = next(o.version for o in case.model.opset_import if o.domain in ("", "ai.onnx"))
        check_exact_casts(case, np)
        model, data_sets, rewrites = rewrite(case, set(fold_only))
        d = OUT / case.name
        d.mkdir()
        onnx.save(model, str(d / "model.onnx"))
        for i, (inputs, outputs) in enumerate(data_sets or []):
            ds = d / f"test_data_set_{i}"
            ds.mkdir()
            for k, x in enumerate(inputs):
                np.save(ds / f"input_{k}.npy", x)
            for k, y in enumerate(outputs):
                np.save(ds / f"output_{k}.npy", y)
        meta = {"op": op, "opset": opset, "rtol": case.rtol, "atol": case.atol, "rewrites": rewrites}
        (d / "case.json").write_text(json.dumps(meta, indent=1) + "\n")
        written.append(case.name)
    index = {
        "onnx": onnx.__version__,
        "opset_max": onnx.defs.onnx_opset_version(),
        "ops": sorted(wanted),
        "cases": written,
        "left_out": left_out,
    }
    (OUT / "index.json").write_text(json.dumps(index, indent=1) + "\n")
    return index


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--force", action="store_true", help="rebuild even when the stamp matches")
    args = ap.parse_args()
    runtime, fold_only = supported_ops()
    stamp = OUT / ".stamp"
    want = stamp_text(runtime, fold_only)
    if not args.force and stamp.exists() and stamp.read_text() == want:
        return
    index = generate(runtime, fold_only)
    stamp.write_text(want)
    print(
        f"backend_node_cases.py: {len(index['cases'])} node cases of {len(index['ops'])} ops "
        f"(onnx {index['onnx']}) -> {OUT.relative_to(ROOT)}"
    )


if __name__ == "__main__":
    main()
