#!/usr/bin/env bash
# The library as another crate uses it: a scratch crate outside this repository depends on
# edgetune by path with `default-features = false`, brings its own global allocator
# (examples/embed.rs, which the README shows), finetunes a model through the library and
# exports it; then:
#   - `cargo tree` of that crate holds no clap, indicatif or plotters (the CLI's dependencies);
#   - the exported model loads in onnxruntime from its path (tools/deploy_check.py).
# It reuses this repository's target/ (same lock file, same rustflags), so only the scratch
# crate itself is compiled when the library is already built.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
scratch="$(mktemp -d)"
trap 'rm -rf "$scratch"' EXIT
mkdir -p "$scratch/src"
cp "$root/examples/embed.rs" "$scratch/src/main.rs"
# The README's "Use from Rust" example is this program (what is built and run below).
"$root/tools/.venv-light/bin/python" "$root/tools/readme_example.py" "## Use from Rust" rust examples/embed.rs "use std::alloc"
cp "$root/Cargo.lock" "$scratch/Cargo.lock"
cat > "$scratch/Cargo.toml" <<TOML
[package]
name = "edgetune-embed-check"
version = "0.0.0"
edition = "2021"
publish = false

[dependencies]
edgetune = { path = "$root", default-features = false }

[workspace]
TOML
export CARGO_TARGET_DIR="$root/target"
# No build flags: what a crate that depends on edgetune gets (the repository's .cargo/config.toml
# sets none either, so the library is compiled once for both).
# The tree first (a failure of cargo tree itself ends the script), then what it must not hold.
tree="$(cd "$scratch" && cargo tree -e normal --prefix none)"
cli_deps="$(grep -E '^(clap|indicatif|plotters|mimalloc) ' <<<"$tree" || true)"
if [[ -n "$cli_deps" ]]; then
  echo "test_embed.sh: error: a crate using the library with default features off pulls: $cli_deps" >&2
  exit 1
fi
(cd "$scratch" && cargo build --release -q)
out="$scratch/tuned.onnx"
(cd "$root" && "$CARGO_TARGET_DIR/release/edgetune-embed-check" models/pretrained/resnet20_fashion.onnx \
  idx:models/data/mnist-slice "$out")
py="$root/tools/.venv-light/bin/python"
"$py" -c "import numpy as np; np.save('$scratch/x.npy', np.zeros((2, 3, 32, 32), np.float32))"
"$py" "$root/tools/deploy_check.py" "$out" "$scratch/x.npy" "$scratch/y.npy"
echo "test_embed.sh: ok: no CLI dependencies; finetuned and exported through the library; onnxruntime loads the result"
