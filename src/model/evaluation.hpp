// Loss measurements of a model over token sequences (what `bitttt eval` prints; the default-model
// issue compares the TTT rules and the attention baseline with them):
//   - mean next-token loss of a token stream (token_loss);
//   - the memory effect: the loss on the second copy of a repeated random token sequence against
//     the first. Random tokens cannot be predicted from the language, only from memory, so a
//     model whose TTT state remembers what it read has copy 2 loss below copy 1 (ratio < 1); a
//     model without memory (inner_lr 0: W stays 0, each prediction sees only its own token) has
//     exactly ratio 1;
//   - position loss: the loss at far positions of long inputs (default 1024-2048) against near
//     positions (0-128), over windows cut from a token stream (documents of a text, one after
//     another). Models trained on 128-token contexts show here whether their memory degrades
//     past the training context.
//
// Positions: "position p" is the prediction made after reading tokens 0..p of a sequence (the
// logits at p), scored against token p + 1. Each sequence or window starts from a reset session.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <span>

#include "bitttt/model.hpp"
#include "bitttt/tokenizer.hpp"

namespace bitttt {

// −log softmax(logits)[target] in nats, computed in double: log Σ exp(l − max) − (l_target − max).
double token_loss(const float* logits, int64_t vocab, int32_t target);

// Called after each sequence or window with (done, total).
using EvalProgress = std::function<void(int64_t done, int64_t total)>;

// Losses summed over a set of scored tokens.
struct LossSum {
    double nats = 0;     // Σ token_loss
    int64_t tokens = 0;  // scored tokens
    int64_t bytes = 0;   // bytes of their text (when a tokenizer was given; else 0)
    double mean() const { return tokens > 0 ? nats / static_cast<double>(tokens) : 0.0; }
    void add(const LossSum& o) {
        nats += o.nats;
        tokens += o.tokens;
        bytes += o.bytes;
    }
    // Σ nats / ln 2 / bytes; 0 when bytes are unknown.
    double bits_per_byte() const;
};

struct MemoryEffectOptions {
    int64_t length = 64;     // tokens per copy (>= 2); a sequence is 2 · length tokens
    int64_t sequences = 32;  // random sequences, each in a fresh session
    uint64_t seed = 1;       // of the random tokens (uniform over 1 .. vocab−1: no <|endoftext|>)
    int64_t chunk = 256;     // tokens per batched forward
};

// Copy 1: positions 0 .. length−2 (predicting tokens 1 .. length−1 of the sequence); copy 2:
// positions length .. 2·length−2 (the same tokens, second time). The first token of each copy is
// left out: nothing before it predicts it (the second copy's first token follows the first
// copy's last, a pair never seen).
struct MemoryEffect {
    LossSum copy1, copy2;
    double ratio() const { return copy1.mean() > 0 ? copy2.mean() / copy1.mean() : 0.0; }
};

// Throws Error (kInvalidArgument) for length outside [2, 2^24], sequences < 1, chunk outside
// [1, 4096] or a vocabulary of fewer than 2 tokens.
MemoryEffect measure_memory_effect(const std::shared_ptr<const Model>& model,
                                   const MemoryEffectOptions& options,
                                   const EvalProgress& progress = {});

// Positions [begin, end).
struct PositionRange {
    int64_t begin = 0;
    int64_t end = 0;
};

struct PositionLossOptions {
    PositionRange near{0, 128};
    PositionRange far{1024, 2048};
    int64_t windows = 0;  // 0: as many as the tokens fill
    int64_t chunk = 256;  // tokens per batched forward
};

struct PositionLoss {
    LossSum near, far;
    int64_t windows = 0;        // windows scored
    int64_t window_tokens = 0;  // tokens per window: max(near.end, far.end) + 1
};

// Cuts `ids` into consecutive windows of window_tokens tokens and scores both ranges in each
// (a fresh session per window). With a tokenizer, bytes are counted as the decoded text of each
// range's target tokens (special tokens as their text, e.g. "<|endoftext|>").
// Throws Error (kInvalidArgument) for an empty or negative range (or one past 2^40), windows < 0,
// chunk outside [1, 4096], or
// ids too short for one window (or for the windows asked for); ids out of the vocabulary are an
// error as in Session::forward.
PositionLoss measure_position_loss(const std::shared_ptr<const Model>& model,
                                   std::span<const int32_t> ids, const PositionLossOptions& options,
                                   const Tokenizer* tokenizer = nullptr,
                                   const EvalProgress& progress = {});

}  // namespace bitttt
