"""edgetune.grad against PyTorch's float64 gradients (models/grad_refs/, made by
tools/grad_refs.py with torch 2.15.0), judged as tests/grad_reference.rs judges the library:

- the batch is tools/fixture_data.py:grad_case(case): x standard normal and labels from
  Generator(PCG64(crc32(seed_key))), the reference's `input.seed_key`;
- the loss within 1e-5 relative of PyTorch's float32 loss (LOSS_TOL of tests/grad_reference.rs);
- every trainable tensor within 1e-3 relative of PyTorch's float64 gradient, or 3x PyTorch's own
  float32 error (`f32_rel_err`) where that is larger (design.md, "Numerics"; GRAD_TOL and
  `allowed` of tests/grad_reference.rs), measured on the compact summary the file keeps (norm,
  projection, 16 samples) by fixture_data.summary_err, the Python twin of compare_summary.

The model is models/skeletons/resnet20_cifar.onnx with the make_fixtures.py weight fill (the
`resnet20_cifar` fixture), the model the references were computed on.
"""
from __future__ import annotations

import json

import numpy as np
import pytest

import edgetune
import fixture_data
from conftest import MODELS

GRAD_TOL = 1e-3
LOSS_TOL = 1e-5


def reference(case: str) -> dict:
    ref = json.loads((MODELS / "grad_refs" / f"{case}.json").read_text())
    assert ref["model"] == "resnet20_cifar" and ref["case"] == case
    return ref


def allowed(s: dict) -> float:
    """A tensor's allowed relative error: 1e-3, or 3 x PyTorch's own float32 error where larger."""
    return max(GRAD_TOL, 3.0 * s["f32_rel_err"])


def batch(ref: dict) -> tuple[np.ndarray, np.ndarray]:
    x, labels = fixture_data.grad_case(ref["case"])
    assert fixture_data.input_key(ref["case"]) == ref["input"]["seed_key"]
    # The batch is the one PyTorch saw: its labels and the norm of x are in the reference.
    assert labels.tolist() == ref["input"]["labels"]
    assert abs(float(np.linalg.norm(x.astype(np.float64))) - ref["input"]["x_norm"]) <= 1e-9 * ref["input"]["x_norm"]
    return x, labels


def worst(tensors: dict[str, np.ndarray], refs: dict[str, dict]) -> tuple[str, float]:
    """The tensor furthest from its reference, in units of its bound (<= 1 passes)."""
    errs = {name: fixture_data.summary_err(tensors[name], s["f64"]) / allowed(s) for name, s in refs.items()}
    name = max(errs, key=errs.get)
    return name, errs[name]


@pytest.mark.parametrize("bn", ["train", "frozen"])
def test_gradients_match_pytorch_float64(resnet20_cifar, bn):
    ref = reference(f"resnet20_cifar-b8-32x32-{bn}")
    x, labels = batch(ref)
    g = edgetune.grad(resnet20_cifar, x, labels, bn=bn)
    loss = g.pop("loss")
    assert loss.shape == () and loss.dtype == np.float32
    assert abs(float(loss) - ref["loss"]) <= LOSS_TOL * abs(ref["loss"])
    # Every trainable initializer, as torch's named_parameters(), with its shape.
    assert sorted(g) == sorted(ref["params"])
    for name, t in g.items():
        assert t.dtype == np.float32 and list(t.shape) == ref["params"][name]["shape"], name
    name, err = worst(g, ref["params"])
    assert err <= 1.0, f"{name}: {err:.2f} of its bound"


def test_running_statistics_match_pytorch_after_a_training_step(resnet20_cifar):
    # bn="train": the forward pass updates the running statistics as PyTorch's model.train()
    # (momentum 0.1, unbiased batch variance); the optimizer step does not touch them. So after
    # one step they are the reference's `running` (its statistics after the forward pass).
    ref = reference("resnet20_cifar-b8-32x32-train")
    x, labels = batch(ref)
    trainer = edgetune.Trainer(resnet20_cifar, bn="train", optimizer="sgd", lr=0.1)
    loss, _ = trainer.step(x, labels)
    assert abs(loss - ref["loss"]) <= LOSS_TOL * abs(ref["loss"])
    values = trainer.values()
    assert set(ref["running"]) <= set(values) and not set(ref["running"]) & set(trainer.trainable)
    name, err = worst(values, ref["running"])
    assert err <= 1.0, f"{name}: {err:.2f} of its bound"


def test_train_selects_the_tensors_that_get_a_gradient(resnet20_cifar):
    ref = reference("resnet20_cifar-b8-32x32-frozen")
    x, labels = batch(ref)
    g = edgetune.grad(resnet20_cifar, x, labels, bn="frozen", train="^fc\\.")
    assert sorted(g) == ["fc.bias", "fc.weight", "loss"]
    # The head's gradient does not depend on which other tensors train.
    name, err = worst(g, {k: ref["params"][k] for k in ("fc.weight", "fc.bias")})
    assert err <= 1.0, f"{name}: {err:.2f} of its bound"
