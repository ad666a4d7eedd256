// `bitttt eval`: loss measurements of a model, with a progress bar on stderr.
//   - default: mean next-token loss, perplexity and bits per byte of a text file (plain or .gz).
//     The TTT memory runs on across the whole text unless --reset-every restarts it (training
//     starts W at 0 for every context_len-token sequence).
//   - --memory-effect: loss on the second copy of repeated random token sequences vs the first.
//   - --long-positions: loss at far positions of long inputs (documents of the text file one
//     after another) vs near positions.
// Definitions of the last two: model/evaluation.hpp.
#include <fmt/format.h>

#include <charconv>
#include <chrono>
#include <cmath>
#include <numbers>
#include <vector>

#include "bitttt/model.hpp"
#include "bitttt/tokenizer.hpp"
#include "cli/commands.hpp"
#include "cli/model_options.hpp"
#include "core/error.hpp"
#include "model/config.hpp"
#include "model/evaluation.hpp"
#include "tokenizer/text_file.hpp"
#include "train/data.hpp"

namespace bitttt::cli {
namespace {

struct EvalArgs {
    std::string model, file;
    int64_t max_tokens = 0;
    int64_t reset_every = 0;
    int64_t chunk = 256;
    int threads = 0;
    bool quiet = false;
    bool documents = false;  // tokenize as training does (train/data.hpp) instead of as one text
    DeviceFlags device;
    // --memory-effect
    bool memory_effect = false;
    MemoryEffectOptions memory;
    // --long-positions
    bool long_positions = false;
    std::string near = "0:128", far = "1024:2048";
    int64_t windows = 0;
};

// A progress bar on one stderr line: "[#####     ]  50% 16/32 what | extra".
class ProgressBar {
  public:
    ProgressBar(bool enabled, std::string what)
        : enabled_(enabled), what_(std::move(what)), start_(std::chrono::steady_clock::now()) {}
    ~ProgressBar() {
        if (enabled_ && shown_) fmt::print(stderr, "\n");
    }
    ProgressBar(const ProgressBar&) = delete;
    ProgressBar& operator=(const ProgressBar&) = delete;

    void show(int64_t done, int64_t total, const std::string& extra = {}) {
        if (!enabled_) return;
        constexpr int kWidth = 30;
        const int64_t t = std::max<int64_t>(total, 1);
        const double s =
            std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
        fmt::print(stderr, "\r[{:<{}}] {:3d}% {}/{} {} | {:.1f} s{}",
                   std::string(static_cast<size_t>(kWidth * done / t), '#'), kWidth,
                   static_cast<int>(100 * done / t), done, total, what_, s, extra);
        shown_ = true;
    }

  private:
    bool enabled_;
    std::string what_;
    std::chrono::steady_clock::time_point start_;
    bool shown_ = false;
};

// "BEGIN:END" -> positions [BEGIN, END); an error naming the option otherwise.
PositionRange parse_range(const std::string& text, const char* option) {
    const size_t colon = text.find(':');
    PositionRange r;
    auto number = [&](std::string_view part, int64_t& out) {
        const auto [end, ec] = std::from_chars(part.data(), part.data() + part.size(), out);
        return ec == std::errc() && end == part.data() + part.size() && !part.empty();
    };
    const std::string_view all(text);
    check(colon != std::string::npos && number(all.substr(0, colon), r.begin) &&
              number(all.substr(colon + 1), r.end),
          ErrorKind::kInvalidArgument, "{} '{}': expected BEGIN:END (two integers)", option, text);
    check(r.begin >= 0 && r.end > r.begin, ErrorKind::kInvalidArgument,
          "{} {}: the range is empty or negative (need 0 <= BEGIN < END)", option, text);
    return r;
}

// The tokens of FILE: the whole text encoded as one string (the separator lines' newlines and
// <|endoftext|> included), or with `documents` the stream `bitttt train` and bench/torch_train.py
// train and validate on: each document's tokens, then <|endoftext|> (train::tokenize_documents).
std::vector<int32_t> read_ids(const Tokenizer& tok, const std::string& file, bool documents) {
    const std::string text = tok::read_text_file(file);
    if (documents) return train::tokenize_documents(text, tok);
    std::vector<int32_t> ids;
    for (uint32_t id : tok.encode_parallel(text)) ids.push_back(static_cast<int32_t>(id));
    return ids;
}

const Tokenizer& need_tokenizer(const Model& model, const std::string& name) {
    check(model.tokenizer() != nullptr, ErrorKind::kInvalidArgument,
          "{}: the model has no tokenizer", name);
    return *model.tokenizer();
}

void run_mean_loss(const EvalArgs& a, const std::shared_ptr<const Model>& model) {
    const Tokenizer& tok = need_tokenizer(*model, a.model);
    std::vector<int32_t> ids = read_ids(tok, a.file, a.documents);
    if (a.max_tokens > 0 && static_cast<int64_t>(ids.size()) > a.max_tokens)
        ids.resize(static_cast<size_t>(a.max_tokens));
    const int64_t n = static_cast<int64_t>(ids.size());
    check(n >= 2, ErrorKind::kInvalidArgument, "{}: fewer than 2 tokens to evaluate", a.file);

    const int64_t V = model->config().vocab_size;
    Session session(model, a.chunk);
    std::vector<float> logits(static_cast<size_t>(a.chunk * V));
    ProgressBar bar(!a.quiet, "tokens");
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
        const double s =
            std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
        bar.show(scored, n - 1,
                 fmt::format(" | loss {:.4f} | {:.0f} tokens/s",
                             total_loss / static_cast<double>(scored),
                             s > 0 ? static_cast<double>(scored) / s : 0.0));
    }
    const double mean = total_loss / static_cast<double>(scored);
    // The scored targets are tokens 1 .. scored; their text is what bits/byte divides by.
    std::vector<uint32_t> targets(ids.begin() + 1, ids.begin() + 1 + scored);
    const auto bytes = static_cast<double>(tok.decode(targets).size());
    fmt::print("tokens: {}\nloss: {:.6f}\nperplexity: {:.4f}\n", scored, mean, std::exp(mean));
    if (bytes > 0) fmt::print("bits/byte: {:.4f}\n", total_loss / std::numbers::ln2 / bytes);
}

void run_memory_effect(const EvalArgs& a, const std::shared_ptr<const Model>& model) {
    MemoryEffectOptions o = a.memory;
    o.chunk = a.chunk;
    MemoryEffect m;
    {
        ProgressBar bar(!a.quiet, "sequences");
        m = measure_memory_effect(model, o,
                                  [&](int64_t done, int64_t total) { bar.show(done, total); });
    }
    fmt::print(
        "memory effect: {} random sequences of {} tokens, each read twice (seed {})\n"
        "copy 1 loss: {:.6f} nats/token ({} tokens)\n"
        "copy 2 loss: {:.6f} nats/token ({} tokens)\n"
        "copy 2 / copy 1: {:.6f}\n",
        o.sequences, o.length, o.seed, m.copy1.mean(), m.copy1.tokens, m.copy2.mean(),
        m.copy2.tokens, m.ratio());
}

void run_long_positions(const EvalArgs& a, const std::shared_ptr<const Model>& model) {
    const Tokenizer& tok = need_tokenizer(*model, a.model);
    PositionLossOptions o;
    o.near = parse_range(a.near, "--near");
    o.far = parse_range(a.far, "--far");
    o.windows = a.windows;
    o.chunk = a.chunk;
    const std::vector<int32_t> ids = read_ids(tok, a.file, a.documents);
    PositionLoss p;
    {
        ProgressBar bar(!a.quiet, "windows");
        p = measure_position_loss(model, ids, o, &tok,
                                  [&](int64_t done, int64_t total) { bar.show(done, total); });
    }
    auto line = [](const char* name, PositionRange r, const LossSum& s) {
        fmt::print("positions {}-{} ({}): {:.6f} nats/token, {:.4f} bits/byte ({} tokens)\n",
                   r.begin, r.end, name, s.mean(), s.bits_per_byte(), s.tokens);
    };
    fmt::print("long positions: {} windows of {} tokens ({}: documents one after another)\n",
               p.windows, p.window_tokens, a.file);
    line("near", o.near, p.near);
    line("far", o.far, p.far);
    fmt::print("far / near: {:.6f}\n", p.near.mean() > 0 ? p.far.mean() / p.near.mean() : 0.0);
}

void run_eval(const EvalArgs& a) {
    const bool plain = !a.memory_effect && !a.long_positions;
    check(!a.file.empty() || !(plain || a.long_positions), ErrorKind::kInvalidArgument,
          "eval: {} needs a text FILE", plain ? "the mean loss" : "--long-positions");
    check(a.file.empty() || plain || a.long_positions, ErrorKind::kInvalidArgument,
          "eval: --memory-effect uses random tokens, not a FILE ({})", a.file);
    apply_threads(a.threads);
    auto model = open_model(a.model, a.device.options());
    if (plain) return run_mean_loss(a, model);
    if (a.memory_effect) run_memory_effect(a, model);
    if (a.long_positions) run_long_positions(a, model);
}

}  // namespace

void register_eval(CLI::App& app) {
    auto* cmd = app.add_subcommand(
        "eval",
        "Mean loss, perplexity and bits/byte of a text file; or the memory effect "
        "(--memory-effect) and the loss far into long inputs (--long-positions)");
    auto a = std::make_shared<EvalArgs>();
    cmd->add_option("model", a->model, kModelHelp)->required();
    cmd->add_option("file", a->file,
                    "UTF-8 text file (plain or .gz); documents separated by <|endoftext|> lines");
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
    cmd->add_flag("--documents", a->documents,
                  "Tokenize FILE as training does: each document's tokens, then <|endoftext|> (no "
                  "newline tokens around the separator lines); default: the whole text as one");

    const char* kMemory = "Memory effect (--memory-effect)";
    cmd->add_flag("--memory-effect", a->memory_effect,
                  "Loss on the second copy of a repeated random token sequence vs the first "
                  "(tokens uniform over ids 1..vocab-1; each sequence in a fresh session; the "
                  "first token of each copy is not scored); no FILE")
        ->group(kMemory);
    cmd->add_option("--length", a->memory.length, "Tokens per copy")
        ->capture_default_str()
        ->check(CLI::Range(int64_t{2}, int64_t{1} << 24))
        ->group(kMemory);
    cmd->add_option("--sequences", a->memory.sequences, "Random sequences")
        ->capture_default_str()
        ->check(CLI::Range(int64_t{1}, int64_t{1} << 30))
        ->group(kMemory);
    cmd->add_option("--seed", a->memory.seed, "Seed of the random tokens")
        ->capture_default_str()
        ->group(kMemory);

    const char* kLong = "Long positions (--long-positions)";
    cmd->add_flag("--long-positions", a->long_positions,
                  "Loss at --far positions vs --near positions of long inputs: FILE's tokens cut "
                  "into windows of max(END)+1 tokens, each read from a fresh session; position p "
                  "is the prediction of token p+1 after reading tokens 0..p")
        ->group(kLong);
    cmd->add_option("--near", a->near, "Near positions BEGIN:END (END excluded)")
        ->capture_default_str()
        ->group(kLong);
    cmd->add_option("--far", a->far, "Far positions BEGIN:END (END excluded)")
        ->capture_default_str()
        ->group(kLong);
    cmd->add_option("--windows", a->windows, "Windows to score (0: all the text fills)")
        ->capture_default_str()
        ->check(CLI::Range(int64_t{0}, int64_t{1} << 40))
        ->group(kLong);
    cmd->callback([a] { run_eval(*a); });
}

}  // namespace bitttt::cli
