#!/usr/bin/env bash
# The GPU check (issue 26) on a machine with one NVIDIA GPU and a fresh checkout, in <= 8 minutes:
# sets up its own environment with a CUDA build of torch, then runs bench/gpu_check.py (CUDA-only
# tests, tokenizer step GPU vs CPU vs the public SimCIT step, GPU encode actor items/s, recommender
# step and decode users/s, peak GPU memory) and writes bench/results/gpu/gpu_check.json.
#
#   bash bench/gpu_check.sh             # on the GPU machine
#   bash bench/gpu_check.sh --dry-run   # anywhere: CPU, tiny sizes, the CUDA tests skipped (CI runs this)
#
# Environment: GPU_CHECK_VENV (default .venv-gpu; the dry run uses .venv from `make`), GPU_CHECK_PYTHON
# (an interpreter whose torch already sees the GPU: skips the set-up), GPU_CHECK_TIMEOUT (default 420 s
# for the measurements), GPU_CHECK_OUT, SIMCIT_REFERENCE_DIR (a github.com/alibaba/SimCIT checkout).
set -euo pipefail
cd "$(dirname "$0")/.."

DRY_RUN=0
[[ "${1:-}" == "--dry-run" ]] && DRY_RUN=1
OUT="${GPU_CHECK_OUT:-bench/results/gpu/gpu_check.json}"
say() { echo "gpu_check: $*" >&2; }

if [[ $DRY_RUN == 0 ]] && ! nvidia-smi -L >/dev/null 2>&1; then
    say "failed: no NVIDIA GPU on this machine (nvidia-smi -L found none); use --dry-run to check the script"
    exit 2
fi

if [[ -n "${GPU_CHECK_PYTHON:-}" ]]; then
    PY="$GPU_CHECK_PYTHON"
elif [[ $DRY_RUN == 1 ]]; then
    make -s .venv/.installed-"$(sha1sum pyproject.toml | cut -c1-12)" >&2
    PY=.venv/bin/python
else
    VENV="${GPU_CHECK_VENV:-.venv-gpu}"
    if [[ ! -x "$VENV/bin/python" ]]; then
        say "setting up $VENV (the package index's Linux torch==2.13.0 wheel is the CUDA build)"
        python3 -m venv "$VENV"
        "$VENV/bin/python" -m pip install -q --disable-pip-version-check torch==2.13.0
        "$VENV/bin/python" -m pip install -q --disable-pip-version-check -e '.[dev]'
    fi
    PY="$VENV/bin/python"
    if ! "$PY" -c 'import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)'; then
        say "failed: torch in $VENV cannot use the GPU ($("$PY" -c 'import torch; print(torch.__version__, "CUDA", torch.version.cuda)'))"
        exit 2
    fi
fi

ARGS=(--out "$OUT")
[[ $DRY_RUN == 1 ]] && ARGS+=(--dry-run)
timeout "${GPU_CHECK_TIMEOUT:-420}" "$PY" bench/gpu_check.py "${ARGS[@]}"
say "wrote $OUT"
