#!/usr/bin/env bash
# The C API as a C program uses it: builds capi/ (the edgetune-c crate: libedgetune_c.a and
# .so), checks that capi/include/edgetune.h is what cbindgen generates from the Rust signatures
# (capi/tests/header.rs) and that it compiles as C11 and C++ without warnings, then compiles
# tests/c/finetune.c with cc against the static and then the shared library and runs each: load,
# infer (one session on two threads at once), a ZNorm + Adam step loop with a new classifier, export, the one-call finetune with a
# step callback, the error paths. The exported model must pass onnx's full checker and load in
# onnxruntime from its path, giving the trainer's logits (tools/deploy_check.py). Last, the
# README's C example (examples/c/quickstart.c) is checked to be the file, built and run.
# Needs cc and c++ (gcc and g++ on Debian).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
py="$root/tools/.venv-light/bin/python"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

cargo build --release -p edgetune-c
cargo test --release -p edgetune-c
lib="$root/target/release"
include="$root/capi/include"
flags=(-std=c11 -Wall -Wextra -Wpedantic -Werror -O1 -I"$include")
# The header alone, as C and as C++ (cbindgen's cpp_compat guards).
echo '#include "edgetune.h"' > "$work/header.c"
cc "${flags[@]}" -fsyntax-only "$work/header.c"
c++ -std=c++17 -Wall -Wextra -Werror -I"$include" -fsyntax-only -x c++ "$work/header.c"

# Static: the archive and what the Rust standard library needs from the system (noexecstack:
# an assembly object of tract-linalg does not declare its stack non-executable).
static=("$lib/libedgetune_c.a" -lpthread -ldl -lm -Wl,-z,noexecstack)
cc "${flags[@]}" tests/c/finetune.c "${static[@]}" -o "$work/finetune-static"
# Shared: found at run time through the rpath.
cc "${flags[@]}" tests/c/finetune.c -L"$lib" -ledgetune_c -Wl,-rpath,"$lib" -lpthread -lm -o "$work/finetune-shared"

for kind in static shared; do
  out="$work/$kind"
  mkdir -p "$out"
  echo "test_c_api.sh: $kind library"
  "$work/finetune-$kind" models/pretrained/resnet20_fashion.onnx idx:models/data/mnist-slice "$out"
  "$py" tools/deploy_check.py "$out/tuned.onnx" "$out/x.npy" "$out/ort.npy"
  "$py" - "$out" <<'PY'
import sys
import numpy as np
out = sys.argv[1]
ours, ort = np.load(f"{out}/logits.npy"), np.load(f"{out}/ort.npy")
worst = float(np.abs(ours - ort).max())
# The same float32 weights in both runtimes; different kernels and summation orders leave a few
# float32 ulps on logits of magnitude ~1 (1e-4, as tests/deploy.rs allows for probabilities).
if ours.shape != ort.shape or worst > 1e-4:
    sys.exit(f"test_c_api.sh: error: onnxruntime's logits {ort.shape} differ from the trainer's {ours.shape} by {worst:.2e}")
print(f"onnxruntime on the exported model: within {worst:.1e} of the trainer's logits")
PY
done

# The README's "Use from C" example, built as it says and run.
"$py" tools/readme_example.py "## Use from C" c examples/c/quickstart.c
cc "${flags[@]}" examples/c/quickstart.c "${static[@]}" -o "$work/quickstart"
"$work/quickstart" models/pretrained/resnet20_fashion.onnx idx:models/data/mnist-slice "$work/quick.onnx"
echo "test_c_api.sh: ok: header generated from the Rust signatures; the C program passed against both libraries; onnxruntime loads the export"
