#include "generate_steps.hpp"

#include <utility>

#include "core/error.hpp"
#include "model/config.hpp"

namespace bitttt::python {

GenerateSteps::GenerateSteps(Session& session, std::vector<int32_t> prompt,
                             const GenerateOptions& options, StreamingDecoder decoder,
                             std::span<const float> last_logits)
    : session_(session),
      prompt_(std::move(prompt)),
      options_(options),
      decoder_(std::move(decoder)),
      sampler_(session.model().config().vocab_size),
      logits_(last_logits) {
    check(options.max_new_tokens >= 0, ErrorKind::kInvalidArgument,
          "generate: max_new_tokens must be >= 0, got {}", options.max_new_tokens);
    sampler_.set_options(options.sampling);
    history_ = prompt_;
    history_.reserve(prompt_.size() + static_cast<size_t>(options.max_new_tokens));
}

void GenerateSteps::finish(StopReason reason) {
    ended_ = true;
    partial_.stop = reason;
    if (started_)
        partial_.generate_seconds =
            std::chrono::duration<double>(Clock::now() - generate_start_).count();
    result_ = std::move(partial_);
}

std::optional<std::string> GenerateSteps::next() {
    if (ended_) return std::nullopt;
    try {
        if (!started_) {
            const auto start = Clock::now();
            if (!prompt_.empty()) {
                logits_ = session_.forward(prompt_);
            } else {
                check(!logits_.empty(), ErrorKind::kInvalidArgument,
                      "generate: empty prompt and no previous token to continue from");
            }
            started_ = true;
            generate_start_ = Clock::now();
            partial_.prompt_seconds =
                std::chrono::duration<double>(generate_start_ - start).count();
        }
        while (static_cast<int64_t>(partial_.tokens.size()) < options_.max_new_tokens) {
            const int32_t id = sampler_.sample(logits_, history_);
            if (id == 0 && options_.stop_at_end_of_text) {
                finish(StopReason::kEndOfText);
                break;
            }
            partial_.tokens.push_back(id);
            history_.push_back(id);
            logits_ = session_.forward_token(id);
            std::string piece = decoder_.push(static_cast<uint32_t>(id));
            if (!piece.empty()) return piece;
        }
        if (!ended_) finish(StopReason::kTokenLimit);
        std::string tail = decoder_.finish();
        if (!tail.empty()) return tail;
        return std::nullopt;
    } catch (...) {
        ended_ = true;
        throw;
    }
}

void GenerateSteps::close() {
    if (!ended_) finish(StopReason::kCallback);
}

}  // namespace bitttt::python
