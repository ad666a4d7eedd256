#!/usr/bin/env bash
# One call on the GPU machine for the decode path (the `device` tool): builds the CUDA targets,
# runs the GPU tests of the decode kernels and sessions, then `bench cuda-decode` (70B shape, the
# on-the-fly chain against separate norm/quantize kernels in the same process) and the session
# decode benchmark with and without the chain (BITTTT_CUDA_NO_CHAIN=1). Logs go to $OUT; a short
# summary is printed last. Usage (repository root): OUT=/some/dir bash tools/device_decode_check.sh
# QUICK=1: only the decode-kernel tests and one `bench cuda-decode` (a short follow-up call).
set -u
B=${B:-/tmp/b-decode}
OUT=${OUT:-/tmp/decode-out}
mkdir -p "$OUT"
source tools/device_env.sh
nvidia-smi --query-gpu=name,clocks.sm,clocks.mem,temperature.gpu --format=csv >"$OUT/gpu.txt" 2>&1
cmake -S . -B "$B" $BITTTT_DEVICE_CMAKE_ARGS -DBITTTT_CUDA=ON -DBITTTT_WERROR=ON >"$OUT/build.log" 2>&1
TESTS="gemv_float decode_chain ternary vector_ops model"
[ "${QUICK:-0}" = 1 ] && TESTS="gemv_float vector_ops decode_chain"
if ! cmake --build "$B" -j16 --target bitttt model_cuda_test \
    $(for t in $TESTS; do echo ${t}_cuda_test; done) \
    >>"$OUT/build.log" 2>&1; then
    grep -E "error" -A3 "$OUT/build.log" | head -60
    exit 1
fi
: >"$OUT/tests.log"
for t in $TESTS; do
    timeout 300 "$B/tests/cuda/${t}_cuda_test" >>"$OUT/tests.log" 2>&1
    echo "test $t rc=$?" | tee -a "$OUT/tests.log"
done
if [ "${QUICK:-0}" = 1 ]; then
    timeout 120 "$B/tests/cuda/model_cuda_test" --gtest_filter='*Wide*' >>"$OUT/tests.log" 2>&1
    echo "test model(wide) rc=$?" | tee -a "$OUT/tests.log"
fi
: >"$OUT/bench_decode.log"
if [ "${QUICK:-0}" != 1 ]; then
    timeout 120 "$B/bitttt" bench cuda-gemv >>"$OUT/bench_decode.log" 2>&1
    echo "bench cuda-gemv rc=$?"
fi
timeout 240 "$B/bitttt" bench cuda-decode >>"$OUT/bench_decode.log" 2>&1
echo "bench cuda-decode rc=$?"
if [ "${QUICK:-0}" = 1 ]; then
    echo "==== summary"
    grep -E "^\[  (FAILED|PASSED|SKIPPED) |Failure|test .* rc=|wide chain" "$OUT/tests.log" | head -30
    cat "$OUT/bench_decode.log"
    exit 0
fi
echo "== BITTTT_CUDA_GEMV_MAX_TEAM=8" >>"$OUT/bench_decode.log"
BITTTT_CUDA_GEMV_MAX_TEAM=8 timeout 240 "$B/bitttt" bench cuda-decode >>"$OUT/bench_decode.log" 2>&1
echo "bench cuda-decode max_team=8 rc=$?"
: >"$OUT/bench_session.log"
for no_chain in 0 1; do
    echo "== BITTTT_CUDA_NO_CHAIN=$no_chain" >>"$OUT/bench_session.log"
    BITTTT_CUDA_NO_CHAIN=$no_chain timeout 150 "$B/bitttt" bench decode --device cuda \
        >>"$OUT/bench_session.log" 2>&1
    echo "bench decode no_chain=$no_chain rc=$?"
done
echo "==== summary"
cat "$OUT/gpu.txt"
grep -E "^\[  (FAILED|PASSED|SKIPPED) |Failure|Expected|Which is|actual|test .* rc=" "$OUT/tests.log" | head -60
grep -E "\[ (logits|batched|default.bitt) \]" "$OUT/tests.log" | head -20
cat "$OUT/bench_decode.log" "$OUT/bench_session.log"
