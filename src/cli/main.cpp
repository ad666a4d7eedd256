// The `bitttt` command: one binary, one subcommand per job (DESIGN.md §1).
#include <fmt/format.h>

#include <CLI/CLI.hpp>
#include <cstdio>
#include <exception>

#include "cli/commands.hpp"
#include "cli/integer_flags.hpp"
#include "cli/wait_policy.hpp"
#include "core/error.hpp"

int main(int argc, char** argv) {
    bitttt::cli::choose_wait_policy(argv);
    CLI::App app{
        "bitttt: the Bit-TTT engine (ternary BitNet b1.58 weights + Test-Time-Training layers)",
        "bitttt"};
    app.set_version_flag("--version", BITTTT_VERSION);
    app.require_subcommand(1);
    bitttt::cli::register_bench(app);
    bitttt::cli::register_demo(app);
    bitttt::cli::register_generate(app);
    bitttt::cli::register_info(app);
    bitttt::cli::register_chat(app);
    bitttt::cli::register_eval(app);
    bitttt::cli::register_export(app);
    bitttt::cli::register_tokenizer(app);
    bitttt::cli::register_train(app);
    bitttt::cli::check_integer_flags(app);  // after every option exists
    try {
        app.parse(argc, argv);
    } catch (const CLI::ParseError& e) {
        // --help and --version are "errors" with exit code 0: let CLI11 print them. Real flag
        // errors are one line on stderr, like every other error of the command.
        if (e.get_exit_code() == static_cast<int>(CLI::ExitCodes::Success)) return app.exit(e);
        fmt::print(stderr, "bitttt: error: {} (see --help)\n", e.what());
        return e.get_exit_code();
    } catch (const bitttt::Error& e) {
        fmt::print(stderr, "bitttt: error: {}\n", e.what());
        return 1;
    } catch (const std::bad_alloc&) {
        fmt::print(stderr, "bitttt: error: out of memory\n");
        return 1;
    } catch (const std::exception& e) {
        fmt::print(stderr, "bitttt: error: {}\n", e.what());
        return 1;
    }
    return 0;
}
