"""Bad input: each mistake raises the right edgetune exception, and its str() is the line the
`edgetune` command prints after `error: ` for the same mistake (target/release/edgetune, run
here), with the command's exit code 2 (bad input) for every InputError."""
from __future__ import annotations

import numpy as np
import pytest

import edgetune
from conftest import FASHION, MNIST, cli_error, mnist

DATA = f"idx:{MNIST}"


def same_as_cli(call, cli_args, cls=edgetune.InputError, kind=None):
    """`call()` raises `cls` (of `kind`) with the message the command gives for `cli_args`."""
    code, message = cli_error(*cli_args)
    with pytest.raises(cls) as raised:
        call()
    assert str(raised.value) == message
    assert code == 2
    if kind is not None:
        assert raised.value.kind == kind
    return raised.value


@pytest.fixture
def npy(tmp_path):
    """Saves an array as .npy for the command, returns its path."""
    def save(name, a):
        path = tmp_path / f"{name}.npy"
        np.save(path, a)
        return path
    return save


def test_missing_model_file(tmp_path, npy):
    missing = tmp_path / "nowhere" / "model.onnx"
    x, y = mnist("t10k", 2)
    xp, yp = npy("x", x), npy("y", y)
    e = same_as_cli(lambda: edgetune.Session(missing), ["infer", missing, "--input", xp], kind="io")
    assert str(e) == f"{missing}: No such file or directory (os error 2)"
    same_as_cli(lambda: edgetune.grad(missing, x, y),
                ["grad", missing, "--input", xp, "--labels", yp, "--output", tmp_path / "g.npz"])
    same_as_cli(lambda: edgetune.Trainer(missing),
                ["finetune", missing, "--data", DATA, "--output", tmp_path / "o.onnx"])
    same_as_cli(lambda: edgetune.finetune(missing, DATA, tmp_path / "o.onnx"),
                ["finetune", missing, "--data", DATA, "--output", tmp_path / "o.onnx"])


# (Python keyword arguments, the same values as the command's flags). The first ones are refused
# by the command's argument parser (clap's wording, which the bindings reproduce), the last ones
# by the library itself when the run starts.
BAD_OPTIONS = [
    ({"optimizer": "adamx"}, ["--optimizer", "adamx"]),
    ({"grad_norm": "clip:-1"}, ["--grad-norm", "clip:-1"]),
    ({"grad_norm": "l2"}, ["--grad-norm", "l2"]),
    ({"lr": -1.0}, ["--lr", "-1.0"]),
    ({"lr": float("inf")}, ["--lr", "inf"]),
    ({"lr": float("nan")}, ["--lr", "nan"]),
    ({"momentum": 1.0}, ["--momentum", "1.0"]),
    ({"momentum": -0.5}, ["--momentum", "-0.5"]),
    ({"weight_decay": -0.5}, ["--weight-decay", "-0.5"]),
    ({"znorm_eps": 0.0}, ["--znorm-eps", "0.0"]),
    ({"znorm_eps": -1e-5}, ["--znorm-eps", "-1e-05"]),
    ({"schedule": "linear"}, ["--schedule", "linear"]),
    ({"bn": "batch"}, ["--bn", "batch"]),
    ({"znorm_scope": "some"}, ["--znorm-scope", "some"]),
    ({"train": "("}, ["--train", "("]),
    ({"batch": 0}, ["--batch", "0"]),
    ({"steps": 0}, ["--steps", "0"]),
    ({"size": "3y"}, ["--size", "3y"]),
    ({"augment": "crop,zoom"}, ["--augment", "crop,zoom"]),
    ({"preprocess": "torch"}, ["--preprocess", "torch"]),
    ({"on_nonfinite": "ignore"}, ["--on-nonfinite", "ignore"]),
    ({"device": "tpu"}, ["--device", "tpu"]),
    ({"resume": True}, ["--resume"]),
    ({"val_every": 5}, ["--val-every", "5"]),
    ({"train": "no_such_tensor"}, ["--train", "no_such_tensor"]),
    ({"num_classes": 1}, ["--num-classes", "1"]),
]


@pytest.mark.parametrize("kwargs,flags", BAD_OPTIONS, ids=[" ".join(f) for _, f in BAD_OPTIONS])
def test_bad_option_value_in_finetune(tmp_path, kwargs, flags):
    out = tmp_path / "o.onnx"
    same_as_cli(lambda: edgetune.finetune(FASHION, DATA, out, **kwargs),
                ["finetune", FASHION, "--data", DATA, "--output", out, *flags], kind="config")
    assert not out.exists()


TRAINER_OPTIONS = ["optimizer", "grad_norm", "lr", "momentum", "weight_decay", "znorm_eps", "bn", "znorm_scope",
                   "train", "device", "num_classes"]


@pytest.mark.parametrize("kwargs,flags", [o for o in BAD_OPTIONS if next(iter(o[0])) in TRAINER_OPTIONS],
                         ids=lambda v: " ".join(v) if isinstance(v, list) else None)
def test_bad_option_value_in_trainer(tmp_path, kwargs, flags):
    same_as_cli(lambda: edgetune.Trainer(FASHION, **kwargs),
                ["finetune", FASHION, "--data", DATA, "--output", tmp_path / "o.onnx", *flags], kind="config")


def test_bad_option_value_in_grad(tmp_path, npy):
    x, y = mnist("t10k", 2)
    args = ["grad", FASHION, "--input", npy("x", x), "--labels", npy("y", y), "--output", tmp_path / "g.npz"]
    same_as_cli(lambda: edgetune.grad(FASHION, x, y, bn="batch"), [*args, "--bn", "batch"], kind="config")
    same_as_cli(lambda: edgetune.grad(FASHION, x, y, train="("), [*args, "--train", "("], kind="config")


def test_a_device_that_cannot_run_is_bad_input(tmp_path):
    # No GPU here (or no CUDA build): the command's exit code 2, as for a missing file.
    out = tmp_path / "o.onnx"
    same_as_cli(lambda: edgetune.finetune(FASHION, DATA, out, device="cuda"),
                ["finetune", FASHION, "--data", DATA, "--output", out, "--device", "cuda"], kind="device")


def test_bad_data_spec(tmp_path):
    out = tmp_path / "o.onnx"
    for spec in ["idxx:" + str(MNIST), f"idx:{tmp_path / 'missing'}"]:
        same_as_cli(lambda: edgetune.finetune(FASHION, spec, out),
                    ["finetune", FASHION, "--data", spec, "--output", out])


def test_wrong_input_shape(tmp_path, npy):
    # A 28x28 gray digit where the model wants [N, 3, 32, 32].
    gray = np.zeros((2, 1, 28, 28), np.float32)
    labels = np.array([1, 2])
    xp, yp = npy("gray", gray), npy("labels", labels)
    e = same_as_cli(lambda: edgetune.Session(FASHION).run(gray), ["infer", FASHION, "--input", xp], kind="data")
    assert "does not fit the declared [N, 3, 32, 32]" in str(e)
    grad_args = ["grad", FASHION, "--input", xp, "--labels", yp, "--output", tmp_path / "g.npz"]
    same_as_cli(lambda: edgetune.grad(FASHION, gray, labels), grad_args, kind="data")
    # A step and a prediction are the same forward pass as the gradient: the same message.
    trainer = edgetune.Trainer(FASHION)
    same_as_cli(lambda: trainer.step(gray, labels), grad_args, kind="data")
    same_as_cli(lambda: trainer.logits(gray), grad_args, kind="data")
    assert trainer.steps == 0


def test_one_image_without_its_batch_axis(npy):
    # One [3, 32, 32] image where [N, 3, 32, 32] belongs: the command's message, with the fix.
    image = np.zeros((3, 32, 32), np.float32)
    e = same_as_cli(lambda: edgetune.Session(FASHION).run(image), ["infer", FASHION, "--input", npy("x", image)],
                    kind="data")
    assert str(e).endswith("(no batch axis? a batch of one is [1, ...])")
    # A number is no batch at all (the command cannot be given a 0-d array as an image batch).
    with pytest.raises(edgetune.InputError, match=r"^input 0: a 0-d array \(one number\)"):
        edgetune.Session(FASHION).run(np.float32(1.0))


def test_labels_that_do_not_fit(tmp_path, npy):
    x, _ = mnist("t10k", 4)
    xp = npy("x", x)
    for labels in (np.array([1, 2, 3]), np.array([1, 2, 3, 10])):  # one short; 10 is past the 10 classes
        args = ["grad", FASHION, "--input", xp, "--labels", npy("y", labels), "--output", tmp_path / "g.npz"]
        same_as_cli(lambda: edgetune.grad(FASHION, x, labels), args)


def test_python_only_mistakes(tmp_path):
    # No command-line twin: wrong array types are TypeErrors, other values InputError(config).
    session = edgetune.Session(FASHION)
    with pytest.raises(TypeError, match="got dtype int64"):
        session.run(np.zeros((1, 3, 32, 32), np.int64))
    x, y = mnist("t10k", 2)
    with pytest.raises(TypeError, match="labels: expected an integer array of class labels, got dtype float64"):
        edgetune.grad(FASHION, x, y.astype(np.float64))
    with pytest.raises(edgetune.InputError, match=r"^labels: shape \[2, 1\]: expected one label per sample"):
        edgetune.grad(FASHION, x, y[:, None])
    with pytest.raises(edgetune.InputError, match=r"^x: shape \[0, 3, 32, 32\] holds no samples"):
        edgetune.Trainer(FASHION).step(x[:0], y[:0])
    threads = r"^invalid value '-1' for '--threads <THREADS>': '-1' is not a whole number >= 0$"
    with pytest.raises(edgetune.InputError, match=threads):
        edgetune.Session(FASHION, threads=-1)
    with pytest.raises(edgetune.InputError, match=r"^invalid value '\(0, 32\)' for '--size <SIZE>'"):
        edgetune.finetune(FASHION, DATA, tmp_path / "o.onnx", size=(0, 32))
    with pytest.raises(edgetune.InputError, match="callback=3: not callable"):
        edgetune.finetune(FASHION, DATA, tmp_path / "o.onnx", callback=3)
    lr = r"^invalid value '0.0' for '--lr <LR>': 0.0 must be greater than 0$"
    with pytest.raises(edgetune.InputError, match=lr):
        edgetune.Trainer(FASHION).step(x, y, lr=0.0)
