// What a Session holds (internal; llama2.c's RunState): the TTT state of every layer and the
// scratch activations of one chunk of tokens, all allocated once at construction.
#pragma once

#include <cstdint>
#include <memory>

#include "bitttt/model.hpp"
#include "core/aligned_buffer.hpp"
#include "kernels/cpu/ternary.hpp"
#include "model/config.hpp"
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

    // The BitLinear input prepared by prepare_input (quantized when act_bits = 8).
    const float* in_x = nullptr;
    int64_t in_stride = 0;

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
    // The CPU part of forward_chunk: blocks [first, L) over the residual stream in x, then the
    // logits.
    void forward_layers(int64_t first, int64_t n);
    void forward_head(int64_t n, float* all_logits);

    // BitLinear (DESIGN.md §2.1) in two steps so several projections share one quantization:
    // prepare_input quantizes m rows of k features (act_bits = 8) or just remembers them (0),
    // project computes y = BitLinear_w(input) for those rows.
    void prepare_input(const float* in, int64_t m, int64_t k, int64_t stride);
    void project(const kernels::TernaryWeights& w, int64_t m, float* y, int64_t y_stride);

    void ttt_reconstruct(const LayerWeights& lw, float* state, int64_t n);
    void ttt_delta(const LayerWeights& lw, float* state, int64_t n);
};

}  // namespace bitttt
