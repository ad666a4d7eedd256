// Each subcommand of the `bitttt` command registers itself on the top-level CLI11 app.
// Errors inside a command are thrown as bitttt::Error and reported by main() as one line.
#pragma once

#include <CLI/CLI.hpp>

namespace bitttt::cli {

void register_bench(CLI::App& app);
void register_demo(CLI::App& app);
void register_generate(CLI::App& app);
void register_info(CLI::App& app);
void register_chat(CLI::App& app);
void register_eval(CLI::App& app);
void register_export(CLI::App& app);
void register_tokenizer(CLI::App& app);
void register_train(CLI::App& app);

}  // namespace bitttt::cli
