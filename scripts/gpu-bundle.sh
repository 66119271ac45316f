#!/usr/bin/env bash
# Builds the wheel folder a GPU node needs (build/gpu-wheels) and measures what would travel: scripts/gpu_bundle.py.
#   PYTHON  a Python with pip, packaging and mnistlab (the checkout's .venv)  [.venv/bin/python]
set -euo pipefail
exec "${PYTHON:-.venv/bin/python}" "$(dirname "$0")/gpu_bundle.py" "$@"
