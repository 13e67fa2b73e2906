#!/usr/bin/env bash
# The Python bindings' tests: builds python/ (maturin, the build backend, compiles the Rust crate
# edgetune-python) and installs it into tools/.venv-light, builds the `edgetune` command (the
# tests compare its error messages), then runs pytest on python/tests.
#
# Needs `bash tools/fixtures.sh` first: the light venv, with the pinned maturin and pytest of
# tools/requirements-light.txt. No network: the build uses the venv's maturin
# (--no-build-isolation) and the installed numpy (--no-deps); cargo needs the crates of
# Cargo.lock (fetched from crates.io the first time, as for every other build here).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

die() { echo "test_python.sh: error: $*" >&2; exit 1; }

venv="$root/tools/.venv-light"
py="$venv/bin/python"
setup="run 'bash tools/fixtures.sh' (it installs tools/requirements-light.txt)"
[[ -x "$py" ]] || die "no $py: $setup"
"$py" -m pytest --version >/dev/null 2>&1 || die "pytest is not in $venv: $setup"
[[ -x "$venv/bin/maturin" ]] || die "maturin is not in $venv: $setup"

# The repository's target dir, so that the edgetune library is compiled once for the bindings,
# the CLI and the tests (the default build sets no rustflags; kernels are chosen at run time).
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$root/target}"
# maturin's PEP 517 backend runs the `maturin` command: the venv's.
export PATH="$venv/bin:$PATH"

start=$SECONDS
cargo build --release --bin edgetune
"$py" -m pip install --disable-pip-version-check --no-build-isolation --no-deps --force-reinstall -q ./python \
  || die "pip install ./python failed"
echo "test_python.sh: built and installed the edgetune package in $((SECONDS - start)) s"

# The README's "Use from Python" example is python/examples/quickstart.py (which pytest runs).
"$py" tools/readme_example.py "## Use from Python" python python/examples/quickstart.py

start=$SECONDS
"$py" -m pytest python/tests -q -p no:cacheprovider
echo "test_python.sh: pytest took $((SECONDS - start)) s"
