// `bitttt generate`: continue a prompt, streaming the text (or the ids, for a model without a
// tokenizer) to stdout as tokens are produced; speeds to stderr at the end.
#include <fmt/format.h>

#include <chrono>
#include <cstdio>
#include <optional>

#include "bitttt/model.hpp"
#include "bitttt/tokenizer.hpp"
#include "cli/commands.hpp"
#include "cli/model_options.hpp"
#include "core/error.hpp"
#include "io/atomic_file.hpp"
#include "model/config.hpp"

namespace bitttt::cli {
namespace {

struct GenerateArgs {
    std::string model;
    std::string prompt;
    std::string ids;
    GenerateOptions options;
    bool no_stop = false;
    std::string state_in, state_out;
    std::string dump_logits;
    int threads = 0;
    DeviceFlags device;
};

const char* stop_name(StopReason r) {
    switch (r) {
        case StopReason::kEndOfText:
            return "end of text";
        case StopReason::kTokenLimit:
            return "token limit";
        case StopReason::kCallback:
            return "stopped";
    }
    return "?";
}

// Writes the logits of every prompt token, float32 [tokens, vocab] little-endian, for tests
// that compare them with a reference implementation.
// Atomic, like every output file: a failed write (full disk) leaves nothing half-written.
void write_logits(const std::string& path, std::span<const float> logits) {
    io::write_file_atomic(path,
                          std::span<const uint8_t>(reinterpret_cast<const uint8_t*>(logits.data()),
                                                   logits.size_bytes()));
}

void run_generate(const GenerateArgs& a) {
    check(a.prompt.empty() != a.ids.empty(), ErrorKind::kInvalidArgument,
          "give exactly one of --prompt and --ids");
    apply_threads(a.threads);
    auto model = open_model(a.model, a.device.options());
    const Tokenizer* tok = model->tokenizer();
    std::vector<int32_t> prompt;
    if (!a.ids.empty()) {
        prompt = parse_ids(a.ids);
        check(!prompt.empty(), ErrorKind::kInvalidArgument, "--ids: no token ids");
    } else {
        check(tok != nullptr, ErrorKind::kInvalidArgument,
              "{}: the model has no tokenizer; give the prompt as token ids with --ids", a.model);
        for (uint32_t id : tok->encode(a.prompt)) prompt.push_back(static_cast<int32_t>(id));
        check(!prompt.empty(), ErrorKind::kInvalidArgument, "--prompt: the prompt is empty");
    }

    Session session(model);
    if (!a.state_in.empty()) session.load_state(a.state_in);
    GenerateOptions options = a.options;
    options.stop_at_end_of_text = !a.no_stop;

    // The prompt is echoed, so stdout reads as the whole text.
    std::optional<StreamingDecoder> decoder;
    if (tok) {
        decoder = tok->streaming_decoder();
        std::string text;
        for (int32_t id : prompt) text += decoder->push(static_cast<uint32_t>(id));
        fmt::print("{}", text);
    } else {
        for (int32_t id : prompt) fmt::print("{} ", id);
    }
    std::fflush(stdout);

    std::span<const int32_t> feed = prompt;
    double dump_seconds = 0;
    if (!a.dump_logits.empty()) {
        const int64_t V = model->config().vocab_size;
        std::vector<float> all(prompt.size() * static_cast<size_t>(V));
        auto start = std::chrono::steady_clock::now();
        session.forward(prompt, all);
        dump_seconds =
            std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
        write_logits(a.dump_logits, all);
        feed = {};  // generation continues from the last prompt token's logits
    }
    auto result = session.generate(feed, options, [&](int32_t id) {
        if (decoder)
            fmt::print("{}", decoder->push(static_cast<uint32_t>(id)));
        else
            fmt::print("{} ", id);
        std::fflush(stdout);
        return true;
    });
    if (decoder)
        fmt::print("{}\n", decoder->finish());
    else
        fmt::print("\n");
    std::fflush(stdout);
    if (!a.state_out.empty()) session.save_state(a.state_out);

    const double prompt_s = result.prompt_seconds + dump_seconds;
    const size_t n = result.tokens.size();
    fmt::print(stderr,
               "prompt: {} tokens, {:.1f} tokens/s | generated: {} tokens, {:.2f} tokens/s | {}\n",
               prompt.size(), prompt_s > 0 ? static_cast<double>(prompt.size()) / prompt_s : 0.0, n,
               result.generate_seconds > 0 ? static_cast<double>(n) / result.generate_seconds : 0.0,
               stop_name(result.stop));
}

}  // namespace

void register_generate(CLI::App& app) {
    auto* cmd = app.add_subcommand("generate", "Continue a prompt, streaming the text to stdout");
    auto a = std::make_shared<GenerateArgs>();
    cmd->add_option("model", a->model, kModelHelp)->required();
    cmd->add_option("-p,--prompt", a->prompt, "Prompt text (needs a tokenizer)");
    cmd->add_option("--ids", a->ids,
                    "Prompt as token ids, e.g. '1,2,3' (models without a tokenizer)");
    cmd->add_option("-n,--max-tokens", a->options.max_new_tokens, "Tokens to generate")
        ->capture_default_str()
        ->check(CLI::Range(int64_t{0}, int64_t{1} << 40));
    add_sampling_options(cmd, a->options.sampling);
    cmd->add_flag("--no-stop", a->no_stop, "Do not stop at <|endoftext|>");
    cmd->add_option("--state-in", a->state_in,
                    "Load the TTT memory from this .tttstate file first");
    cmd->add_option("--state-out", a->state_out,
                    "Save the TTT memory to this .tttstate file at the end");
    cmd->add_option("-t,--threads", a->threads, "Threads (0: all cores)")
        ->check(CLI::Range(0, 4096));
    add_device_options(cmd, a->device);
    cmd->add_option(
        "--dump-logits", a->dump_logits,
        "Write the logits of every prompt token (float32 [tokens, vocab]) to this file");
    cmd->callback([a] { run_generate(*a); });
}

}  // namespace bitttt::cli
