#!/usr/bin/env bash
# The GPU checks and figures of the CUDA path, on a machine with an NVIDIA GPU (driver, cuBLAS
# and NVRTC libraries; no CUDA toolkit needed): builds with `--features cuda`, runs the GPU tests
# (they compare every op, whole ResNets' outputs and gradients, optimizer steps and the CLI with
# the CPU path) and the GPU benchmarks beside the CPU ones. Needs the fixtures (`bash
# tools/fixtures.sh`, or build/ copied from a machine that made them). Writes build/gpu_check/.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
out=build/gpu_check
mkdir -p "$out"
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader | tee "$out/gpu.txt" || true

cargo build --release --features cuda --bins --tests
cargo test --release --features cuda --test cuda --test cuda_kernels -- --nocapture 2>&1 | tee "$out/tests.txt"
if grep -q "skipped, no GPU" "$out/tests.txt"; then
    echo "the GPU tests skipped: no usable GPU here" >&2
    exit 1
fi

E=target/release/edgetune
for device in cpu cuda; do
    $E bench znorm --model build/models/resnet50_bn_op17.onnx --iters 20 --device "$device" --json
    $E bench train build/models/resnet18_bn_op17.onnx --batch 32 --size 112x112 --iters 10 --device "$device" --json
    $E bench train build/models/resnet20_cifar.onnx --batch 128 --size 32x32 --iters 10 --device "$device" --json
    $E bench infer build/models/resnet50_bn_op17.onnx --batch 8 --iters 20 --device "$device" --json
done 2>&1 | tee "$out/bench.jsonl"
echo "wrote $out/"
