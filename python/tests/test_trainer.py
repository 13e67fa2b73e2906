"""edgetune.Trainer: optimizer steps against PyTorch (models/optim_refs/), a ZNorm + Adam loop on
real digits that lowers the loss, and the exported model in onnx and onnxruntime."""
from __future__ import annotations

import hashlib
import json

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

import edgetune
import fixture_data
from conftest import FASHION, MODELS, OUTPUT_TOL, mnist, ort_run, rel_err

OPTIM_CASES = sorted(p.stem for p in (MODELS / "optim_refs").glob("*.json"))
assert len(OPTIM_CASES) == 9, f"models/optim_refs holds 3 optimizers x 3 transforms, found {len(OPTIM_CASES)}"
STEP_TOL = 1e-5
"""tests/optim_reference.rs: every weight and running statistic within 1e-5 relative of
PyTorch's float64 result, or 3x the float32 noise of that tensor (`f32_noise`: the furthest of
12 PyTorch float32 runs from float64) where that is larger (design.md, "Numerics")."""


@pytest.mark.parametrize("case", OPTIM_CASES)
def test_three_steps_match_pytorch(resnet20_cifar, case):
    # tools/optim_refs.py: 3 torch.optim steps on the same batch (fixture_data.grad_case of
    # resnet20_cifar-b8-32x32-train), BatchNorm in training mode, the transform applied to every
    # gradient before the step.
    ref = json.loads((MODELS / "optim_refs" / f"{case}.json").read_text())
    opt = ref["optimizer"]
    trainer = edgetune.Trainer(
        resnet20_cifar,
        optimizer=opt["name"],
        lr=opt["lr"],
        momentum=opt["momentum"] or 0.0,
        weight_decay=opt["weight_decay"],
        grad_norm=ref["transform"],
        bn="train",
    )
    x, labels = fixture_data.grad_case(ref["input_case"])
    for step, (want, noise) in enumerate(zip(ref["losses_f64"], ref["losses_f32_noise"]), 1):
        loss, _ = trainer.step(x, labels)
        assert abs(loss - want) / want <= max(STEP_TOL, 3 * noise), f"{case}: loss of step {step}"
    assert trainer.steps == 3
    values = trainer.values()
    for table in ("params", "running"):
        errs = {
            name: fixture_data.summary_err(values[name], s["f64"]) / max(STEP_TOL, 3 * s["f32_noise"])
            for name, s in ref[table].items()
        }
        name = max(errs, key=errs.get)
        assert errs[name] <= 1.0, f"{case}: {name} at {errs[name]:.2f} of its bound"


def sha256(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_znorm_adam_on_digits_lowers_the_loss_and_exports(tmp_path):
    # The pretrained Fashion-MNIST ResNet-20 meets handwritten digits (models/data/mnist-slice,
    # interleaved 0..9): its loss starts near 6 (tools/demo.sh: "validation accuracy before:
    # 0.1020 (loss 5.7954)") and falls within a few ZNorm + Adam steps.
    before = sha256(FASHION)
    trainer = edgetune.Trainer(FASHION, optimizer="adam", lr=1e-3, grad_norm="znorm")
    assert trainer.lr == 1e-3 and trainer.steps == 0 and len(trainer.trainable) == 65
    x, y = mnist("train", 512)
    held_x, held_y = mnist("t10k", 200)
    held_before, _ = trainer.evaluate(held_x, held_y)
    losses = [trainer.step(x[i : i + 32], y[i : i + 32])[0] for i in range(0, len(x), 32)]
    held_after, _ = trainer.evaluate(held_x, held_y)
    assert trainer.steps == 16
    # Measured on 2026-12-03: batch losses 3.77 -> ~0.9 over the 16 steps, held-out 5.93 -> 1.63
    # (BatchNorm's running statistics are still mostly Fashion-MNIST's after 16 steps). The
    # bounds leave room for other CPUs' rounding: half the first loss, 0.6 of the held-out one.
    assert np.mean(losses[-4:]) < 0.5 * losses[0], losses
    assert held_after < 0.6 * held_before, (held_before, held_after)

    out = tmp_path / "digits.onnx"
    trainer.export(out)
    assert sha256(FASHION) == before, "the input model was changed"
    onnx.checker.check_model(str(out), full_check=True)
    # The file holds the trainer's weights and running statistics, bit for bit.
    stored = {t.name: numpy_helper.to_array(t) for t in onnx.load(str(out)).graph.initializer}
    for name, value in trainer.values().items():
        np.testing.assert_array_equal(stored[name], value, err_msg=name)
    # onnxruntime, loading the file from its path, computes what the trainer's logits are (both
    # BatchNorm on running statistics). The same float32 weights in two engines differ only by
    # the order of float32 sums: the inference contract's 1e-4 of the output scale (design.md;
    # finetune's own reload check reports ~1e-6 on probabilities).
    assert rel_err(ort_run(out, held_x), trainer.logits(held_x)) <= OUTPUT_TOL


def test_new_head_trains_alone_and_exports(tmp_path):
    trainer = edgetune.Trainer(FASHION, num_classes=3, train="head", lr=1e-2, seed=7)
    assert trainer.trainable == ["fc.weight", "fc.bias"]
    x, y = mnist("train", 30)
    y = y % 3
    first, _ = trainer.step(x, y)
    for _ in range(4):
        last, _ = trainer.step(x, y)
    assert last < first
    logits = trainer.logits(x)
    assert logits.shape == (30, 3)
    out = tmp_path / "three.onnx"
    trainer.export(out)
    assert rel_err(ort_run(out, x), logits) <= OUTPUT_TOL
    # Only the head moved: BatchNorm kept its running statistics (bn="auto" with a frozen
    # backbone) and every backbone weight is the input model's.
    original = {t.name: numpy_helper.to_array(t) for t in onnx.load(str(FASHION)).graph.initializer}
    written = {t.name: numpy_helper.to_array(t) for t in onnx.load(str(out)).graph.initializer}
    for name, value in written.items():
        if not name.startswith("fc."):
            np.testing.assert_array_equal(value, original[name], err_msg=name)
    assert written["fc.weight"].shape == (3, 64)


def test_lr_per_step_and_labels_from_lists():
    a = edgetune.Trainer(FASHION, optimizer="sgd", lr=0.05, grad_norm="none")
    b = edgetune.Trainer(FASHION, optimizer="sgd", lr=0.01, grad_norm="none")
    x, y = mnist("train", 8)
    # A step at lr=0.05 given per call is the step of a trainer made with lr=0.05: the same
    # weights after it (the loss and accuracy it returns are measured before the update).
    assert a.step(x, y) == b.step(x, y.tolist(), lr=0.05)
    for name, value in a.values().items():
        np.testing.assert_array_equal(b.values()[name], value, err_msg=name)
    assert b.lr == 0.01 and repr(b) == f'edgetune.Trainer("{FASHION}")'
