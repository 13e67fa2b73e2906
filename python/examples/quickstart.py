"""edgetune from Python: run a model, train it step by step and export it, finetune it with a
callback. Run from the repository root (it reads models/); writes to build/quickstart/."""
import gzip
from pathlib import Path

import numpy as np

import edgetune

MODEL = "models/pretrained/resnet20_fashion.onnx"  # a ResNet-20 trained on Fashion-MNIST
DIGITS = "models/data/mnist-slice"  # 3,000 + 1,000 MNIST digits (idx files)
out = Path("build/quickstart")
out.mkdir(parents=True, exist_ok=True)


def digits(kind, n):
    """n digits as the model takes them: [n, 3, 32, 32] float32 in [0, 1], and their labels."""
    with gzip.open(f"{DIGITS}/{kind}-images-idx3-ubyte.gz") as f:
        images = np.frombuffer(f.read(), np.uint8, offset=16).reshape(-1, 28, 28)[:n]
    with gzip.open(f"{DIGITS}/{kind}-labels-idx1-ubyte.gz") as f:
        labels = np.frombuffer(f.read(), np.uint8, offset=8)[:n].astype(np.int64)
    x = np.pad(images, ((0, 0), (2, 2), (2, 2))) / np.float32(255)  # 28x28 -> 32x32
    return np.repeat(x[:, None], 3, axis=1), labels  # gray -> RGB


# 1. Run the model (numpy in, numpy out).
session = edgetune.Session(MODEL)
print("inputs", session.inputs, "outputs", session.outputs)
test_x, test_y = digits("t10k", 500)
logits = session.run(test_x)
print(f"accuracy on digits before training: {(logits.argmax(1) == test_y).mean():.3f}")

# 2. Train step by step with ZNorm + Adam, then export the trained model as ONNX.
trainer = edgetune.Trainer(MODEL, optimizer="adam", lr=1e-3, grad_norm="znorm")
train_x, train_y = digits("train", 384)
for i in range(0, len(train_x), 32):
    loss, accuracy = trainer.step(train_x[i : i + 32], train_y[i : i + 32])
    if trainer.steps % 4 == 0:
        print(f"step {trainer.steps}: batch loss {loss:.3f}, accuracy {accuracy:.3f}")
trainer.export(out / "digits.onnx")
diff = np.abs(edgetune.Session(out / "digits.onnx").run(test_x) - trainer.logits(test_x)).max()
print(f"the exported model gives the trainer's logits (max difference {diff:.1e})")


# 3. The whole `edgetune finetune` as one call; the callback sees each event.
def progress(event):
    if event["event"] == "step" and event["step"] % 4 == 0:
        print(f"  step {event['step']}/{event['total']}: loss {event['loss']:.3f}")
    return True  # False would stop the run (edgetune.Stopped)


summary = edgetune.finetune(MODEL, f"idx:{DIGITS}", out / "digits_finetuned.onnx",
                            steps=12, batch=32, schedule="cosine", callback=progress)
print(f"finetune wrote {summary['output']} after {summary['images']} images")

# 4. Errors carry the command's one-line messages.
try:
    edgetune.Trainer(MODEL, optimizer="adamx")
except edgetune.InputError as e:
    print(f"InputError ({e.kind}): {e}")
