#!/usr/bin/env bash
# The published study, in the order its issue asks for: the three H = 1000 cells of Table 1 with five
# seeds, the learning-rate study, the ablations again on this code (their pages predate it), then H = 2000,
# then H = 5000 (reports/paper, reports/lr, reports/ablations).
#
#   scripts/study.sh                 (from the repository root, after `make setup`)
#   WORKERS=1 scripts/study.sh       (one run at a time, e.g. while the tests use the other core)
#
# Every step is an ordinary `mnistlab sweep`: a rerun skips what is up to date, and a run killed
# mid-training resumes from its last checkpoint. On a CPU each seed is a notebook of its own, so a
# finished seed is published (run page, notebook, record, manifest) as soon as it ends:
# scripts/publish-finished.py copies such runs into another checkout and commits them. The
# partial sweeps write an index of the runs they cover; the last one covers all of Table 1.
# About 16 core-hours on a 2-core CPU (one torch thread per run, WORKERS runs at a time).
set -uo pipefail

WORKERS=${WORKERS:-2}
SEEDS=${SEEDS:-0,1,2,3,4}
MNISTLAB=${MNISTLAB:-.venv/bin/mnistlab}
status=0

sweep() {
    echo "=== study: mnistlab sweep $* --workers $WORKERS ($(date -u +%FT%TZ))"
    "$MNISTLAB" sweep "$@" --workers "$WORKERS" || { status=$?; echo "=== study: that sweep exited $status"; }
}

sweep params/paper/nmodel-hs1000.yaml params/paper/bmodel-hs1000.yaml params/paper/wmodel-hs1000.yaml \
    --seeds "$SEEDS" --out reports/paper
sweep params/lr --out reports/lr --also reports/paper/runs
sweep params/ablations --out reports/ablations
sweep params/paper/*-hs1000.yaml params/paper/*-hs2000.yaml --seeds "$SEEDS" --out reports/paper
sweep params/paper --seeds "$SEEDS" --out reports/paper
echo "=== study: done ($(date -u +%FT%TZ)), last failing exit status: $status"
exit "$status"
