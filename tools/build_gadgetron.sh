#!/usr/bin/env bash
# Build a minimal CPU Gadgetron (and the ISMRMRD it needs) from source into a prefix, so that the chains
# of config_xml/ can run under a real Gadgetron (tests/test_real_gadgetron.py, issue 18).
#
#   tools/build_gadgetron.sh GADGETRON_SRC ISMRMRD_SRC [PREFIX]
#
# GADGETRON_SRC / ISMRMRD_SRC: a git directory (bare or not: the pinned commit is exported from it), a
# source tarball, or an unpacked source folder. The public sources are github.com/gadgetron/gadgetron
# (MIT licence) and github.com/ismrmrd/ismrmrd (MIT licence). Pinned (what this script was written for):
GADGETRON_COMMIT=${GADGETRON_COMMIT:-846ed3fb57b235390ab0fb953edd17af86935d61}  # master, 2024-11-22
ISMRMRD_COMMIT=${ISMRMRD_COMMIT:-4037c41fcdcb8870234baaeb46ce4848aac1579a}      # v1.14.1 (Gadgetron's environment.yml)
#
# PREFIX (default ~/.cache/dps-gadgetron/gadgetron) gets the install; the build trees live in
# PREFIX/build and are kept, so running the script again resumes where it stopped. Compiles under
# nice ${NICE:-19} with -j${JOBS:-2} and ccache when present (CCACHE_DISABLE=1 for a cold build); the log of each
# step goes to PREFIX/build/*.log, and each run appends its seconds per part to PREFIX/build/timings.log.
# Only what the chains use is built: the gadgetron executable, gadgetron_ismrmrd_client, the core
# readers/writers and gadgetron_mricore (NoiseAdjust, RemoveROOversampling, AcquisitionAccumulateTrigger,
# BucketToBuffer, AsymmetricEchoAdjustRO); CUDA, MKL, Python support (external Python gadgets do not need
# it), tests and documentation are off.
#
# Patches, each with its reason:
# 1. apps/gadgetron/main.cpp declares operator>> / operator<< for std::pair<std::string, std::string> in
#    the global namespace; boost::lexical_cast (Boost 1.81, GCC 12) looks them up from inside Boost by
#    argument-dependent lookup, which only searches namespace std, and fails a static assertion. The
#    patch declares them in namespace std.
# 2. apps/clients/gadgetron_ismrmrd_client: connect() starts a thread that connects and then notifies a
#    condition variable that the main thread waits on with no predicate. When the connect is quick (a
#    loopback server), the notify can come before the wait: the wakeup is lost, the client waits its
#    whole timeout (-t, 10 s by default) with the server idle in [CONFIG], then closes its own socket
#    and dies with "write: Bad file descriptor". Measured here: about 1 client run in 20 on loopback
#    (SyneRBI/SIRF#641 reports the same message as occasional). The patch sets a flag under the mutex
#    and waits on it.
set -euo pipefail

[ $# -ge 2 ] || { sed -n '2,9p' "$0"; exit 2; }
GADGETRON_SRC=$1
ISMRMRD_SRC=$2
PREFIX=${3:-$HOME/.cache/dps-gadgetron/gadgetron}
JOBS=${JOBS:-2}
NICE=${NICE:-19}  # a lower value shares the cores evenly with other niced work (background training)
BUILD=$PREFIX/build
mkdir -p "$BUILD" "$PREFIX"
START=$(date +%s)

if command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
  echo "== Debian packages (Boost 1.81: Gadgetron wants >= 1.80; bookworm's default is 1.74)"
  apt-get install -y -q --no-install-recommends cmake ninja-build g++ ccache pkg-config libboost1.81-all-dev \
    libarmadillo-dev libcurl4-openssl-dev libpugixml-dev libfftw3-dev libopenblas-dev liblapack-dev \
    liblapacke-dev libhdf5-dev libxml2-dev libhowardhinnant-date-dev librange-v3-dev nlohmann-json3-dev \
    >"$BUILD/apt.log" 2>&1
fi

# unpack SRC at COMMIT into DEST (once)
unpack() {
  local src=$1 commit=$2 dest=$3
  [ -f "$dest/CMakeLists.txt" ] && return 0
  mkdir -p "$dest"
  if [ -d "$src" ] && git --git-dir="$src" rev-parse --git-dir >/dev/null 2>&1; then
    git --git-dir="$src" archive "$commit" | tar -x -C "$dest"
  elif [ -d "$src/.git" ]; then
    git -C "$src" archive "$commit" | tar -x -C "$dest"
  elif [ -f "$src" ]; then
    tar -xf "$src" -C "$dest" --strip-components=1
  elif [ -f "$src/CMakeLists.txt" ]; then
    cp -a "$src/." "$dest/"
  else
    echo "not a git directory, tarball or source folder: $src" >&2; exit 2
  fi
  echo "$commit" >"$dest/.source-commit"
}

# timings.log: one line per part and run: date, part, seconds, build steps run, cores, ccache on/off
timing() {
  local part=$1 seconds=$2 log=$3 steps
  steps=$(grep -c '^\[[0-9]*/[0-9]*\]' "$log" 2>/dev/null || true)
  echo "$(date -u +%FT%TZ) $part seconds=$seconds steps=${steps:-0} jobs=$JOBS cores=$(nproc) ccache=$([ "${CCACHE_DISABLE:-0}" = 1 ] && echo off || echo on)" \
    >>"$BUILD/timings.log"
}

launcher=()
command -v ccache >/dev/null 2>&1 && launcher=(-DCMAKE_CXX_COMPILER_LAUNCHER=ccache -DCMAKE_C_COMPILER_LAUNCHER=ccache)

echo "== ISMRMRD ${ISMRMRD_COMMIT:0:10}"
unpack "$ISMRMRD_SRC" "$ISMRMRD_COMMIT" "$BUILD/src/ismrmrd"
if [ ! -x "$PREFIX/bin/ismrmrd_hdf5_to_stream" ]; then  # its utilities: the stream converters of a Gadgetron run
  t0=$(date +%s)
  cmake -S "$BUILD/src/ismrmrd" -B "$BUILD/ismrmrd" -G Ninja -DCMAKE_BUILD_TYPE=Release \
    -DCMAKE_INSTALL_PREFIX="$PREFIX" -DBUILD_TESTS=OFF -DBUILD_EXAMPLES=OFF -DBUILD_UTILITIES=ON \
    "${launcher[@]}" >"$BUILD/ismrmrd-cmake.log" 2>&1
  nice -n "$NICE" cmake --build "$BUILD/ismrmrd" -j "$JOBS" >"$BUILD/ismrmrd-build.log" 2>&1
  cmake --install "$BUILD/ismrmrd" >"$BUILD/ismrmrd-install.log" 2>&1
  timing "ismrmrd-${ISMRMRD_COMMIT:0:10}" $(( $(date +%s) - t0 )) "$BUILD/ismrmrd-build.log"
fi

echo "== Gadgetron ${GADGETRON_COMMIT:0:10}"
unpack "$GADGETRON_SRC" "$GADGETRON_COMMIT" "$BUILD/src/gadgetron"
main="$BUILD/src/gadgetron/apps/gadgetron/main.cpp"
if ! grep -q "namespace std { // dps-gadgetron patch 1" "$main"; then
  python3 - "$main" <<'PY'
import sys
path = sys.argv[1]
text = open(path).read()
start = "std::istream& operator>>(std::istream& in, gadget_parameter& param) {"
end = "    out << param.first << \"=\" << param.second;\n    return out;\n}\n"
assert start in text and end in text, "patch 1: main.cpp changed; see tools/build_gadgetron.sh"
text = text.replace(start, "namespace std { // dps-gadgetron patch 1: found by ADL from boost::lexical_cast\n" + start)
text = text.replace(end, end + "} // namespace std\n")
open(path, "w").write(text)
PY
fi
client="$BUILD/src/gadgetron/apps/clients/gadgetron_ismrmrd_client/gadgetron_ismrmrd_client.cpp"
if ! grep -q "dps-gadgetron patch 2" "$client"; then
  python3 - "$client" <<'PY'
import sys
path = sys.argv[1]
text = open(path).read()
notify = "                cv.notify_all();\n            });"
wait = ("            if (std::cv_status::timeout == cv.wait_until(lk, std::chrono::system_clock::now() "
        "+std::chrono::milliseconds(timeout_ms_)) ) {")
declare = "        std::mutex cv_m;\n"
assert notify in text and wait in text and declare in text, "patch 2: the client changed; see tools/build_gadgetron.sh"
text = text.replace(declare, declare + "        bool connect_done = false; // dps-gadgetron patch 2: no lost wakeup\n", 1)
text = text.replace(notify, "                { std::lock_guard<std::mutex> done_lock(cv_m); connect_done = true; }\n" + notify, 1)
text = text.replace(wait, "            if (!cv.wait_until(lk, std::chrono::system_clock::now() + std::chrono::milliseconds(timeout_ms_), "
                          "[&] { return connect_done; })) {", 1)
open(path, "w").write(text)
PY
fi
t0=$(date +%s)
if [ ! -f "$BUILD/gadgetron/build.ninja" ]; then
  cmake -S "$BUILD/src/gadgetron" -B "$BUILD/gadgetron" -G Ninja -DCMAKE_BUILD_TYPE=Release \
    -DCMAKE_INSTALL_PREFIX="$PREFIX" -DCMAKE_PREFIX_PATH="$PREFIX" -DBoost_NO_SYSTEM_PATHS=OFF \
    -DBOOST_INCLUDEDIR=/usr/include -DUSE_CUDA=OFF -DUSE_MKL=OFF -DBUILD_TESTING=OFF \
    -DBUILD_PYTHON_SUPPORT=OFF -DBUILD_DOCUMENTATION=OFF -DREQUIRE_SIGNED_CONFIG=OFF \
    >"$BUILD/gadgetron-cmake.log" 2>&1  # Gadgetron's CMake uses ccache by itself
fi
nice -n "$NICE" cmake --build "$BUILD/gadgetron" -j "$JOBS" --target gadgetron gadgetron_ismrmrd_client \
  gadgetron_mricore gadgetron_core_readers gadgetron_core_writers >"$BUILD/gadgetron-build.log" 2>&1
timing "gadgetron-${GADGETRON_COMMIT:0:10}" $(( $(date +%s) - t0 )) "$BUILD/gadgetron-build.log"
echo "built in $(( $(date +%s) - START )) s (this run); binaries: $BUILD/gadgetron/apps"
