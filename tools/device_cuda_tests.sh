#!/usr/bin/env bash
# One call on the GPU machine (the `device` tool) that runs every GPU test: builds the CUDA
# configuration's test binaries (tests/cuda/*_cuda_test) and the CLI, runs each binary with a time
# limit and writes its log to $OUT; prints one line per binary and every failure last.
# Usage (repository root): OUT=/some/dir bash tools/device_cuda_tests.sh [NAME ...]
#   NAME: test binaries without the _cuda_test suffix (default: all of tests/cuda).
set -u
B=${B:-/tmp/b-cuda-tests}
OUT=${OUT:-/tmp/cuda-tests-out}
mkdir -p "$OUT"
source tools/device_env.sh
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader >"$OUT/gpu.txt" 2>&1
names=("$@")
if [ ${#names[@]} -eq 0 ]; then
    for f in tests/cuda/*_cuda_test.cpp; do
        n=$(basename "$f" .cpp)
        names+=("${n%_cuda_test}")
    done
fi
targets=(bitttt)
for n in "${names[@]}"; do targets+=("${n}_cuda_test"); done
start=$(date +%s)
cmake -S . -B "$B" $BITTTT_DEVICE_CMAKE_ARGS -DBITTTT_CUDA=ON -DBITTTT_WERROR=ON >"$OUT/build.log" 2>&1
if ! cmake --build "$B" -j"$(nproc)" --target "${targets[@]}" >>"$OUT/build.log" 2>&1; then
    grep -E "error" -A3 "$OUT/build.log" | head -60
    exit 1
fi
echo "built in $(($(date +%s) - start)) s on $(cat "$OUT/gpu.txt")"
failed=0
for n in "${names[@]}"; do
    t0=$(date +%s)
    timeout 400 "$B/tests/cuda/${n}_cuda_test" >"$OUT/$n.log" 2>&1
    rc=$?
    [ $rc -ne 0 ] && failed=1
    echo "$n: rc=$rc, $(grep -cE '^\[       OK \]' "$OUT/$n.log") passed," \
        "$(grep -cE '^\[  FAILED  \] [A-Za-z]' "$OUT/$n.log") failed," \
        "$(grep -cE '^\[  SKIPPED \] [A-Za-z]' "$OUT/$n.log") skipped, $(($(date +%s) - t0)) s"
done
echo "==== failures"
grep -hE "^\[  FAILED  \] [A-Za-z]|Failure$|Expected|Which is|actual|^  .*(diff|tol)" "$OUT"/*.log | head -60
exit $failed
