#!/usr/bin/env bash
# Static checks beyond the compiler's -Wall -Wextra -Werror (Makefile: lint, lint-fast).
# Usage (repository root): tools/lint.sh [--fast] [FILE.cpp ...]
#   clang-format  every tracked C/C++/CUDA file must already be formatted (.clang-format);
#   cppcheck      all of src/, tests/ and examples/ C++ (warning, performance, portability), with
#                 the hand-checked false positives in tools/cppcheck-suppressions.txt;
#   clang-tidy    (.clang-tidy; ~25 s a file) on the FILEs given, or on every src/ .cpp when none
#                 are given; --fast skips it. `make lint-changed` gives it the files changed since BASE.
# Needs a configured build directory ($BUILD_DIR, default build) for compile_commands.json.
# Exit status 1 on any finding.
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD_DIR=${BUILD_DIR:-build}
fast=0
if [ "${1:-}" = "--fast" ]; then fast=1; shift; fi
db="$BUILD_DIR/compile_commands.json"
[ -f "$db" ] || { echo "lint: $db missing: configure first (make build)" >&2; exit 2; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
status=0

echo "lint: clang-format"
if ! git ls-files '*.cpp' '*.hpp' '*.h' '*.c' '*.cu' '*.cuh' | xargs clang-format --dry-run -Werror; then
    echo "lint: run 'make format'" >&2
    status=1
fi

echo "lint: cppcheck"
# Only the C/C++ translation units (nvcc's .cu entries are not C++ cppcheck can parse).
python3 - "$db" "$tmp/db.json" <<'PY'
import json, sys
entries = json.load(open(sys.argv[1]))
keep = [e for e in entries
        if e["file"].endswith((".cpp", ".c")) and any(f"/{d}/" in e["file"] for d in ("src", "tests", "examples"))]
json.dump(keep, open(sys.argv[2], "w"))
PY
if ! cppcheck --project="$tmp/db.json" --library=googletest --enable=warning,performance,portability \
    --std=c++20 --inline-suppr --suppress=missingIncludeSystem \
    --suppressions-list=tools/cppcheck-suppressions.txt --error-exitcode=1 --quiet -j"$(nproc)"; then
    status=1
fi

if [ $fast -eq 0 ]; then
    if [ $# -eq 0 ]; then
        mapfile -t files < <(git ls-files 'src/*.cpp')
    else
        files=("$@")
    fi
    if [ ${#files[@]} -gt 0 ]; then
        echo "lint: clang-tidy on ${#files[@]} file(s)"
        if ! printf '%s\n' "${files[@]}" |
            xargs -P"$(nproc)" -n1 clang-tidy -p "$BUILD_DIR" --quiet --warnings-as-errors='*' 2>/dev/null; then
            status=1
        fi
    fi
fi
[ $status -eq 0 ] && echo "lint: clean"
exit $status
