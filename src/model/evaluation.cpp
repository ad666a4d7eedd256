// Loss measurements (math and definitions: evaluation.hpp).
#include "model/evaluation.hpp"

#include <algorithm>
#include <cmath>
#include <numbers>
#include <vector>

#include "core/error.hpp"
#include "core/rng.hpp"
#include "model/config.hpp"

namespace bitttt {
namespace {

// Feeds ids[0 .. last) through a reset session, `chunk` tokens at a time, where `last` is the
// largest range end, and adds the loss at every position of ranges[r] to sums[r] (ranges must
// end at or before ids.size() − 1, so every scored position has its target). Only chunks that
// hold a scored position ask for the logits of all their tokens (lm_head for each); the others
// compute just the last token's.
void score_ranges(Session& session, std::span<const int32_t> ids,
                  std::span<const PositionRange> ranges, std::span<LossSum> sums, int64_t chunk,
                  std::vector<float>& logits) {
    const int64_t V = session.model().config().vocab_size;
    int64_t last = 0;
    for (const PositionRange& r : ranges) last = std::max(last, r.end);
    session.reset();
    for (int64_t pos = 0; pos < last; pos += chunk) {
        const int64_t len = std::min(chunk, last - pos);
        bool scored = false;
        for (const PositionRange& r : ranges) scored |= r.begin < pos + len && pos < r.end;
        const std::span<const int32_t> in =
            ids.subspan(static_cast<size_t>(pos), static_cast<size_t>(len));
        if (!scored) {
            session.forward(in);
            continue;
        }
        session.forward(in, std::span<float>(logits.data(), static_cast<size_t>(len * V)));
        for (size_t r = 0; r < ranges.size(); ++r) {
            const int64_t from = std::max(pos, ranges[r].begin);
            const int64_t to = std::min(pos + len, ranges[r].end);
            for (int64_t p = from; p < to; ++p) {
                sums[r].nats +=
                    token_loss(logits.data() + (p - pos) * V, V, ids[static_cast<size_t>(p + 1)]);
                ++sums[r].tokens;
            }
        }
    }
}

// Bytes of the text of the targets of positions [r.begin, r.end): tokens r.begin+1 .. r.end.
int64_t range_bytes(const Tokenizer& tokenizer, std::span<const int32_t> ids, PositionRange r) {
    std::vector<uint32_t> targets(ids.begin() + r.begin + 1, ids.begin() + r.end + 1);
    return static_cast<int64_t>(tokenizer.decode(targets).size());
}

void check_range(const PositionRange& r, const char* name) {
    check(r.begin >= 0 && r.end > r.begin && r.end <= (int64_t{1} << 40),
          ErrorKind::kInvalidArgument,
          "position loss: the {} range {}:{} is empty or out of range (need 0 <= begin < end <= "
          "2^40)",
          name, r.begin, r.end);
}

}  // namespace

double token_loss(const float* logits, int64_t vocab, int32_t target) {
    float max_f = logits[0];
    for (int64_t i = 1; i < vocab; ++i) max_f = std::max(max_f, logits[i]);
    const double max = max_f;  // differences in double: float subtraction would round them
    double sum = 0;
    for (int64_t i = 0; i < vocab; ++i) sum += std::exp(static_cast<double>(logits[i]) - max);
    return std::log(sum) - (static_cast<double>(logits[target]) - max);
}

double LossSum::bits_per_byte() const {
    return bytes > 0 ? nats / std::numbers::ln2 / static_cast<double>(bytes) : 0.0;
}

MemoryEffect measure_memory_effect(const std::shared_ptr<const Model>& model,
                                   const MemoryEffectOptions& options,
                                   const EvalProgress& progress) {
    check(model != nullptr, ErrorKind::kInvalidArgument, "memory effect: null model");
    const int64_t V = model->config().vocab_size, N = options.length;
    check(N >= 2 && N <= (int64_t{1} << 24), ErrorKind::kInvalidArgument,
          "memory effect: sequence length {} is not in [2, 2^24]", N);
    check(options.sequences >= 1, ErrorKind::kInvalidArgument,
          "memory effect: {} sequences (need at least 1)", options.sequences);
    check(options.chunk >= 1 && options.chunk <= 4096, ErrorKind::kInvalidArgument,
          "memory effect: chunk {} is not in [1, 4096]", options.chunk);
    check(V >= 2, ErrorKind::kInvalidArgument,
          "memory effect: a vocabulary of {} token(s) has no random tokens besides id 0", V);

    Session session(model, options.chunk);
    std::vector<float> logits(static_cast<size_t>(options.chunk * V));
    std::vector<int32_t> ids(static_cast<size_t>(2 * N));
    const PositionRange ranges[2] = {{0, N - 1}, {N, 2 * N - 1}};
    MemoryEffect out;
    Rng rng(options.seed);
    for (int64_t s = 0; s < options.sequences; ++s) {
        for (int64_t i = 0; i < N; ++i) {
            const auto id = static_cast<int32_t>(1 + rng.below(static_cast<uint64_t>(V - 1)));
            ids[static_cast<size_t>(i)] = ids[static_cast<size_t>(N + i)] = id;
        }
        LossSum sums[2];
        score_ranges(session, ids, ranges, sums, options.chunk, logits);
        out.copy1.add(sums[0]);
        out.copy2.add(sums[1]);
        if (progress) progress(s + 1, options.sequences);
    }
    return out;
}

PositionLoss measure_position_loss(const std::shared_ptr<const Model>& model,
                                   std::span<const int32_t> ids, const PositionLossOptions& options,
                                   const Tokenizer* tokenizer, const EvalProgress& progress) {
    check(model != nullptr, ErrorKind::kInvalidArgument, "position loss: null model");
    check_range(options.near, "near");
    check_range(options.far, "far");
    check(options.windows >= 0, ErrorKind::kInvalidArgument,
          "position loss: {} windows (need >= 0; 0: all that fit)", options.windows);
    check(options.chunk >= 1 && options.chunk <= 4096, ErrorKind::kInvalidArgument,
          "position loss: chunk {} is not in [1, 4096]", options.chunk);
    PositionLoss out;
    out.window_tokens = std::max(options.near.end, options.far.end) + 1;
    const int64_t n = static_cast<int64_t>(ids.size());
    const int64_t fit = n / out.window_tokens;
    check(fit >= 1, ErrorKind::kInvalidArgument,
          "position loss: {} tokens are fewer than one window needs ({}: positions up to {} and "
          "their targets)",
          n, out.window_tokens, out.window_tokens - 2);
    check(options.windows <= fit, ErrorKind::kInvalidArgument,
          "position loss: {} windows of {} tokens asked, the {} tokens fill only {}",
          options.windows, out.window_tokens, n, fit);
    out.windows = options.windows > 0 ? options.windows : fit;

    const int64_t V = model->config().vocab_size;
    Session session(model, options.chunk);
    std::vector<float> logits(static_cast<size_t>(options.chunk * V));
    const PositionRange ranges[2] = {options.near, options.far};
    for (int64_t w = 0; w < out.windows; ++w) {
        const std::span<const int32_t> window = ids.subspan(
            static_cast<size_t>(w * out.window_tokens), static_cast<size_t>(out.window_tokens));
        LossSum sums[2];
        score_ranges(session, window, ranges, sums, options.chunk, logits);
        if (tokenizer) {
            sums[0].bytes = range_bytes(*tokenizer, window, options.near);
            sums[1].bytes = range_bytes(*tokenizer, window, options.far);
        }
        out.near.add(sums[0]);
        out.far.add(sums[1]);
        if (progress) progress(w + 1, out.windows);
    }
    return out;
}

}  // namespace bitttt
