// Session::generate as a pull iterator of text pieces (Python's `for piece in
// session.generate(...)`), without copying its logic: generate runs on a worker thread whose
// token callback hands each non-empty text piece over and then waits until the next piece is
// asked for. So tokens are produced only on demand, and when the consumer stops early (close()),
// the callback returns false and the session's state holds exactly the tokens sampled so far,
// as with a callback that stops. The worker never touches Python; next() blocks and is called
// without the GIL.
#pragma once

#include <condition_variable>
#include <cstdint>
#include <exception>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "bitttt/model.hpp"
#include "bitttt/tokenizer.hpp"

namespace bitttt::python {

class GenerateStream {
  public:
    // `session` must outlive the stream (the Python binding keeps it alive).
    GenerateStream(Session& session, std::vector<int32_t> prompt, GenerateOptions options,
                   StreamingDecoder decoder);
    ~GenerateStream();  // close()
    GenerateStream(const GenerateStream&) = delete;
    GenerateStream& operator=(const GenerateStream&) = delete;

    // The next text piece, or nullopt at the end. Starts generation on the first call; rethrows
    // (once) an error the generation raised.
    std::optional<std::string> next();
    // Stops generation (the token being handed over is the last one read) and waits for the
    // worker. Idempotent.
    void close();
    // Set once generation has ended (nullopt before).
    const std::optional<GenerateResult>& result() const { return result_; }

  private:
    void run();                        // the worker
    bool hand_over(std::string text);  // the token callback's wait

    Session& session_;
    std::vector<int32_t> prompt_;
    GenerateOptions options_;
    StreamingDecoder decoder_;
    std::thread worker_;

    std::mutex mutex_;
    std::condition_variable cv_;
    bool requested_ = false;            // the consumer waits for a piece
    std::optional<std::string> piece_;  // handed over, not yet taken
    bool done_ = false;                 // generate returned (result_ or error_ set)
    bool cancel_ = false;
    std::exception_ptr error_;
    std::optional<GenerateResult> result_;
};

}  // namespace bitttt::python
