#!/usr/bin/env bash
# Builds the Python package (bitttt, cortex_rust) with the CUDA backend by plain CMake, for machines
# without pip access or nanobind/scikit-build-core (the GPU machine of the `device` tool), and
# installs it into a folder to put on PYTHONPATH. Usage, from the repository root:
#   source tools/device_env.sh        # on the GPU machine: the carried .debs and their CMake args
#   tools/device_python.sh BUILD_DIR SITE_DIR [extra cmake args...]
#   PYTHONPATH=SITE_DIR BITTTT_BUILD_DIR=BUILD_DIR python3 -m pytest -q tests/python/test_python_cuda.py
# nanobind comes from its wheel (pure Python: its C++ sources and CMake files are inside) in
# $WHEEL_DIR (default .whl), fetched once where pip works:
#   python3 -m pip download --no-deps --only-binary=:all: -d .whl nanobind==3.1.0
# scikit-build-core is not needed: CMake builds the extension directly (BITTTT_PYTHON=ON), the CLI
# `bitttt` too (the Python tests that drive it find it in BUILD_DIR).
set -euo pipefail
if [ $# -lt 2 ]; then
    echo "usage: tools/device_python.sh BUILD_DIR SITE_DIR [cmake args...]" >&2
    exit 2
fi
build=$(mkdir -p "$1" && cd "$1" && pwd)
site=$(mkdir -p "$2" && cd "$2" && pwd)
shift 2
wheel_dir=${WHEEL_DIR:-.whl}
python=${PYTHON:-$(command -v python3)}

wheel=$(ls "$wheel_dir"/nanobind-*.whl 2>/dev/null | head -n 1 || true)
if [ -z "$wheel" ]; then
    echo "device_python: no nanobind wheel in $wheel_dir (see the comment at the top)" >&2
    exit 1
fi
# A wheel is a zip file; Python's zipfile unpacks it (no unzip needed).
nb="$build/nanobind-wheel"
if [ ! -f "$nb/.done" ]; then
    rm -rf "$nb"
    "$python" -m zipfile -e "$wheel" "$nb"
    touch "$nb/.done"
fi
# python/CMakeLists.txt asks `python -m nanobind --cmake_dir`: the wheel must come first.
export PYTHONPATH="$nb${PYTHONPATH:+:$PYTHONPATH}"

# shellcheck disable=SC2086  # BITTTT_DEVICE_CMAKE_ARGS is a list of arguments
cmake -S . -B "$build" ${BITTTT_DEVICE_CMAKE_ARGS:--DCMAKE_BUILD_TYPE=Release} \
    -DBITTTT_PYTHON=ON -DBITTTT_CUDA=ON -DBITTTT_BUILD_TESTS=OFF \
    -DPython_EXECUTABLE="$python" -Dnanobind_DIR="$nb/nanobind/cmake" "$@" >"$build/configure.log" ||
    { cat "$build/configure.log" >&2; exit 1; }
# A non-PIC static zlib cannot go into the extension (a shared object): on the GPU machine that
# happens when tools/device_env.sh's link fix was not there when the build folder was configured.
if grep -q '^ZLIB_LIBRARY_RELEASE:FILEPATH=.*\.a$' "$build/CMakeCache.txt"; then
    echo "device_python: CMake found a static libz.a; source tools/device_env.sh and use a fresh" \
        "build folder" >&2
    exit 1
fi
cmake --build "$build" -j "${JOBS:-$(nproc)}" --target bitttt _ext _ext_stub

# The package folders, then the extension and its stubs beside them (install rules of python/).
rm -rf "$site/bitttt" "$site/cortex_rust"
cp -r python/bitttt python/cortex_rust "$site/"
cmake --install "$build" --prefix "$site" >/dev/null
PYTHONPATH="$site" "$python" -c 'import bitttt; print("device_python: bitttt", bitttt.version(), "in", bitttt.__file__)'
