// A standalone `reconstruct` TTT layer (DESIGN.md §2.2, §4): what the C ABI's ttt_create makes.
//
//     f = down(x)      BitLinear D → Dt (Dt = D/4), int8 activations (act_bits = 8)
//     z = scan(f)      the TTT recurrence; its state W (Dt×Dt, fp32) persists across calls
//     y = up(z)        BitLinear Dt → D, int8 activations
//
// The projections run batched over the sequence (one ternary matrix product each); the scan runs
// token by token in cache. Sequences are processed in chunks of kMaxChunkTokens tokens so the
// scratch stays bounded whatever the sequence length.
//
// Weights are reproducible: a bitttt::Rng seeded with kWeightSeed (0x5EED) draws, in this order,
// down.weight [Dt, D] row-major then up.weight [D, Dt] row-major (PyTorch's [out, in]), each
// element rng.normal() / sqrt(fan_in) (fan_in = D for down, Dt for up). Each tensor is then
// quantized once to ternary (absmean scale, §2.1) and packed; the float weights are dropped.
#pragma once

#include <cstdint>

#include "core/aligned_buffer.hpp"
#include "kernels/cpu/ternary.hpp"

namespace bitttt {

class TttLayer {
  public:
    static constexpr uint64_t kWeightSeed = 0x5EED;
    static constexpr int64_t kMaxHiddenDim = 16384;   // Dt ≤ 4096: state ≤ 64 MiB
    static constexpr int64_t kMaxChunkTokens = 1024;  // tokens per batched projection
    static constexpr float kMaxInnerLr = 2.0f;  // stability bound, see kernels/cpu/ttt_scan.hpp

    // Where the time of forward() goes (seconds, accumulated over calls).
    struct Timings {
        double down_s = 0.0;  // activation quantization + down projection
        double scan_s = 0.0;  // the TTT recurrence
        double up_s = 0.0;    // activation quantization + up projection
    };

    // Throws Error (kInvalidArgument) unless 0 < hidden_dim ≤ kMaxHiddenDim, hidden_dim % 4 == 0
    // and inner_lr is finite with 0 ≤ inner_lr ≤ kMaxInnerLr. W starts at 0.
    TttLayer(int64_t hidden_dim, float inner_lr);

    int64_t hidden_dim() const { return hidden_dim_; }
    int64_t ttt_dim() const { return ttt_dim_; }
    float inner_lr() const { return inner_lr_; }

    // input, output: seq_len × hidden_dim floats, row-major; output may equal input (in place),
    // any other overlap is not allowed. Non-finite input throws Error (kInvalidArgument) before
    // anything is touched: state and output unchanged. seq_len 0 does nothing.
    // recon_error (optional, seq_len floats) receives ‖z_t − f̂_t‖ per token: how well W
    // reconstructed the token's normalized features before learning them.
    void forward(const float* input, int64_t seq_len, float* output, float* recon_error = nullptr);

    // W back to 0.
    void reset();

    // The state W as ttt_dim × ttt_dim floats, row-major (z = W f̂). set_state throws Error
    // (kInvalidArgument) on a non-finite value and leaves the state unchanged.
    int64_t state_size() const { return ttt_dim_ * ttt_dim_; }
    void get_state(float* w) const;
    void set_state(const float* w);

    // Accumulate forward()'s time split into *timings (nullptr: stop).
    void set_timings(Timings* timings) { timings_ = timings; }

    const kernels::TernaryWeights& down() const { return down_; }
    const kernels::TernaryWeights& up() const { return up_; }

  private:
    void reserve_tokens(int64_t tokens);
    void forward_chunk(const float* input, int64_t tokens, float* output, float* recon_error);

    int64_t hidden_dim_;
    int64_t ttt_dim_;
    float inner_lr_;
    AlignedBuffer<uint8_t> down_codes_, up_codes_;
    kernels::TernaryWeights down_, up_;
    AlignedBuffer<float> state_;  // S = Wᵀ, the layout of the scan kernels

    // Scratch for up to capacity_ tokens (grown only when a longer chunk comes).
    int64_t capacity_ = 0;
    int64_t feature_stride_;  // Dt rounded up to 16 floats (64-byte rows)
    AlignedBuffer<int8_t> xq_, zq_;
    AlignedBuffer<float> x_scale_, z_scale_, features_, z_;
    Timings* timings_ = nullptr;
};

}  // namespace bitttt
