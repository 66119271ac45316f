#!/usr/bin/env bash
# The one script a GPU node runs, from the checkout it was brought with (docs/gpu.md):
#
#   scripts/gpu-node.sh OUTDIR [--budget 540] [--profile params/paper] [--seeds 0,1,2,3,4] [--workers 3] ...
#
# In at most nine minutes: probes the node, puts MNIST and MathJax in place from the wheel folder
# (build/gpu-wheels, from scripts/gpu-bundle.sh), runs the first check (benchmarks/gpu_check.py) while it installs
# what the node lacks, offline, then the 45-run paper sweep, with CUDA graphs only if the check passed; results
# (at most 8 files) in OUTDIR as it goes. The work is scripts/gpu_node.py's; this finds a Python for it.
#   PYTHON  the node's Python with torch  [python3]
set -euo pipefail
python=${PYTHON:-python3}
if ! command -v "$python" >/dev/null; then
    echo "gpu-node: $python: no such Python; set PYTHON=/path/to/python3 (the one with the node's torch)" >&2
    exit 3
fi
if ! "$python" -c 'import sys; sys.exit(sys.version_info < (3, 10))'; then
    echo "gpu-node: $("$python" -V 2>&1) is too old: mnistlab needs Python 3.10 or newer" >&2
    exit 3
fi
exec "$python" "$(dirname "$0")/gpu_node.py" "$@"
