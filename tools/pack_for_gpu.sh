#!/usr/bin/env bash
# Pack what train_on_gpu.py needs on a bare, offline GPU machine into .devcarry/ (about 33 MB, so the
# checkout plus this stays under the device tool's 64 MiB transfer): the wheel its image lacks (nibabel),
# the training sources' anatomy files as xz, and the small validation banks.
# Run from the repository root after build_banks.sh (for banks/flair_val.h5, banks/pretrain_val.h5).
# Then, on the machine (see README.md in this folder):
#   pip install --no-index --no-deps --target /tmp/site .devcarry/whl/*.whl; export PYTHONPATH=/tmp/site
#   DPS_ANATOMY_DIR=/tmp/anat python3 tools/train_on_gpu.py --packed-anatomy .devcarry/anatomy ...
set -euo pipefail
out=.devcarry
grep -qx "/$out/" .git/info/exclude 2>/dev/null || echo "/$out/" >> .git/info/exclude
mkdir -p $out/whl $out/anatomy $out/banks
python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
  -d $out/whl nibabel==5.4.2
cp banks/flair_val.h5 banks/pretrain_val.h5 $out/banks/
python3 - <<'PY' | while read -r name f; do
from models.data import sources as S, splits
for name in splits.split_sources("train", only_available=True):
    for f in S.resolve_files(S.get_source(name)):
        print(name, f)
PY
  mkdir -p "$out/anatomy/$name"; b=$(basename "$f")
  case "$b" in
    *.gz) gzip -dc "$f" | xz -9 -T2 > "$out/anatomy/$name/${b%.gz}.xz" ;;
    *) xz -9 -c "$f" > "$out/anatomy/$name/$b.xz" ;;
  esac
done
du -sh $out
