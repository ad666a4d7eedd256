#!/usr/bin/env bash
# A fuzzing campaign (issue 9): every libFuzzer target of tests/fuzz runs at the same time, each in
# libFuzzer's fork mode with W worker processes, for S seconds; then a table of what each did.
#
#   tests/fuzz/campaign.sh [-w WORKERS] [-s SECONDS] [-b BIN_DIR] [-c SEED_CORPUS_DIR]
#                          [-o OUT_DIR] [-t "fuzz_a fuzz_b ..."] [-x TARGET=WORKERS ...]
#
#   -w  workers per target (default: cores / number of targets, at least 1)
#   -s  seconds of fuzzing (default 600)
#   -b  folder holding the fuzz_* binaries (default: bin/ next to this script if it exists, else
#       build-fuzz/tests, as `make fuzz` builds them)
#   -c  seed corpora, one folder per target (default: corpus/ next to this script)
#   -o  results: campaign.md (the table), <target>.log, crashes/ (default: fuzz-campaign)
#   -t  which targets (default: every fuzz_* binary in the bin folder)
#   -x  more (or fewer) workers for one target, e.g. -x fuzz_token_cache=6; may be repeated
#   -a  plan the workers for a goal of GOAL executions per target (replaces -w and -x): first a
#       probe of -p seconds (default 15) runs every target at once, cores / targets processes
#       each (as busy as the campaign), to measure each target's exec/s per process; then every
#       target gets one worker, the targets that can reach GOAL in -s seconds get what they need,
#       fewest needed first, while the cores last, and the cores left go one at a time to the
#       target projected to run the fewest executions (so the slowest get the most). Planned on
#       80% of the probe's rate: inputs grow and fork mode restarts its jobs as the run goes on.
#
# A lib/ folder next to the binaries (or next to this script) is put on LD_LIBRARY_PATH (and
# lib/cxx, the packed C++ runtime, if the binaries do not start without it), so a folder made by
# tests/fuzz/pack.sh runs on a machine without the libraries or clang.
# Inputs found go to OUT_DIR/corpus/<target> (the seed corpora are only read). Crashes, leaks,
# timeouts and out-of-memory inputs are kept in OUT_DIR/crashes and fuzzing goes on; each one is a
# finding to reproduce with `<binary> FILE` and turn into a regression test (tests/fuzz/README.md).
# Exit status: 0 when every target ran and nothing was found, 1 otherwise.
set -uo pipefail

here=$(cd "$(dirname "$0")" && pwd)
workers="" seconds=600 bin_dir="" corpus_dir="$here/corpus" out_dir="fuzz-campaign" targets=""
goal="" probe_s=15
declare -A extra=()
while getopts "w:s:b:c:o:t:x:a:p:h" opt; do
    case $opt in
        w) workers=$OPTARG ;;
        s) seconds=$OPTARG ;;
        b) bin_dir=$OPTARG ;;
        c) corpus_dir=$OPTARG ;;
        o) out_dir=$OPTARG ;;
        t) targets=$OPTARG ;;
        x) extra[${OPTARG%%=*}]=${OPTARG#*=} ;;
        a) goal=$OPTARG ;;
        p) probe_s=$OPTARG ;;
        *) sed -n '2,29p' "$0"; exit 2 ;;
    esac
done
if [ -z "$bin_dir" ]; then
    if [ -d "$here/bin" ]; then bin_dir="$here/bin"; else bin_dir="build-fuzz/tests"; fi
fi
die() { echo "campaign: $*" >&2; exit 2; }
[ -d "$bin_dir" ] || die "no binary folder $bin_dir (build it with: make fuzz-build)"
[ -d "$corpus_dir" ] || die "no seed corpus folder $corpus_dir"
[[ "$seconds" =~ ^[1-9][0-9]*$ ]] || die "-s wants a positive number of seconds, not '$seconds'"
[ -z "$goal" ] || [[ "$goal" =~ ^[1-9][0-9]*$ ]] || die "-a wants a positive number of executions"
[[ "$probe_s" =~ ^[1-9][0-9]*$ ]] || die "-p wants a positive number of seconds, not '$probe_s'"
bin_dir=$(cd "$bin_dir" && pwd)
corpus_dir=$(cd "$corpus_dir" && pwd)
if [ -z "$targets" ]; then
    targets=$(find "$bin_dir" -maxdepth 1 -type f -perm -u+x -name 'fuzz_*' ! -name '*.*' \
        ! -name fuzz_make_corpus -printf '%f\n' | sort | tr '\n' ' ')
fi
[ -n "$targets" ] || die "no fuzz_* binaries in $bin_dir"
ntargets=$(wc -w <<<"$targets")
cores=$(nproc)
if [ -z "$workers" ]; then workers=$((cores / ntargets)); [ "$workers" -ge 1 ] || workers=1; fi
[[ "$workers" =~ ^[1-9][0-9]*$ ]] || die "-w wants a positive number, not '$workers'"
for t in "${!extra[@]}"; do
    [[ "${extra[$t]}" =~ ^[1-9][0-9]*$ ]] || die "-x $t= wants a positive number"
done

for lib in "$bin_dir/lib" "$bin_dir/../lib" "$here/lib"; do
    [ -d "$lib" ] && export LD_LIBRARY_PATH="$(cd "$lib" && pwd)${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
done
# The machine's own C++ runtime first; the packed one (lib/cxx, which needs glibc >= 2.36) only
# when the binaries cannot start without it.
probe=${targets%% *}
if ! "$bin_dir/$probe" -help=1 >/dev/null 2>&1; then
    for lib in "$bin_dir/lib/cxx" "$bin_dir/../lib/cxx" "$here/lib/cxx"; do
        [ -d "$lib" ] && export LD_LIBRARY_PATH="$(cd "$lib" && pwd):$LD_LIBRARY_PATH"
    done
    if ! "$bin_dir/$probe" -help=1 >/dev/null 2>&1; then
        "$bin_dir/$probe" -help=1 2>&1 | head -n 3 >&2
        die "$probe does not start on this machine (above: why)"
    fi
fi
# Many fuzzing processes share the cores: OpenMP threads must sleep, not spin, while they wait.
export OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-passive} OMP_NUM_THREADS=${OMP_NUM_THREADS:-2}
# libFuzzer handles crashes itself; the sanitizers must report, not recover.
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:allocator_may_return_null=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-halt_on_error=1:print_stacktrace=1}

for t in $targets; do
    [ -x "$bin_dir/$t" ] || die "no binary $bin_dir/$t"
    [ -d "$corpus_dir/$t" ] || die "no seed corpus $corpus_dir/$t"
done
mkdir -p "$out_dir/crashes" || die "cannot create $out_dir"
out_dir=$(cd "$out_dir" && pwd)

plan_note=""
if [ -n "$goal" ]; then
    # The probe: plain (not fork) runs, each in its own scratch corpus; what they find counts.
    per=$((cores / ntargets)); [ "$per" -ge 1 ] || per=1
    echo "campaign: probe: $ntargets targets x $per processes, $probe_s s"
    ppids=()
    for t in $targets; do
        for ((i = 0; i < per; i++)); do
            mkdir -p "$out_dir/probe/$t.$i"
            (cd "$out_dir/probe" && exec "$bin_dir/$t" -max_total_time="$probe_s" -max_len=65536 \
                -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
                -artifact_prefix="$out_dir/crashes/$t-" "$out_dir/probe/$t.$i" "$corpus_dir/$t" \
                >"$out_dir/probe/$t.$i.log" 2>&1) &
            ppids+=($!)
        done
    done
    for p in "${ppids[@]}"; do wait "$p"; done
    # exec/s per process of each target (the seed corpus's first runs included), then the plan.
    plan=$(for t in $targets; do
        runs=$(cat "$out_dir/probe/$t".*.log | awk '/stat::number_of_executed_units/ {s += $2} END {print s + 0}')
        echo "$t $((runs / (per * probe_s)))"
    done | awk -v cores="$cores" -v goal="$goal" -v secs="$seconds" '
        { name[NR] = $1; rate[NR] = ($2 > 0 ? $2 : 1) * 0.8; w[NR] = 1; n = NR }
        END {
            left = cores - n
            # Workers each target needs for the goal; satisfy the cheapest first.
            for (i = 1; i <= n; i++) need[i] = int((goal + rate[i] * secs - 1) / (rate[i] * secs))
            for (;;) {
                best = 0
                for (i = 1; i <= n; i++)
                    if (w[i] < need[i] && !tried[i] && (best == 0 || need[i] < need[best])) best = i
                if (best == 0) break
                tried[best] = 1
                if (need[best] - w[best] <= left) { left -= need[best] - w[best]; w[best] = need[best] }
            }
            # The rest, one at a time, to the target projected to run the fewest executions.
            while (left > 0) {
                best = 0
                for (i = 1; i <= n; i++)
                    if (w[i] < need[i] && (best == 0 || w[i] * rate[i] < w[best] * rate[best])) best = i
                if (best == 0) break
                w[best]++; left--
            }
            for (i = 1; i <= n; i++) printf "%s %d %d\n", name[i], w[i], rate[i] / 0.8
        }')
    extra=()
    while read -r t w r; do
        extra[$t]=$w
        echo "campaign: plan: $t: $r exec/s per process in the probe -> $w workers"
    done <<<"$plan"
    plan_note=" Workers planned by a ${probe_s}-s probe (goal: $goal executions per target; exec/s per process in the probe: $(awk '{printf "%s%s %s", (NR > 1 ? ", " : ""), $1, $3}' <<<"$plan"))."
fi
echo "campaign: $ntargets targets x $workers workers (cores: $cores), $seconds s, results in $out_dir"
pids=()
for t in $targets; do
    mkdir -p "$out_dir/corpus/$t"
    w=${extra[$t]:-$workers}
    echo "$w" >"$out_dir/$t.workers"
    # -fork: libFuzzer's own parallel mode (workers share and merge one corpus). -ignore_*: keep
    # fuzzing after a finding (its input is saved under crashes/ and counted).
    (cd "$out_dir" && exec "$bin_dir/$t" -fork="$w" -max_total_time="$seconds" -max_len=65536 \
        -timeout=10 -rss_limit_mb=2048 -ignore_crashes=1 -ignore_timeouts=1 -ignore_ooms=1 \
        -print_final_stats=1 -artifact_prefix="$out_dir/crashes/$t-" \
        "$out_dir/corpus/$t" "$corpus_dir/$t" >"$out_dir/$t.log" 2>&1) &
    pids+=($!)
done
trap 'kill "${pids[@]}" 2>/dev/null' INT TERM
for p in "${pids[@]}"; do wait "$p"; done

# The table. In fork mode libFuzzer prints a line per finished job:
#   #<runs>: cov: C ft: F corp: N exec/s E oom/timeout/crash: O/T/X time: Ss job: J dft_time: D
status=0
table="$out_dir/campaign.md"
{
    echo "Fuzzing campaign: $(date -u '+%Y-%m-%d %H:%M UTC'), $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//'), $cores cores, $seconds s.$plan_note"
    echo
    echo "| target | workers | executions | core-seconds | exec/s | exec/s per worker | cov / ft | corpus | oom / timeout / crash | saved inputs |"
    echo "|---|---:|---:|---:|---:|---:|---|---:|---|---:|"
    for t in $targets; do
        w=$(cat "$out_dir/$t.workers")
        last=$(grep -E '^#[0-9]+: cov: ' "$out_dir/$t.log" | tail -n 1)
        saved=$(find "$out_dir/crashes" -name "$t-*" -type f | wc -l)
        if [ -z "$last" ]; then
            echo "| \`$t\` | $w | - | - | - | - | - | - | did not run (see $t.log) | $saved |"
            status=1
            continue
        fi
        runs=$(sed -E 's/^#([0-9]+):.*/\1/' <<<"$last")
        cov=$(sed -E 's/.* cov: ([0-9]+) .*/\1/' <<<"$last")
        ft=$(sed -E 's/.* ft: ([0-9]+) .*/\1/' <<<"$last")
        corp=$(sed -E 's/.* corp: ([0-9]+) .*/\1/' <<<"$last")
        otc=$(sed -E 's|.* oom/timeout/crash: ([0-9]+/[0-9]+/[0-9]+) .*|\1|' <<<"$last")
        elapsed=$(sed -E 's/.* time: ([0-9]+)s .*/\1/' <<<"$last")
        [ "$elapsed" -gt 0 ] 2>/dev/null || elapsed=1
        rate=$((runs / elapsed))
        [ "$otc" = "0/0/0" ] && [ "$saved" -eq 0 ] || status=1
        printf '| `%s` | %s | %s | %s | %s | %s | %s / %s | %s | %s | %s |\n' "$t" "$w" "$runs" \
            "$((w * elapsed))" "$rate" "$((rate / w))" "$cov" "$ft" "$corp" "$otc" "$saved"
    done
    echo
    if [ "$status" -eq 0 ]; then echo "No crash, leak, timeout or out-of-memory input."; else
        echo "FINDINGS (or a target that did not run): see crashes/ and the logs."; fi
} >"$table"
cat "$table"
exit $status
