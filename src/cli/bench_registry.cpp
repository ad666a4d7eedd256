// The table of `bitttt bench` benchmarks. Add a line here for each new benchmark.
#include <fmt/format.h>

#include "cli/bench.hpp"

namespace bitttt::cli {

void bench_membw(const BenchOptions& options, BenchReporter& reporter) {
    size_t bytes = options.quick ? (size_t{64} << 20) : (size_t{1} << 30);
    double gbps = measure_read_bandwidth_gbps(bytes);
    reporter.report({fmt::format("membw.read.{}MiB", bytes >> 20), gbps, "GB/s",
                     "streaming read (SSE2, all threads)", 1.0});
}

// bench_kernels.cpp
void bench_gemv(const BenchOptions& options, BenchReporter& reporter);
void bench_gemm(const BenchOptions& options, BenchReporter& reporter);

// bench_lmhead.cpp
void bench_lmhead(const BenchOptions& options, BenchReporter& reporter);

// bench_ttt.cpp
void bench_ttt(const BenchOptions& options, BenchReporter& reporter);

// bench_model.cpp
void bench_decode(const BenchOptions& options, BenchReporter& reporter);
void bench_prompt(const BenchOptions& options, BenchReporter& reporter);

// bench_cuda.cpp (skipped with a note when there is no GPU or no CUDA in this build)
void bench_cuda_gemv_entry(const BenchOptions& options, BenchReporter& reporter);
void bench_cuda_decode_entry(const BenchOptions& options, BenchReporter& reporter);

// bench_cuda_ttt.cpp (skipped with a note when there is no GPU or no CUDA in this build)
void bench_cuda_ttt_scan_entry(const BenchOptions& options, BenchReporter& reporter);

// bench_tokenizer.cpp
void bench_tokenizer(const BenchOptions& options, BenchReporter& reporter);

// bench_train.cpp
void bench_train(const BenchOptions& options, BenchReporter& reporter);
// bench_cuda_train.cpp (skipped with a note without a GPU or CUDA)
void bench_cuda_train(const BenchOptions& options, BenchReporter& reporter);
void bench_cuda_train_mem(const BenchOptions& options, BenchReporter& reporter);

const std::vector<BenchEntry>& bench_entries() {
    static const std::vector<BenchEntry> entries = {
        {"membw", "memory read bandwidth (the reference for bandwidth-bound kernels)", bench_membw},
        {"gemv", "ternary GEMV over >= 1 GiB of packed weights vs read bandwidth", bench_gemv},
        {"gemm", "ternary GEMM 4096x4096 x 512 tokens (Gop/s) vs the scalar kernel", bench_gemm},
        {"lmhead", "decode's lm_head GEMV 32000x2048: fp32, bf16, int8 (--lm-head) vs bf16",
         bench_lmhead},
        {"ttt", "TTT layer D=128, 1000 tokens via the C ABI vs the seed and scalar", bench_ttt},
        {"decode", "model decode tokens/s (default config, 7B shape) vs read bandwidth",
         bench_decode},
        {"prompt", "model prompt tokens/s (batched forward) vs decode", bench_prompt},
        {"cuda-gemv", "CUDA ternary GEMV/GEMM and bf16 GEMV vs the GPU's read bandwidth",
         bench_cuda_gemv_entry},
        {"cuda-decode", "CUDA decode tokens/s, 70B-class Bit-TTT (random weights) vs HBM bandwidth",
         bench_cuda_decode_entry},
        {"cuda-ttt-scan", "CUDA TTT scan of training (fwd, fwd+bwd) tokens/s vs the CPU scan",
         bench_cuda_ttt_scan_entry},
        {"tokenizer",
         "tokenizer encode MB/s (GPT-2 vocab, 1 and all threads) vs the tokenizers package",
         bench_tokenizer},
        {"train", "CPU training tokens/s at D=256/L=8 and D=128/L=4, TTT scan share", bench_train},
        {"cuda-train", "GPU training tokens/s, MFU and peak memory (default, large, VRAM table)",
         bench_cuda_train},
        {"cuda-train-mem",
         "GPU training peak memory at the VRAM table, fp32 and bf16 AdamW moments, and where it "
         "goes",
         bench_cuda_train_mem},
    };
    return entries;
}

}  // namespace bitttt::cli
