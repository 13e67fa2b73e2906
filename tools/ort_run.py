#!/usr/bin/env python3
"""Runs a model in onnxruntime on a .npy input and writes the first output as .npy.

    tools/.venv-light/bin/python tools/ort_run.py MODEL.onnx X.npy Y.npy [MODEL2 X2 Y2 ...]

Used by the tests to check that models exported by edgetune load and run in onnxruntime. The
input's spatial size may differ from the declared one (onnxruntime would refuse it), so the model
is run with its input dims made symbolic, in memory (make_fixtures.relaxed_model); the file is
not touched. Several (model, input, output) triples run in one process (onnxruntime's import
is most of the time a small model takes).
"""
import sys
from pathlib import Path

import numpy as np
import onnxruntime as ort

sys.path.insert(0, str(Path(__file__).resolve().parent))
from make_fixtures import relaxed_model  # noqa: E402

args = sys.argv[1:]
if not args or len(args) % 3:
    sys.exit("usage: ort_run.py MODEL X.npy Y.npy [MODEL X.npy Y.npy ...]")
opts = ort.SessionOptions()
opts.intra_op_num_threads = 1
for model, x_path, y_path in zip(args[0::3], args[1::3], args[2::3]):
    sess = ort.InferenceSession(relaxed_model(Path(model)), opts, providers=["CPUExecutionProvider"])
    x = np.load(x_path)
    y = sess.run(None, {sess.get_inputs()[0].name: x})[0]
    np.save(y_path, y.astype(np.float32))
