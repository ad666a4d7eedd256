#!/usr/bin/env bash
# One call on the GPU machine for the decode path (the `device` tool): builds the CUDA targets,
# runs the GPU tests of the decode kernels and sessions, then `bench cuda-decode` (70B shape, the
# on-the-fly chain against separate norm/quantize kernels in the same process) and the session
# decode benchmark with and without the chain (BITTTT_CUDA_NO_CHAIN=1). Logs go to $OUT; a short
# summary is printed last. Usage (repository root): OUT=/some/dir bash tools/device_decode_check.sh
set -u
B=${B:-/tmp/b-decode}
OUT=${OUT:-/tmp/decode-out}
mkdir -p "$OUT"
source tools/device_env.sh
nvidia-smi --query-gpu=name,clocks.sm,clocks.mem,temperature.gpu --format=csv >"$OUT/gpu.txt" 2>&1
cmake -S . -B "$B" $BITTTT_DEVICE_CMAKE_ARGS -DBITTTT_CUDA=ON -DBITTTT_WERROR=ON >"$OUT/build.log" 2>&1
if ! cmake --build "$B" -j16 --target bitttt gemv_float_cuda_test decode_chain_cuda_test \
    ternary_cuda_test vector_ops_cuda_test model_cuda_test >>"$OUT/build.log" 2>&1; then
    grep -E "error" -A3 "$OUT/build.log" | head -60
    exit 1
fi
: >"$OUT/tests.log"
for t in gemv_float decode_chain ternary vector_ops model; do
    timeout 300 "$B/tests/cuda/${t}_cuda_test" >>"$OUT/tests.log" 2>&1
    echo "test $t rc=$?" | tee -a "$OUT/tests.log"
done
timeout 120 "$B/bitttt" bench cuda-gemv >"$OUT/bench_decode.log" 2>&1
echo "bench cuda-gemv rc=$?"
timeout 240 "$B/bitttt" bench cuda-decode >>"$OUT/bench_decode.log" 2>&1
echo "bench cuda-decode rc=$?"
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
