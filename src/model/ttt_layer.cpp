#include "model/ttt_layer.hpp"

#include <omp.h>

#include <chrono>
#include <cmath>
#include <cstring>
#include <vector>

#include "core/error.hpp"
#include "core/rng.hpp"
#include "kernels/cpu/ttt_scan.hpp"

namespace bitttt {
namespace {

// Draws a [rows, cols] weight from rng (normal / sqrt(cols)), quantizes it to ternary and packs it.
kernels::TernaryWeights make_ternary(Rng& rng, int64_t rows, int64_t cols,
                                     AlignedBuffer<uint8_t>& codes) {
    const int64_t n = rows * cols;
    std::vector<float> w(static_cast<size_t>(n));
    const float scale = 1.0f / std::sqrt(static_cast<float>(cols));
    for (auto& x : w) x = rng.normal() * scale;
    const float beta = kernels::ternary_scale(w.data(), n);
    std::vector<int8_t> q(static_cast<size_t>(n));
    kernels::quantize_ternary(w.data(), n, beta, q.data());
    codes.resize(static_cast<size_t>(kernels::packed_bytes(rows, cols)));
    kernels::pack_ternary(q.data(), rows, cols, codes.data());
    return {codes.data(), rows, cols, beta};
}

bool all_finite(const float* x, int64_t n) {
    // A float is NaN or ±Inf exactly when its exponent bits are all ones. Integer OR-reductions
    // vectorize (a float sum would be a serial chain of adds: reordering it changes rounding).
    uint32_t bad = 0;
#pragma omp simd reduction(| : bad)
    for (int64_t i = 0; i < n; ++i) {
        uint32_t bits;
        std::memcpy(&bits, x + i, sizeof bits);
        bad |= static_cast<uint32_t>((bits & 0x7F800000u) == 0x7F800000u);
    }
    return bad == 0;
}

// OpenMP's fork/join costs microseconds on an idle machine and up to a scheduler time slice
// (milliseconds) on a busy one, while a projection of a few million multiply-adds takes tens of
// microseconds on one core: chunks below this much work per projection run on the calling thread.
constexpr int64_t kMinParallelMacs = int64_t{1} << 24;

// Limits the OpenMP regions started by this thread to one thread while in scope (the thread
// count is a per-thread setting, so other callers are not affected).
class SingleThreadScope {
  public:
    explicit SingleThreadScope(bool active) : active_(active), saved_(omp_get_max_threads()) {
        if (active_) omp_set_num_threads(1);
    }
    ~SingleThreadScope() {
        if (active_) omp_set_num_threads(saved_);
    }
    SingleThreadScope(const SingleThreadScope&) = delete;
    SingleThreadScope& operator=(const SingleThreadScope&) = delete;

  private:
    bool active_;
    int saved_;
};

double seconds_since(std::chrono::steady_clock::time_point& start) {
    auto now = std::chrono::steady_clock::now();
    double s = std::chrono::duration<double>(now - start).count();
    start = now;
    return s;
}

}  // namespace

TttLayer::TttLayer(int64_t hidden_dim, float inner_lr)
    : hidden_dim_(hidden_dim), ttt_dim_(hidden_dim / 4), inner_lr_(inner_lr) {
    check(hidden_dim > 0 && hidden_dim <= kMaxHiddenDim && hidden_dim % 4 == 0,
          ErrorKind::kInvalidArgument,
          "TTT layer hidden_dim {} must be a positive multiple of 4 and at most {}", hidden_dim,
          kMaxHiddenDim);
    check(std::isfinite(inner_lr) && inner_lr >= 0.0f && inner_lr <= kMaxInnerLr,
          ErrorKind::kInvalidArgument, "TTT layer inner_lr {} must be finite and in [0, {}]",
          inner_lr, kMaxInnerLr);
    Rng rng(kWeightSeed);
    down_ = make_ternary(rng, ttt_dim_, hidden_dim_, down_codes_);
    up_ = make_ternary(rng, hidden_dim_, ttt_dim_, up_codes_);
    state_.resize(static_cast<size_t>(ttt_dim_ * ttt_dim_));
    feature_stride_ = kernels::round_up(ttt_dim_, 16);
}

void TttLayer::reserve_tokens(int64_t tokens) {
    if (tokens <= capacity_) return;
    const auto n = static_cast<size_t>(tokens);
    xq_.resize(n * static_cast<size_t>(kernels::packed_cols(hidden_dim_)));
    zq_.resize(n * static_cast<size_t>(kernels::packed_cols(ttt_dim_)));
    x_scale_.resize(n);
    z_scale_.resize(n);
    features_.resize(n * static_cast<size_t>(feature_stride_));
    z_.resize(n * static_cast<size_t>(feature_stride_));
    capacity_ = tokens;
}

void TttLayer::forward(const float* input, int64_t seq_len, float* output, float* recon_error) {
    check(seq_len >= 0 && seq_len <= INT64_MAX / hidden_dim_, ErrorKind::kDimensionMismatch,
          "TTT layer seq_len {} is negative or too large", seq_len);
    if (seq_len == 0) return;
    check(input != nullptr && output != nullptr, ErrorKind::kInvalidArgument,
          "TTT layer forward: null input or output");
    // Checked up front so a bad token late in the sequence leaves the state untouched.
    check(all_finite(input, seq_len * hidden_dim_), ErrorKind::kInvalidArgument,
          "TTT layer input holds NaN or Inf");
    reserve_tokens(std::min(seq_len, kMaxChunkTokens));
    for (int64_t t = 0; t < seq_len; t += kMaxChunkTokens) {
        const int64_t n = std::min(kMaxChunkTokens, seq_len - t);
        forward_chunk(input + t * hidden_dim_, n, output + t * hidden_dim_,
                      recon_error ? recon_error + t : nullptr);
    }
}

void TttLayer::forward_chunk(const float* input, int64_t tokens, float* output,
                             float* recon_error) {
    using kernels::packed_cols;
    SingleThreadScope serial(tokens * hidden_dim_ * ttt_dim_ < kMinParallelMacs);
    auto start = std::chrono::steady_clock::now();
    // f = down(x): per-token int8 activations, ternary × int8 product.
    const int64_t xq_stride = packed_cols(hidden_dim_);
    kernels::quantize_activations(input, tokens, hidden_dim_, hidden_dim_, xq_.data(), xq_stride,
                                  x_scale_.data());
    kernels::ternary_matmul(down_, xq_.data(), xq_stride, x_scale_.data(), tokens, features_.data(),
                            feature_stride_);
    if (timings_) timings_->down_s += seconds_since(start);

    kernels::ttt_scan_reconstruct(state_.data(), ttt_dim_, inner_lr_, features_.data(),
                                  feature_stride_, tokens, z_.data(), feature_stride_);
    if (timings_) timings_->scan_s += seconds_since(start);

    // y = up(z).
    const int64_t zq_stride = packed_cols(ttt_dim_);
    kernels::quantize_activations(z_.data(), tokens, ttt_dim_, feature_stride_, zq_.data(),
                                  zq_stride, z_scale_.data());
    kernels::ternary_matmul(up_, zq_.data(), zq_stride, z_scale_.data(), tokens, output,
                            hidden_dim_);
    if (timings_) timings_->up_s += seconds_since(start);

    if (recon_error) {
        for (int64_t t = 0; t < tokens; ++t) {
            const float* f = features_.data() + t * feature_stride_;
            const float* z = z_.data() + t * feature_stride_;
            double sum_sq = 0.0;
            for (int64_t i = 0; i < ttt_dim_; ++i) sum_sq += double(f[i]) * f[i];
            const double inv_norm = 1.0 / (std::sqrt(sum_sq) + kernels::kTttNormEps);
            double err = 0.0;
            for (int64_t i = 0; i < ttt_dim_; ++i) {
                const double d = z[i] - f[i] * inv_norm;
                err += d * d;
            }
            recon_error[t] = static_cast<float>(std::sqrt(err));
        }
    }
}

void TttLayer::reset() {
    state_.fill_zero();
}

void TttLayer::get_state(float* w) const {
    const int64_t dt = ttt_dim_;
    for (int64_t i = 0; i < dt; ++i)
        for (int64_t j = 0; j < dt; ++j) w[i * dt + j] = state_[static_cast<size_t>(j * dt + i)];
}

void TttLayer::set_state(const float* w) {
    const int64_t dt = ttt_dim_;
    check(all_finite(w, dt * dt), ErrorKind::kInvalidArgument, "TTT state holds NaN or Inf");
    for (int64_t i = 0; i < dt; ++i)
        for (int64_t j = 0; j < dt; ++j) state_[static_cast<size_t>(j * dt + i)] = w[i * dt + j];
}

}  // namespace bitttt
