"""Shared pieces of the Python binding tests (run by tools/test_python.sh, which installs the
package into tools/.venv-light first; run from the repository root).

Peers: onnxruntime (in the venv) for outputs, the PyTorch float64 references committed in
models/grad_refs/ for gradients, and the `edgetune` command (target/release/edgetune) for
error messages.
"""
from __future__ import annotations

import gzip
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest

ROOT = Path(__file__).resolve().parents[2]
MODELS = ROOT / "models"
FASHION = MODELS / "pretrained" / "resnet20_fashion.onnx"
MNIST = MODELS / "data" / "mnist-slice"

# tools/fixture_data.py (the gradient cases' inputs and summaries) and tools/make_fixtures.py
# (the weight fill of the skeletons) are the scripts that made the references: use them as is.
sys.path.insert(0, str(ROOT / "tools"))


def rel_err(got: np.ndarray, want: np.ndarray) -> float:
    """max |got - want| / max |want|: the error measure of the inference contract (design.md,
    "Numerics": outputs within 1e-4 relative to the output scale; tests/common/mod.rs rel_err)."""
    assert got.shape == want.shape, f"shapes differ: {got.shape} vs {want.shape}"
    scale = max(float(np.abs(want).max()), 1e-12)
    return float(np.abs(got.astype(np.float64) - want.astype(np.float64)).max()) / scale


OUTPUT_TOL = 1e-4
"""design.md, "Numerics": outputs within 1e-4 relative to the output scale."""


def ort_session(path: Path) -> ort.InferenceSession:
    """onnxruntime on the model **from its path**, one thread (as tools/deploy_check.py)."""
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])


def ort_run(path: Path, x: np.ndarray) -> np.ndarray:
    """onnxruntime's first output on `x` for the model at `path`."""
    sess = ort_session(path)
    return sess.run(None, {sess.get_inputs()[0].name: x})[0]


def mnist(kind: str, n: int) -> tuple[np.ndarray, np.ndarray]:
    """The first `n` digits of models/data/mnist-slice (`kind` "train" or "t10k"), as
    resnet20_fashion takes them: 28x28 zero-padded to 32x32, pixels / 255 (the model's `unit`
    preprocessing), gray replicated to 3 channels; NCHW float32, and int64 labels. (edgetune's
    idx: reader stretches 28 to 32 instead; either is a fine input for these tests.)"""
    with gzip.open(MNIST / f"{kind}-images-idx3-ubyte.gz") as f:
        images = np.frombuffer(f.read(), np.uint8, offset=16).reshape(-1, 28, 28)[:n]
    with gzip.open(MNIST / f"{kind}-labels-idx1-ubyte.gz") as f:
        labels = np.frombuffer(f.read(), np.uint8, offset=8)[:n].astype(np.int64)
    x = np.pad(images, ((0, 0), (2, 2), (2, 2))).astype(np.float32) / 255
    return np.ascontiguousarray(np.repeat(x[:, None], 3, axis=1)), labels


@pytest.fixture(scope="session")
def resnet20_cifar(tmp_path_factory) -> Path:
    """models/skeletons/resnet20_cifar.onnx with its weights filled by tools/make_fixtures.py's
    rule (what `bash tools/fixtures.sh` writes to build/models/resnet20_cifar.onnx, the model the
    PyTorch gradient references were computed on)."""
    import make_fixtures

    m = onnx.load(str(MODELS / "skeletons" / "resnet20_cifar.onnx"))
    assert make_fixtures.fill(m) > 0
    path = tmp_path_factory.mktemp("models") / "resnet20_cifar.onnx"
    onnx.save_model(m, str(path))
    return path


def cli_binary() -> Path:
    """The `edgetune` command built from this checkout (tools/test_python.sh builds it)."""
    target = Path(os.environ.get("CARGO_TARGET_DIR", ROOT / "target"))
    exe = target / "release" / "edgetune"
    if not exe.exists():
        pytest.fail(f"{exe} is missing: build it with `cargo build --release` (tools/test_python.sh does)")
    return exe


def cli_error(*args: str | os.PathLike) -> tuple[int, str]:
    """Runs `edgetune ARGS...`, which must fail: its exit code and the message after `error: `
    on its one stderr line."""
    p = subprocess.run([str(cli_binary()), *map(str, args)], capture_output=True, text=True, cwd=ROOT, timeout=120)
    lines = p.stderr.strip().splitlines()
    assert p.returncode != 0, f"edgetune {args} succeeded"
    assert len(lines) == 1 and lines[0].startswith("error: "), f"edgetune {args}: stderr {p.stderr!r}"
    return p.returncode, lines[0][len("error: "):]
