// `bitttt demo`: the most complete demonstration the project has until a default model ships.
#include <fmt/format.h>

#include "cli/commands.hpp"
#include "core/cpu_features.hpp"

namespace bitttt::cli {

void register_demo(CLI::App& app) {
    auto* cmd = app.add_subcommand("demo", "Show what the engine can do (used by `make run`)");
    cmd->callback([] {
        fmt::print("bitttt {} | cpu: {} | kernels: {}\n", BITTTT_VERSION, cpu_model_name(),
                   isa_name(active_isa()));
    });
}

}  // namespace bitttt::cli
