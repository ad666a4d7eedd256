// Session::generate: prompt, then sample → feed back, token after token, with no allocation in
// the loop beyond the growing list of generated ids (reserved up front).
#include <algorithm>
#include <chrono>

#include "bitttt/model.hpp"
#include "bitttt/tokenizer.hpp"
#include "core/error.hpp"
#include "model/session_impl.hpp"

namespace bitttt {

GenerateResult Session::generate(std::span<const int32_t> prompt, const GenerateOptions& options,
                                 const TokenCallback& on_token) {
    using Clock = std::chrono::steady_clock;
    Impl& s = *impl_;
    check(options.max_new_tokens >= 0, ErrorKind::kInvalidArgument,
          "generate: max_new_tokens must be >= 0, got {}", options.max_new_tokens);
    s.sampler.set_options(options.sampling);
    GenerateResult result;
    // The repetition penalty looks at the prompt and the generated tokens together.
    std::vector<int32_t> history(prompt.begin(), prompt.end());
    // Up front, so the token loop does not allocate (capped: a huge limit is not a huge buffer).
    const size_t expected = static_cast<size_t>(std::min<int64_t>(options.max_new_tokens, 1 << 20));
    history.reserve(prompt.size() + expected);
    result.tokens.reserve(expected);

    auto start = Clock::now();
    std::span<const float> logits;
    if (!prompt.empty()) {
        logits = forward(prompt);
    } else {
        check(s.has_logits, ErrorKind::kInvalidArgument,
              "generate: empty prompt and no previous token to continue from");
        logits = {s.logits.data(), s.logits.size()};
    }
    auto after_prompt = Clock::now();
    result.prompt_seconds = std::chrono::duration<double>(after_prompt - start).count();

    result.stop = StopReason::kTokenLimit;
    for (int64_t i = 0; i < options.max_new_tokens; ++i) {
        const int32_t id = s.sampler.sample(logits, history);
        if (id == 0 && options.stop_at_end_of_text) {
            result.stop = StopReason::kEndOfText;
            break;
        }
        result.tokens.push_back(id);
        history.push_back(id);
        if (on_token && !on_token(id)) {
            result.stop = StopReason::kCallback;
            // The token is part of the text: read it so the state holds everything emitted.
            forward_token(id);
            break;
        }
        logits = forward_token(id);
    }
    result.generate_seconds = std::chrono::duration<double>(Clock::now() - after_prompt).count();
    return result;
}

GenerateResult Session::generate_text(std::string_view prompt, const GenerateOptions& options,
                                      const TextCallback& on_text) {
    const Tokenizer* tok = impl_->model->tokenizer();
    check(tok != nullptr, ErrorKind::kInvalidArgument,
          "generate_text: the model has no tokenizer (use generate with token ids)");
    std::vector<int32_t> ids;
    for (uint32_t id : tok->encode(prompt)) ids.push_back(static_cast<int32_t>(id));
    StreamingDecoder decoder = tok->streaming_decoder();
    bool stopped = false;
    GenerateResult result = generate(ids, options, [&](int32_t id) {
        const std::string piece = decoder.push(static_cast<uint32_t>(id));
        stopped = on_text && !on_text(piece);
        return !stopped;
    });
    const std::string rest = decoder.finish();
    if (!rest.empty() && on_text && !stopped) on_text(rest);
    return result;
}

}  // namespace bitttt
