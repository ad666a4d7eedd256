#include "generate_stream.hpp"

#include <utility>

namespace bitttt::python {

GenerateStream::GenerateStream(Session& session, std::vector<int32_t> prompt,
                               GenerateOptions options, StreamingDecoder decoder)
    : session_(session),
      prompt_(std::move(prompt)),
      options_(std::move(options)),
      decoder_(std::move(decoder)) {}

GenerateStream::~GenerateStream() {
    close();
}

void GenerateStream::run() {
    std::optional<GenerateResult> result;
    std::exception_ptr error;
    std::string tail;
    try {
        result = session_.generate(prompt_, options_, [this](int32_t id) {
            std::string text = decoder_.push(static_cast<uint32_t>(id));
            // Bytes of an unfinished character: nothing to hand over yet, keep going.
            return text.empty() ? true : hand_over(std::move(text));
        });
        tail = decoder_.finish();
    } catch (...) {
        error = std::current_exception();
    }
    std::lock_guard<std::mutex> lock(mutex_);
    if (!tail.empty() && !cancel_) piece_ = std::move(tail);
    result_ = std::move(result);
    error_ = error;
    done_ = true;
    cv_.notify_all();
}

bool GenerateStream::hand_over(std::string text) {
    std::unique_lock<std::mutex> lock(mutex_);
    piece_ = std::move(text);
    cv_.notify_all();
    // Wait until the piece was taken and another is asked for, or the consumer gave up.
    cv_.wait(lock, [this] { return cancel_ || (!piece_ && requested_); });
    return !cancel_;
}

std::optional<std::string> GenerateStream::next() {
    std::unique_lock<std::mutex> lock(mutex_);
    if (cancel_) return std::nullopt;
    if (!worker_.joinable() && !done_) worker_ = std::thread([this] { run(); });
    requested_ = true;
    cv_.notify_all();
    cv_.wait(lock, [this] { return piece_.has_value() || done_; });
    requested_ = false;
    if (piece_) {
        std::string out = std::move(*piece_);
        piece_.reset();
        return out;
    }
    std::exception_ptr error = std::exchange(error_, nullptr);
    lock.unlock();
    if (worker_.joinable()) worker_.join();
    if (error) std::rethrow_exception(error);
    return std::nullopt;
}

void GenerateStream::close() {
    {
        std::lock_guard<std::mutex> lock(mutex_);
        cancel_ = true;
        cv_.notify_all();
    }
    if (worker_.joinable()) worker_.join();
}

}  // namespace bitttt::python
