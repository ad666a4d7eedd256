// Choosing the next token from logits: repetition penalty, then greedy or temperature sampling
// restricted by top-k and top-p (nucleus), from a seeded bitttt::Rng so runs reproduce.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "bitttt/model.hpp"
#include "core/rng.hpp"

namespace bitttt {

class Sampler {
  public:
    // Buffers for vocab_size tokens are allocated here, once: sample() allocates nothing.
    explicit Sampler(int64_t vocab_size);

    // Sets the options and reseeds the generator with options.seed. Throws Error on bad values
    // (negative or non-finite temperature, top_p outside (0, 1], repeat_penalty <= 0, ...).
    void set_options(const SamplingOptions& options);
    const SamplingOptions& options() const { return options_; }

    // The next token for `logits` (vocab_size floats). history: the tokens so far (prompt and
    // generated); its last repeat_last_n distinct ids get the penalty (CTRL, Keskar et al. 2019):
    // a logit l becomes l / penalty if l > 0, else l * penalty. Then, with temperature T:
    //   T == 0: the arg max (lowest id on ties);
    //   else:   p_i ∝ exp((l_i − max l) / T) over the top_k most likely tokens, cut to the smallest
    //           prefix (by decreasing p) holding top_p of their mass, and one token is drawn.
    // NaN logits count as −inf.
    int32_t sample(std::span<const float> logits, std::span<const int32_t> history);

  private:
    // Sorts index_[0, n) by decreasing work_ (ids ascending on ties), the n largest first.
    void sort_top(int64_t n);

    int64_t vocab_size_;
    SamplingOptions options_;
    Rng rng_;
    std::vector<float> work_;     // penalized logits
    std::vector<float> probs_;    // unnormalized probabilities of the candidates, in order
    std::vector<int32_t> index_;  // candidate ids
    std::vector<uint8_t> seen_;   // marks ids already penalized in this call
};

}  // namespace bitttt
