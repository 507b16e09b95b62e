#!/usr/bin/env bash
# Create (or reuse) the project's virtual environment and install genlab into it.
#
#   scripts/bootstrap.sh [EXTRAS]     e.g. scripts/bootstrap.sh test
#
# torch: a torch that the chosen Python already has (a CUDA build, say) is kept: the venv then
# sees it through --system-site-packages. Where there is none, the CPU build torch==2.13.0 is
# installed first, so that genlab's "torch>=2.4" never pulls a multi-GB CUDA build.
# Override with TORCH_SPEC (e.g. TORCH_SPEC="torch==2.13.0 --index-url URL").
set -euo pipefail

PYTHON="${PYTHON:-python3}"
VENV="${VENV:-.venv}"
EXTRAS="${1:-}"
TORCH_SPEC="${TORCH_SPEC:-torch==2.13.0}"

if [ ! -x "$VENV/bin/python" ]; then
  if "$PYTHON" -c "import torch" >/dev/null 2>&1; then
    echo "bootstrap: keeping the torch that $PYTHON already has (--system-site-packages)"
    "$PYTHON" -m venv --system-site-packages "$VENV"
  else
    "$PYTHON" -m venv "$VENV"
  fi
  "$VENV/bin/python" -m pip install --quiet --upgrade pip
fi

if ! "$VENV/bin/python" -c "import torch" >/dev/null 2>&1; then
  echo "bootstrap: installing $TORCH_SPEC (CPU build)"
  # shellcheck disable=SC2086
  "$VENV/bin/python" -m pip install --quiet $TORCH_SPEC
fi

SPEC="."
if [ -n "$EXTRAS" ]; then SPEC=".[$EXTRAS]"; fi
# pip's output goes to a file and is shown whole when pip fails (its exit status is the
# script's); on success only its warnings are shown, less the noisy "WARNING: Location" lines.
LOG="$(mktemp)"
trap 'rm -f "$LOG"' EXIT
status=0
"$VENV/bin/python" -m pip install --quiet --disable-pip-version-check -e "$SPEC" >"$LOG" 2>&1 \
  || status=$?
if [ "$status" -ne 0 ]; then
  cat "$LOG" >&2
  echo "bootstrap: pip install -e '$SPEC' failed (exit $status)" >&2
  exit "$status"
fi
grep -v "^WARNING: Location" "$LOG" || true # grep finds nothing on a quiet install: not an error

# torch-fidelity, the reference of the FID Inception network (tests/metrics/test_inception.py),
# which reads its Inception module by file path. Not a requirement of the test extra: pip would
# pull torchvision, which breaks transformers. So it is installed without dependencies, and into
# a folder of its own ($VENV/torch-fidelity) rather than site-packages, where its package
# __init__ would import torchvision whenever torchmetrics.image imports it.
if [[ ",$EXTRAS," == *",test,"* ]]; then
  status=0
  "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check --no-deps --upgrade \
    --target "$VENV/torch-fidelity" "torch-fidelity==0.4.0" >"$LOG" 2>&1 || status=$?
  if [ "$status" -ne 0 ]; then
    cat "$LOG" >&2
    echo "bootstrap: installing torch-fidelity into $VENV/torch-fidelity failed (exit $status)" >&2
    exit "$status"
  fi
  grep -v "^WARNING: Location" "$LOG" || true
fi
"$VENV/bin/python" -c "import genlab, torch" # fails loudly if the install did not take
