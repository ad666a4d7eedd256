// Session::generate as a pull iterator (Python's `for piece in session.generate(...)`): the loop
// of Session::generate (src/model/generate.cpp) — sample with the options' seeded sampler, stop at
// <|endoftext|> without emitting it, feed every emitted token back — run on the caller's thread
// until the next non-empty text piece. Nothing runs between pieces, so a consumer that stops early
// leaves the session holding exactly the tokens generated so far, and no thread hand-off costs
// scheduler latency per token. test_python_session.py checks that it produces the tokens
// Session::generate does.
#pragma once

#include <chrono>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "bitttt/model.hpp"
#include "bitttt/tokenizer.hpp"
#include "model/sampling.hpp"

namespace bitttt::python {

class GenerateSteps {
  public:
    // `session` must outlive this object. last_logits: the logits of the last token the session
    // read, used when the prompt is empty (empty span: there are none, which is then an error).
    GenerateSteps(Session& session, std::vector<int32_t> prompt, const GenerateOptions& options,
                  StreamingDecoder decoder, std::span<const float> last_logits);

    // The next non-empty text piece, or nullopt when generation has ended (including after an
    // error, which is thrown once). Call without the GIL.
    std::optional<std::string> next();
    // Ends generation early (stop reason "callback", as when a callback returns false).
    void close();
    // Set once generation has ended normally or by close().
    const std::optional<GenerateResult>& result() const { return result_; }

  private:
    using Clock = std::chrono::steady_clock;
    void finish(StopReason reason);

    Session& session_;
    std::vector<int32_t> history_;  // prompt + generated ids: the repetition penalty's window
    std::vector<int32_t> prompt_;
    GenerateOptions options_;
    StreamingDecoder decoder_;
    Sampler sampler_;
    std::span<const float> logits_;
    bool started_ = false;
    bool ended_ = false;
    GenerateResult partial_;
    std::optional<GenerateResult> result_;
    Clock::time_point generate_start_;
};

}  // namespace bitttt::python
