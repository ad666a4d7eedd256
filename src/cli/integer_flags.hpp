// Strict integer flags for every subcommand. CLI11 2.1 reads integers with strtoll/strtoull and
// never looks at errno, so "99999999999999999999" silently becomes the largest value of the type
// and "-1" given to an unsigned option becomes 2^64 - 1. check_integer_flags() gives every
// integer option (its type name is INT or UINT) a check that runs before CLI11's conversion: the
// text must be a decimal whole number that fits 64 bits, not negative for an unsigned option.
// (Narrower types are range-checked by CLI11 itself after that.)
#pragma once

#include <CLI/CLI.hpp>

namespace bitttt::cli {

// Call after every subcommand has registered its options (walks the whole tree).
void check_integer_flags(CLI::App& app);

}  // namespace bitttt::cli
