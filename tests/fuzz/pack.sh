#!/usr/bin/env bash
# Packs the libFuzzer binaries for a machine that has no clang (and none of our libraries): the
# fuzz_* binaries (debug info stripped, symbols kept so sanitizer reports still name functions),
# the shared libraries they load other than glibc's own, the seed corpora and campaign.sh.
#
#   tests/fuzz/pack.sh [BIN_DIR] [DEST]      (defaults: build-fuzz/tests .fuzzbin)
#
# Then, on the other machine (the folder copied as it is):
#   DEST/campaign.sh -s SECONDS -o RESULTS      (campaign.sh finds bin/, lib/ and corpus/ itself)
# The sanitizer runtimes (ASan, UBSan) and libFuzzer are linked into each binary statically.
set -euo pipefail
cd "$(dirname "$0")/../.."
bin_dir=${1:-build-fuzz/tests}
dest=${2:-.fuzzbin}
targets=$(basename -a tests/fuzz/fuzz_*.cpp | sed 's/\.cpp$//')
for t in $targets; do
    [ -x "$bin_dir/$t" ] || { echo "pack: no $bin_dir/$t (build them: make fuzz-build)" >&2; exit 1; }
done
rm -rf "$dest"
mkdir -p "$dest/bin" "$dest/lib/cxx"
for t in $targets; do
    objcopy --strip-debug "$bin_dir/$t" "$dest/bin/$t"
done
# Every library a binary loads, except those of the C library itself (libc, libm, the loader...),
# which the other machine has and which must match its kernel interface.
for t in $targets; do ldd "$bin_dir/$t"; done | awk '$2 == "=>" && $3 ~ /^\// {print $3}' | sort -u |
    while read -r lib; do
        case $(basename "$lib") in
            libc.so.* | libm.so.* | libpthread.so.* | libdl.so.* | librt.so.* | ld-linux*) ;;
            # The C++ runtime needs a glibc as new as this machine's (2.36): campaign.sh uses the
            # other machine's own when it is recent enough and these only as a fallback.
            libstdc++.so.* | libgcc_s.so.*) cp -L "$lib" "$dest/lib/cxx/" ;;
            *) cp -L "$lib" "$dest/lib/" ;;
        esac
    done
cp -r tests/fuzz/corpus "$dest/corpus"
cp tests/fuzz/campaign.sh "$dest/campaign.sh"
echo "pack: $dest: $(du -sh "$dest" | cut -f1) ($(ls "$dest/bin" | wc -l) binaries, libraries: $(cd "$dest/lib" && find . -name '*.so*' | tr '\n' ' '))"
