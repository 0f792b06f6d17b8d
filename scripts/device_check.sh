#!/usr/bin/env bash
# The GPU checks in one command, for a CUDA machine (planned for under 10 minutes on an H200: at most
# 2 x 2 minutes of pip where something is missing, 4 minutes of tests, 4 of bench, 2 of profile; on the
# H200 lent on 2026-11-30 tests and bench took 2.3 minutes and the profile half a minute; that machine
# reaches no index, so BLIP_DEVICE_CHECK_NO_PIP=1 skips pip, and transformers 5.24.0 went along as a
# wheel on PYTHONPATH, its own being 5.17):
#
#   bash scripts/device_check.sh
#
# 1. what is there: the GPU (nvidia-smi), Python, and whether torch sees CUDA;
# 2. what is missing is installed if pip can reach an index (each attempt has a time limit, and a
#    failure is reported, not fatal: the machine may have no network, or have it all already);
# 3. the CUDA tests (tests/test_cuda.py with BLIP_DEVICE_CHECK=1: float32 token ids identical to
#    transformers on the GPU through the recorded CUDA graph, graph vs eager, batched captions,
#    float16 / bfloat16 drift);
# 4. the GPU bench (scripts/bench_gpu.py): ours vs transformers in the same run, which writes the GPU
#    section of BENCHMARKS.md;
# 5. where a caption's time goes on that GPU (scripts/profile_caption.py: stages and busiest calls).
#
# Everything printed also goes to $OUT/device_check.log (or /tmp when OUT is unset); the JUnit report,
# the drift figures and BENCHMARKS.md are copied there too. The exit status is non-zero if any step failed.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT_DIR=${OUT:-/tmp}
mkdir -p "$OUT_DIR"
LOG="$OUT_DIR/device_check.log"
exec > >(tee "$LOG") 2>&1
export PYTHONUNBUFFERED=1 PIP_DISABLE_PIP_VERSION_CHECK=1 TOKENIZERS_PARALLELISM=false
PYTHON=${PYTHON:-python3}
FAILED=()

step() { echo; echo "=== $(date -u +%H:%M:%S) $*"; }
# run NAME SECONDS COMMAND...: a step with a time limit; its failure is recorded and the script goes on.
run() {
  local name=$1 limit=$2
  shift 2
  step "$name (limit ${limit}s)"
  if timeout --kill-after=10 "$limit" "$@"; then
    echo "--- $name: ok"
  else
    echo "--- $name: FAILED (exit $?)"
    FAILED+=("$name")
  fi
}

step "machine"
timeout 30 nvidia-smi || echo "nvidia-smi: not available"
"$PYTHON" --version
nproc

step "dependencies"
has() { "$PYTHON" -c "$1" >/dev/null 2>&1; }
if [[ ${BLIP_DEVICE_CHECK_NO_PIP:-0} == 1 ]]; then
  echo "BLIP_DEVICE_CHECK_NO_PIP=1: installing nothing"
  has() { true; }
fi
if ! has "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)"; then
  echo "torch with CUDA is missing: trying pip (torch==2.13.0, the pin of requirements.txt)"
  timeout 120 "$PYTHON" -m pip install -q --retries 1 --timeout 15 torch==2.13.0 || echo "pip could not install torch (no index?): continuing"
fi
# What the CUDA tests, the bench and the profile import (not the app: the H200 image has no gradio, and
# nothing can be fetched there).
if ! has "import transformers, tokenizers, safetensors, pytest, PIL, huggingface_hub"; then
  echo "test dependencies missing: trying pip (requirements-dev.txt, torch left as it is)"
  grep -v '^torch==' requirements.txt >"$OUT_DIR/requirements-no-torch.txt"
  sed -e 's#^-r requirements.txt#-r '"$OUT_DIR"'/requirements-no-torch.txt#' requirements-dev.txt \
    | grep -v -e '^playwright' -e '^ruff' >"$OUT_DIR/requirements-device.txt"
  timeout 120 "$PYTHON" -m pip install -q --retries 1 --timeout 15 -r "$OUT_DIR/requirements-device.txt" \
    || echo "pip could not install the test dependencies: continuing"
fi
"$PYTHON" - <<'EOF' || FAILED+=("dependencies")
import torch
print("torch", torch.__version__, "CUDA", torch.version.cuda, "available:", torch.cuda.is_available())
assert torch.cuda.is_available(), "PyTorch sees no CUDA device"
print("GPU:", torch.cuda.get_device_name(0))
import transformers
print("transformers", transformers.__version__)
EOF

export BLIP_DEVICE_CHECK=1 OUT="$OUT_DIR"
run "CUDA tests" 240 "$PYTHON" -m pytest tests/test_cuda.py -q -rA -s \
  -p no:cacheprovider --junitxml="$OUT_DIR/device_check_junit.xml"
run "GPU bench" 240 "$PYTHON" scripts/bench_gpu.py --runs 3 --dtypes float32,float16,bfloat16
run "GPU profile" 120 "$PYTHON" scripts/profile_caption.py --device cuda
cp BENCHMARKS.md "$OUT_DIR/BENCHMARKS.md" 2>/dev/null || true

step "summary"
if ((${#FAILED[@]})); then
  echo "FAILED: ${FAILED[*]}"
  exit 1
fi
echo "all steps passed"
