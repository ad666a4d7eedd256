#include "cli/integer_flags.hpp"

#include <fmt/format.h>

#include <charconv>
#include <cstdint>
#include <string>

namespace bitttt::cli {
namespace {

template <typename T>
bool fits(const std::string& text) {
    T value{};
    const char* end = text.data() + text.size();
    const auto [ptr, ec] = std::from_chars(text.data(), end, value);
    return ec == std::errc() && ptr == end;
}

CLI::Validator whole_number(bool is_unsigned) {
    return CLI::Validator(
        [is_unsigned](std::string& text) -> std::string {
            if (text.empty()) return {};  // CLI11: an empty value means the default
            if (is_unsigned ? fits<uint64_t>(text) : fits<int64_t>(text)) return {};
            return fmt::format("'{}' is not a {}whole number of at most 64 bits", text,
                               is_unsigned ? "non-negative " : "");
        },
        /*validator_desc=*/"", "whole number");
}

}  // namespace

void check_integer_flags(CLI::App& app) {
    for (CLI::Option* opt : app.get_options()) {
        const std::string type = opt->get_type_name();  // e.g. "INT", "UINT:INT in [0 - 4096]"
        const std::string base = type.substr(0, type.find(':'));
        if (base == "INT" || base == "UINT") opt->check(whole_number(base == "UINT"));
    }
    for (CLI::App* sub : app.get_subcommands([](CLI::App*) { return true; }))
        check_integer_flags(*sub);
}

}  // namespace bitttt::cli
