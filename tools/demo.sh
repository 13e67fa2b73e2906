#!/usr/bin/env bash
# The main job, on a fresh clone and offline (cargo fetches crates the first time; nothing else is
# downloaded): take the ResNet-20 that edgetune trained on Fashion-MNIST
# (models/pretrained/resnet20_fashion.onnx) and finetune it with ZNorm + Adam to read handwritten
# digits, from the 3,000-image MNIST slice shipped in models/data/mnist-slice. It shows progress,
# reports validation accuracy (1,000 held-out digits) before and after, writes the updated ONNX and
# checks that the written file reloads and gives the trained model's outputs.
#
# About a minute on 2 cores. Output in build/demo/ (the input model is never modified).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

cargo build --release
bin=target/release/edgetune
model=models/pretrained/resnet20_fashion.onnx
data=idx:models/data/mnist-slice
mkdir -p build/demo

$bin inspect "$model" | head -5
$bin finetune "$model" --data "$data" --val "$data" \
  --epochs 3 --batch 64 --optimizer adam --lr 1e-3 --schedule cosine --grad-norm znorm \
  --augment crop --seed 1 \
  --log build/demo/finetune.jsonl --output build/demo/resnet20_digits.onnx
$bin inspect build/demo/resnet20_digits.onnx | head -3
