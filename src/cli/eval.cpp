// `bitttt eval`: mean next-token loss and perplexity of a text file (plain or .gz), with a
// progress bar on stderr. The TTT memory runs on across the whole text unless --reset-every
// restarts it (training starts W at 0 for every context_len-token sequence).
#include <fmt/format.h>
#include <unistd.h>

#include <chrono>
#include <cmath>
#include <vector>

#include "bitttt/model.hpp"
#include "bitttt/tokenizer.hpp"
#include "cli/commands.hpp"
#include "cli/model_options.hpp"
#include "core/error.hpp"
#include "model/config.hpp"
#include "tokenizer/text_file.hpp"

namespace bitttt::cli {
namespace {

struct EvalArgs {
    std::string model, file;
    int64_t max_tokens = 0;
    int64_t reset_every = 0;
    int64_t chunk = 256;
    int threads = 0;
    bool quiet = false;
    DeviceFlags device;
};

// −log softmax(logits)[target], in double: log Σ exp(l − max) − (l_target − max).
double token_loss(const float* logits, int64_t vocab, int32_t target) {
    float max = logits[0];
    for (int64_t i = 1; i < vocab; ++i) max = std::max(max, logits[i]);
    double sum = 0;
    for (int64_t i = 0; i < vocab; ++i) sum += std::exp(static_cast<double>(logits[i] - max));
    return std::log(sum) - static_cast<double>(logits[target] - max);
}

void progress(int64_t done, int64_t total, double loss, double seconds) {
    constexpr int kWidth = 30;
    const int filled = static_cast<int>(kWidth * done / std::max<int64_t>(total, 1));
    fmt::print(stderr, "\r[{:<{}}] {:3d}% {}/{} tokens | loss {:.4f} | {:.0f} tokens/s",
               std::string(static_cast<size_t>(filled), '#'), kWidth,
               static_cast<int>(100 * done / std::max<int64_t>(total, 1)), done, total, loss,
               seconds > 0 ? static_cast<double>(done) / seconds : 0.0);
}

void run_eval(const EvalArgs& a) {
    apply_threads(a.threads);
    auto model = open_model(a.model, a.device.options());
    const Tokenizer* tok = model->tokenizer();
    check(tok != nullptr, ErrorKind::kInvalidArgument, "{}: the model has no tokenizer", a.model);
    const std::string text = tok::read_text_file(a.file);
    std::vector<int32_t> ids;
    for (uint32_t id : tok->encode_parallel(text)) ids.push_back(static_cast<int32_t>(id));
    if (a.max_tokens > 0 && static_cast<int64_t>(ids.size()) > a.max_tokens)
        ids.resize(static_cast<size_t>(a.max_tokens));
    const int64_t n = static_cast<int64_t>(ids.size());
    check(n >= 2, ErrorKind::kInvalidArgument, "{}: fewer than 2 tokens to evaluate", a.file);

    const int64_t V = model->config().vocab_size;
    Session session(model, a.chunk);
    std::vector<float> logits(static_cast<size_t>(a.chunk * V));
    const bool bar = !a.quiet;
    auto start = std::chrono::steady_clock::now();
    double total_loss = 0;
    int64_t scored = 0;
    // Token t's logits predict token t + 1; a chunk never crosses a reset point.
    for (int64_t pos = 0; pos < n - 1;) {
        int64_t len = std::min(a.chunk, n - 1 - pos);
        if (a.reset_every > 0) {
            if (pos % a.reset_every == 0) session.reset();
            len = std::min(len, a.reset_every - pos % a.reset_every);
        }
        std::span<const int32_t> in(ids.data() + pos, static_cast<size_t>(len));
        session.forward(in, std::span<float>(logits.data(), static_cast<size_t>(len * V)));
        for (int64_t t = 0; t < len; ++t)
            total_loss +=
                token_loss(logits.data() + t * V, V, ids[static_cast<size_t>(pos + t + 1)]);
        scored += len;
        pos += len;
        if (bar) {
            const double s =
                std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
            progress(scored, n - 1, total_loss / static_cast<double>(scored), s);
        }
    }
    if (bar) fmt::print(stderr, "\n");
    const double mean = total_loss / static_cast<double>(scored);
    fmt::print("tokens: {}\nloss: {:.6f}\nperplexity: {:.4f}\n", scored, mean, std::exp(mean));
}

}  // namespace

void register_eval(CLI::App& app) {
    auto* cmd = app.add_subcommand("eval", "Mean loss and perplexity of a text file");
    auto a = std::make_shared<EvalArgs>();
    cmd->add_option("model", a->model, kModelHelp)->required();
    cmd->add_option("file", a->file, "UTF-8 text file (plain or .gz)")->required();
    cmd->add_option("--max-tokens", a->max_tokens, "Evaluate at most this many tokens (0: all)")
        ->check(CLI::Range(int64_t{0}, int64_t{1} << 40));
    cmd->add_option("--reset-every", a->reset_every,
                    "Reset the TTT memory every N tokens (0: never; training uses context_len)")
        ->check(CLI::Range(int64_t{0}, int64_t{1} << 40));
    cmd->add_option("--chunk", a->chunk, "Tokens per batched forward")
        ->capture_default_str()
        ->check(CLI::Range(int64_t{1}, int64_t{4096}));
    cmd->add_option("-t,--threads", a->threads, "Threads (0: all cores)")
        ->check(CLI::Range(0, 4096));
    add_device_options(cmd, a->device);
    cmd->add_flag("-q,--quiet", a->quiet, "No progress bar");
    cmd->callback([a] { run_eval(*a); });
}

}  // namespace bitttt::cli
