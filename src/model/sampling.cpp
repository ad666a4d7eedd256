#include "model/sampling.hpp"

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>

#include "core/error.hpp"

namespace bitttt {
namespace {

// When top_k does not bound the candidates, nucleus sampling first tries this many of the most
// likely tokens (a partial sort) and sorts the whole vocabulary only if they hold less than top_p.
constexpr int64_t kNucleusFirstTry = 256;

}  // namespace

Sampler::Sampler(int64_t vocab_size)
    : vocab_size_(vocab_size),
      work_(static_cast<size_t>(vocab_size)),
      probs_(static_cast<size_t>(vocab_size)),
      index_(static_cast<size_t>(vocab_size)),
      seen_(static_cast<size_t>(vocab_size), 0) {
    check(vocab_size > 0 && vocab_size <= std::numeric_limits<int32_t>::max(),
          ErrorKind::kInvalidArgument, "sampler: vocabulary size {} is out of range", vocab_size);
    set_options(options_);
}

void Sampler::set_options(const SamplingOptions& o) {
    check(std::isfinite(o.temperature) && o.temperature >= 0.0f, ErrorKind::kInvalidArgument,
          "temperature must be finite and >= 0, got {}", o.temperature);
    check(o.top_k >= 0, ErrorKind::kInvalidArgument, "top-k must be >= 0, got {}", o.top_k);
    check(std::isfinite(o.top_p) && o.top_p > 0.0f && o.top_p <= 1.0f, ErrorKind::kInvalidArgument,
          "top-p must be in (0, 1], got {}", o.top_p);
    check(std::isfinite(o.repeat_penalty) && o.repeat_penalty > 0.0f, ErrorKind::kInvalidArgument,
          "repeat penalty must be finite and > 0, got {}", o.repeat_penalty);
    check(o.repeat_last_n >= 0, ErrorKind::kInvalidArgument, "repeat-last-n must be >= 0, got {}",
          o.repeat_last_n);
    options_ = o;
    rng_.reseed(o.seed);
}

void Sampler::sort_top(int64_t n) {
    const float* w = work_.data();
    auto before = [w](int32_t a, int32_t b) { return w[a] > w[b] || (w[a] == w[b] && a < b); };
    auto mid = index_.begin() + n;
    if (n < vocab_size_) std::nth_element(index_.begin(), mid, index_.end(), before);
    std::sort(index_.begin(), mid, before);
}

int32_t Sampler::sample(std::span<const float> logits, std::span<const int32_t> history) {
    check(static_cast<int64_t>(logits.size()) == vocab_size_, ErrorKind::kDimensionMismatch,
          "sampler: {} logits for a vocabulary of {}", logits.size(), vocab_size_);
    const float neg_inf = -std::numeric_limits<float>::infinity();
    for (int64_t i = 0; i < vocab_size_; ++i)
        work_[i] = std::isnan(logits[i]) ? neg_inf : logits[i];

    if (options_.repeat_penalty != 1.0f && options_.repeat_last_n > 0) {
        const size_t n = std::min(history.size(), static_cast<size_t>(options_.repeat_last_n));
        const auto recent = history.subspan(history.size() - n);
        for (int32_t id : recent) {
            if (id < 0 || id >= vocab_size_ || seen_[id]) continue;
            seen_[id] = 1;
            float& l = work_[id];
            l = l > 0.0f ? l / options_.repeat_penalty : l * options_.repeat_penalty;
        }
        for (int32_t id : recent)
            if (id >= 0 && id < vocab_size_) seen_[id] = 0;
    }

    if (options_.temperature == 0.0f) {
        // First maximum: std::max_element returns the lowest index among equals.
        return static_cast<int32_t>(std::max_element(work_.begin(), work_.end()) - work_.begin());
    }

    std::iota(index_.begin(), index_.end(), 0);
    const bool nucleus = options_.top_p < 1.0f;
    int64_t n = vocab_size_;  // candidates index_[0, n)
    bool sorted = false;
    if (options_.top_k > 0 && options_.top_k < vocab_size_) {
        n = options_.top_k;
        sort_top(n);
        sorted = true;
    } else if (nucleus) {
        n = std::min(vocab_size_, kNucleusFirstTry);
        sort_top(n);
        sorted = true;
    }
    const float max_logit =
        sorted ? work_[index_[0]] : *std::max_element(work_.begin(), work_.end());
    if (max_logit == neg_inf) return 0;  // nothing is possible: every logit was NaN or -inf
    const float inv_t = 1.0f / options_.temperature;
    auto weight = [&](int32_t id) {
        return static_cast<double>(std::exp((work_[id] - max_logit) * inv_t));
    };

    double total = 0.0;  // mass of the candidates (top-k), or of the whole vocabulary
    if (n == vocab_size_ || options_.top_k == 0) {
        for (int64_t i = 0; i < vocab_size_; ++i) total += weight(static_cast<int32_t>(i));
    } else {
        for (int64_t i = 0; i < n; ++i) total += weight(index_[i]);
    }

    int64_t kept = n;
    if (nucleus) {
        const double target = static_cast<double>(options_.top_p) * total;
        double cum = 0.0;
        kept = -1;
        for (int64_t i = 0; i < n; ++i) {
            cum += weight(index_[i]);
            if (cum >= target) {
                kept = i + 1;
                break;
            }
        }
        if (kept < 0) {  // the first try held too little mass: sort everything
            sort_top(vocab_size_);
            n = vocab_size_;
            cum = 0.0;
            kept = n;
            for (int64_t i = 0; i < n; ++i) {
                cum += weight(index_[i]);
                if (cum >= target) {
                    kept = i + 1;
                    break;
                }
            }
        }
    }

    double mass = 0.0;
    for (int64_t i = 0; i < kept; ++i) {
        probs_[i] = static_cast<float>(weight(index_[i]));
        mass += probs_[i];
    }
    const double r = rng_.uniform_double() * mass;
    double cum = 0.0;
    for (int64_t i = 0; i < kept; ++i) {
        cum += probs_[i];
        if (r < cum) return index_[i];
    }
    // Rounding left r at the very top: the last candidate with any probability.
    for (int64_t i = kept - 1; i > 0; --i)
        if (probs_[i] > 0.0f) return index_[i];
    return index_[0];
}

}  // namespace bitttt
