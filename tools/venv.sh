#!/usr/bin/env bash
# Create (if needed) a tools/ virtual environment and print its python path.
#
#   tools/venv.sh light   -> tools/.venv-light  from tools/requirements-light.txt
#   tools/venv.sh torch   -> tools/.venv-torch  from tools/requirements-torch.txt
#
# Idempotent: a stamp file inside the venv holds a copy of the requirements file it was
# installed from; when it matches, nothing is done. Prints nothing but errors; the last
# (only) line on stdout is the venv's python path.
set -euo pipefail

kind="${1:-}"
case "$kind" in
  light|torch) ;;
  *) echo "usage: tools/venv.sh light|torch" >&2; exit 2 ;;
esac

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
venv="$here/.venv-$kind"
req="$here/requirements-$kind.txt"
stamp="$venv/.requirements.stamp"
py="$venv/bin/python"
python="${PYTHON:-python3}"

if [[ ! -f "$req" ]]; then
  echo "error: missing $req" >&2; exit 1
fi

if [[ -x "$py" && -f "$stamp" ]] && cmp -s "$req" "$stamp"; then
  echo "$py"
  exit 0
fi

log="$(mktemp)"
trap 'rm -f "$log"' EXIT
if [[ ! -x "$py" ]]; then
  if ! "$python" -m venv "$venv" >"$log" 2>&1; then
    cat "$log" >&2; echo "error: '$python -m venv $venv' failed" >&2; exit 1
  fi
fi
if ! "$py" -m pip install --disable-pip-version-check -q -r "$req" >"$log" 2>&1; then
  cat "$log" >&2; echo "error: pip install -r $req into $venv failed" >&2; exit 1
fi
cp "$req" "$stamp"
echo "$py"
