// What a Session holds (internal; llama2.c's RunState): the TTT state of every layer and the
// scratch activations of one chunk of tokens, all allocated once at construction.
#pragma once

#include <cstdint>
#include <memory>

#include "bitttt/model.hpp"
#include "core/aligned_buffer.hpp"
#include "core/team.hpp"
#include "kernels/cpu/ternary.hpp"
#include "model/config.hpp"
#include "model/delta_rule.hpp"
#include "model/gpu_model.hpp"
#include "model/sampling.hpp"
#include "model/weights.hpp"

namespace bitttt {

struct Session::Impl {
    std::shared_ptr<const Model> model;
    const ModelConfig& config;
    const ModelWeights& weights;
    int64_t max_chunk;  // C: tokens per forward chunk
    int64_t position = 0;
    bool has_logits = false;  // `logits` holds the logits of the last token read

    // TTT state: num_layers x heads x Dh x Dh, W row-major per head (delta_rule.hpp).
    AlignedBuffer<float> states;
    int64_t state_floats_per_layer;
    int64_t layer_bytes;  // packed BitLinear bytes of one layer (decides serial vs parallel)

    // Chunk scratch (rows of C tokens).
    AlignedBuffer<float> x;        // [C, D] residual stream
    AlignedBuffer<float> u;        // [C, D] normalized input of a sublayer
    AlignedBuffer<float> proj;     // [C, D] output of a sublayer's last projection
    AlignedBuffer<float> ttt_in;   // [C, 3 Dt]: f (reconstruct) or q | k | v (delta)
    AlignedBuffer<float> ttt_out;  // [C, Dt]: z or o
    AlignedBuffer<float> eta;      // [C, heads] step sizes of the delta rule
    AlignedBuffer<float> ones;     // [Dt] the weight of the delta rule's weightless RMSNorm
    AlignedBuffer<float> gate;     // [C, M]
    AlignedBuffer<float> up;       // [C, M]
    AlignedBuffer<int8_t> xq;      // [C, xq_stride] quantized BitLinear input
    int64_t xq_stride;
    AlignedBuffer<float> act_scale;  // [C]
    AlignedBuffer<float> logits;     // [V] of the last token

    SpinBarrier barrier;  // of the forward's thread team (core/team.hpp)

    Sampler sampler;

    // Hybrid/GPU inference (model placed with Device::kCuda): blocks [0, gpu_layers) run in `gpu`,
    // the rest here. The states of the GPU blocks live on the device; `states` holds a host copy
    // that is brought up to date on demand (state(), save_state) and sent back before the next
    // forward when the host changed it (mutable_state(), load_state()).
    std::unique_ptr<GpuSession> gpu;
    int64_t gpu_layers = 0;
    bool host_states_stale = false;    // the device ran tokens since the last download
    bool device_states_stale = false;  // the host copy was changed since the last upload
    void download_states();            // if host_states_stale
    void upload_states();              // if device_states_stale

    Impl(std::shared_ptr<const Model> m, int64_t chunk);

    // Runs tokens [0, n) of ids (n <= max_chunk) through every layer, then writes the logits
    // of the last token to `logits`, and of every token to all_logits when it is not null.
    void forward_chunk(const int32_t* ids, int64_t n, float* all_logits);
    // The CPU part of forward_chunk, in one thread team: the embeddings of ids (none: x already
    // holds the residual stream), blocks [first, L), then the logits.
    void forward_cpu(const int32_t* ids, int64_t first, int64_t n, float* all_logits);
    // Each step below does the calling thread's share of its rows (Team::share); the caller
    // syncs the team before a step reads what others wrote.
    void forward_layers(const Team& t, int64_t first, int64_t n);
    void forward_head(const Team& t, int64_t n, float* all_logits);

    // BitLinear (DESIGN.md §2.1) in two steps so several projections share one quantization:
    // prepare_input quantizes m rows of k features into xq (act_bits = 8; with act_bits = 0 the
    // floats are used as they are), project computes y = BitLinear_w(input) for those rows.
    struct BitInput {
        const float* x;  // the unquantized rows (act_bits = 0)
        int64_t stride;
    };
    BitInput prepare_input(const Team& t, const float* in, int64_t m, int64_t k, int64_t stride);
    void project(const Team& t, const kernels::TernaryWeights& w, BitInput in, int64_t m, float* y,
                 int64_t y_stride);
    void add_residual(const Team& t, int64_t n);  // x += proj, project's rows of D outputs
    void scan(const Team& t, DeltaRuleScan& s);   // the delta-rule scan over the team's rows

    void ttt_reconstruct(const Team& t, const LayerWeights& lw, float* state, int64_t n,
                         BitInput in);
    void ttt_delta(const Team& t, const LayerWeights& lw, float* state, int64_t n, BitInput in);
};

// Whether CPU forwards run in one thread team (default; BITTTT_CPU_TEAM=0 starts with it off) or
// with one OpenMP region per kernel. Process-wide; tests compare the two.
void set_cpu_team(bool on);
bool cpu_team();
// Layers whose packed weights times the chunk's tokens stay below this many bytes run on one
// thread (default 1 MiB, forward.cpp; negative: the default); returns the previous value. Tests
// set 0 to split even tiny layers over the team.
int64_t set_serial_layer_bytes(int64_t bytes);

}  // namespace bitttt
