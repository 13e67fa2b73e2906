#!/usr/bin/env python3
"""Checks a model as a user deploying it would: `onnx.checker.check_model(full_check=True)` on
its path, then onnxruntime loads it **from its path** (external data resolved by onnxruntime
itself, declared shapes as written) and runs it on a .npy input; the first output to a .npy.

    tools/.venv-light/bin/python tools/deploy_check.py MODEL.onnx X.npy Y.npy

Prints one line: `checker ok; onnxruntime input NAME [dims] -> output [dims]`. Any failure is
one line on stderr and exit code 1. Used by tests/deploy.rs (tools/ort_run.py, by contrast,
relaxes the declared input dims in memory to compare outputs at other sizes).
"""
import sys

import numpy as np
import onnx
import onnxruntime as ort


def main() -> int:
    model, x_path, y_path = sys.argv[1:4]
    try:
        onnx.checker.check_model(model, full_check=True)
    except Exception as e:  # noqa: BLE001 - the message is the report
        print(f"checker: {e}".replace("\n", " "), file=sys.stderr)
        return 1
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    try:
        sess = ort.InferenceSession(model, opts, providers=["CPUExecutionProvider"])
        inp = sess.get_inputs()[0]
        y = sess.run(None, {inp.name: np.load(x_path)})[0]
    except Exception as e:  # noqa: BLE001
        print(f"onnxruntime: {e}".replace("\n", " "), file=sys.stderr)
        return 1
    np.save(y_path, y.astype(np.float32))
    print(f"checker ok; onnxruntime input {inp.name} {inp.shape} -> output {list(y.shape)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
