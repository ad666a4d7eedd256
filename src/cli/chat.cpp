// `bitttt chat`: an interactive loop over one Session, so the TTT memory W of every layer carries
// from turn to turn (and can be saved, loaded and reset with slash commands). Works with stdin
// from a pipe as well as a terminal (the prompt marker is shown only on a terminal).
#include <fmt/format.h>
#include <unistd.h>

#include <cstdio>
#include <iostream>
#include <string>

#include "bitttt/model.hpp"
#include "bitttt/tokenizer.hpp"
#include "cli/commands.hpp"
#include "cli/model_options.hpp"
#include "core/error.hpp"
#include "model/sampling.hpp"

namespace bitttt::cli {
namespace {

struct ChatArgs {
    std::string model;
    GenerateOptions options;
    std::string state_in;
    int threads = 0;
    DeviceFlags device;
};

constexpr const char* kChatHelp =
    "commands: /reset (forget the TTT memory), /save FILE, /load FILE, /quit";

// One turn: feed the user's text (or ids, without a tokenizer), stream the reply.
void reply(Session& session, const std::string& line, const GenerateOptions& options) {
    if (session.model().tokenizer()) {
        session.generate_text(line, options, [](std::string_view piece) {
            fmt::print("{}", piece);
            std::fflush(stdout);
            return true;
        });
    } else {
        session.generate(parse_ids(line), options, [](int32_t id) {
            fmt::print("{} ", id);
            std::fflush(stdout);
            return true;
        });
    }
    fmt::print("\n");
    std::fflush(stdout);
}

void run_chat(ChatArgs& a) {
    // Bad sampling flags are an error now, not at every turn (or never, with nothing on stdin).
    Sampler(1).set_options(a.options.sampling);
    apply_threads(a.threads);
    Session session(open_model(a.model, a.device.options()));
    if (!a.state_in.empty()) session.load_state(a.state_in);
    const bool tty = isatty(STDIN_FILENO) != 0;
    if (tty) {
        fmt::print(stderr, "bitttt chat: {}; {}\n",
                   session.model().tokenizer() ? "type text" : "type token ids (no tokenizer)",
                   kChatHelp);
    }
    // Each turn reseeds the sampler; vary the seed per turn so turns do not repeat each other.
    uint64_t turn = 0;
    std::string line;
    while (true) {
        if (tty) fmt::print(stderr, "> ");
        if (!std::getline(std::cin, line)) break;
        if (line.empty()) continue;
        try {
            if (line == "/quit" || line == "/exit") break;
            if (line == "/reset") {
                session.reset();
                fmt::print(stderr, "memory reset\n");
            } else if (line.rfind("/save ", 0) == 0) {
                session.save_state(line.substr(6));
                fmt::print(stderr, "saved {} ({} tokens read)\n", line.substr(6),
                           session.position());
            } else if (line.rfind("/load ", 0) == 0) {
                session.load_state(line.substr(6));
                fmt::print(stderr, "loaded {} ({} tokens read)\n", line.substr(6),
                           session.position());
            } else if (line[0] == '/') {
                fmt::print(stderr, "unknown command '{}'; {}\n", line, kChatHelp);
            } else {
                GenerateOptions options = a.options;
                options.sampling.seed += turn++;
                reply(session, line, options);
            }
        } catch (const Error& e) {
            // A bad file or input ends the turn, not the conversation.
            fmt::print(stderr, "error: {}\n", e.what());
        }
    }
}

}  // namespace

void register_chat(CLI::App& app) {
    auto* cmd = app.add_subcommand(
        "chat", std::string("Interactive generation; the TTT memory persists across turns (") +
                    kChatHelp + ")");
    auto a = std::make_shared<ChatArgs>();
    a->options.max_new_tokens = 256;
    cmd->add_option("model", a->model, kModelHelp)->required();
    cmd->add_option("-n,--max-tokens", a->options.max_new_tokens, "Tokens per reply at most")
        ->capture_default_str()
        ->check(CLI::Range(int64_t{0}, int64_t{1} << 40));
    add_sampling_options(cmd, a->options.sampling);
    cmd->add_option("--state-in", a->state_in, "Start from the TTT memory in this .tttstate file");
    cmd->add_option("-t,--threads", a->threads, "Threads (0: all cores)")
        ->check(CLI::Range(0, 4096));
    add_device_options(cmd, a->device);
    cmd->callback([a] { run_chat(*a); });
}

}  // namespace bitttt::cli
