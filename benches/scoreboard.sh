#!/usr/bin/env bash
# Every performance target of issue 6 against its peer, in one run (benches/README.md,
# "Issue 6 scoreboard"): inference and load-to-first-output against onnxruntime and tract, the
# full finetune step and its peak memory against PyTorch. About 6 minutes on 2 cores; run it on a
# quiet machine. Needs the fixtures (bash tools/fixtures.sh) and the torch venv (tools/venv.sh torch).
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --quiet
light=$(tools/venv.sh light)
torch=$(tools/venv.sh torch)
echo "## $(date -u '+%Y-%m-%d %H:%M UTC'), $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)"
"$light" tools/bench_infer.py --iters 15 --models build/models/resnet50_bn_op17.onnx build/models/resnet18_bn_op17.onnx
"$torch" tools/bench_grad.py --model resnet18 --batch 32 --size 112 --step train
"$torch" tools/bench_grad.py --model resnet20 --batch 128 --size 32 --step train
