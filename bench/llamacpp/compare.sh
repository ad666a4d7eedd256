#!/usr/bin/env bash
# Side by side on this machine's CPU: llama.cpp's llama-bench (TQ2_0, TQ1_0 and Q4_0 Llama models
# with random weights) next to `bitttt bench decode/prompt` on Bit-TTT models of the same shapes.
# Opt-in (`make bench-llamacpp`), never part of `make test`. bench/README.md ("llama.cpp side by
# side") explains what is compared; figures go to bench/RESULTS.md.
#
# Nothing of llama.cpp is committed: its source comes at bench time from PyPI (the vendored copy
# inside the llama-cpp-python sdist, pinned by version and SHA-256), is built with CMake for this
# CPU, and lives in $LLAMACPP_DIR (default .llamacpp/, ignored by git), as do the models and logs.
#
#   bench/llamacpp/compare.sh [fetch|build|models|run|all]   (default: all)
# Environment: BITTTT (the CLI, default build/bitttt), PYTHON, JOBS (build jobs, default 2),
#   THREADS (default 2), ROUNDS (alternating rounds per shape, default 3), SHAPES (default
#   "default big"), LLAMACPP_DIR, TYPES (llama.cpp types, default "TQ2_0 TQ2_0-f16out TQ1_0 Q4_0"),
#   EXTRA_THREADS (thread counts the 'default' shape also runs at, default 1; empty: none),
#   OUR_WAIT (OpenMP wait policies bitttt runs with: auto = its own pick by load, active, passive;
#   default "auto active": llama.cpp's threads always spin).
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
HERE="$ROOT/bench/llamacpp"
DIR=${LLAMACPP_DIR:-$ROOT/.llamacpp}
BITTTT=${BITTTT:-$ROOT/build/bitttt}
PYTHON=${PYTHON:-python3}
JOBS=${JOBS:-2}
THREADS=${THREADS:-2}
ROUNDS=${ROUNDS:-3}
SHAPES=${SHAPES:-default big}
TYPES=${TYPES:-TQ2_0 TQ2_0-f16out TQ1_0 Q4_0}
OUR_WAIT=${OUR_WAIT:-auto active}

# Pinned downloads (PyPI). llama-cpp-python 0.3.36 vendors ggml-org/llama.cpp@0c1e57098.
LCP_VERSION=0.3.36
LCP_SHA256=832db0699007f1be95a7e41ef12e88926b02ba836461e36a36372db2760c1a2e
GGUF_VERSION=0.19.0
GGUF_SHA256=70bcd10edfe697fb2dad6e40af2234b9d8ece9a41a99761405121ebda1c3c1cd

SRC="$DIR/src/llama_cpp_python-$LCP_VERSION/vendor/llama.cpp"
BUILD="$DIR/build"
die() { echo "compare.sh: $*" >&2; exit 1; }

check_sha() {  # FILE SHA256
    echo "$2  $1" | sha256sum -c --status || die "$1: SHA-256 is not the pinned $2"
}

fetch() {
    mkdir -p "$DIR/dl" "$DIR/src"
    local sdist="$DIR/dl/llama_cpp_python-$LCP_VERSION.tar.gz"
    local wheel="$DIR/dl/gguf-$GGUF_VERSION-py3-none-any.whl"
    if [ ! -f "$sdist" ]; then
        "$PYTHON" -m pip download -q --no-deps --no-binary :all: -d "$DIR/dl" \
            "llama-cpp-python==$LCP_VERSION" || die "could not download llama-cpp-python $LCP_VERSION"
    fi
    if [ ! -f "$wheel" ]; then
        "$PYTHON" -m pip download -q --no-deps --only-binary :all: -d "$DIR/dl" \
            "gguf==$GGUF_VERSION" || die "could not download gguf $GGUF_VERSION"
    fi
    check_sha "$sdist" "$LCP_SHA256"
    check_sha "$wheel" "$GGUF_SHA256"
    [ -d "$SRC" ] || tar -xzf "$sdist" -C "$DIR/src"
    [ -f "$SRC/CMakeLists.txt" ] || die "$SRC: no llama.cpp source in the sdist"
    # gguf only (no deps): it needs numpy, pyyaml and tqdm, which the project's deps bring.
    [ -d "$DIR/pysite/gguf" ] || "$PYTHON" -m pip install -q --no-deps --target "$DIR/pysite" "$wheel"
}

build() {
    [ -f "$SRC/CMakeLists.txt" ] || fetch
    # CPU only, -march=native (AVX-512 VNNI here), OpenMP threads, static, no network code.
    CCACHE_BASEDIR="$DIR" cmake -S "$SRC" -B "$BUILD" -DCMAKE_BUILD_TYPE=Release -DGGML_NATIVE=ON \
        -DGGML_OPENMP=ON -DBUILD_SHARED_LIBS=OFF -DLLAMA_CURL=OFF -DLLAMA_OPENSSL=OFF \
        -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_SERVER=OFF \
        -DLLAMA_BUILD_APP=OFF -DLLAMA_BUILD_TOOLS=ON -DLLAMA_BUILD_COMMON=ON >"$DIR/cmake.log" 2>&1 ||
        { tail -n 30 "$DIR/cmake.log"; die "cmake configure failed (log: $DIR/cmake.log)"; }
    CCACHE_BASEDIR="$DIR" cmake --build "$BUILD" -j "$JOBS" --target llama-bench llama-quantize \
        >"$DIR/build.log" 2>&1 || { tail -n 30 "$DIR/build.log"; die "build failed (log: $DIR/build.log)"; }
}

# Shape NAME -> "D L MLP VOCAB HEADS": the Llama of the same matrices as the Bit-TTT model. With the
# delta rule and Dt = D, a TTT layer has q, k, v, o of D x D, exactly the Llama attention's
# weights; the MLPs (gate, up, down) and vocabularies are the same.
shape_of() {
    case "$1" in
        default) echo "256 8 768 8192 16" ;;   # models/default.bitt: 16 heads of 16
        big) echo "2048 24 6144 32000 32" ;;    # weights (~0.4 GB ternary) far beyond the caches
        *) die "unknown shape '$1' (default, big)" ;;
    esac
}

models() {
    [ -x "$BUILD/bin/llama-quantize" ] || build
    [ -d "$DIR/pysite/gguf" ] || fetch
    mkdir -p "$DIR/models"
    for s in $SHAPES; do
        read -r d l mlp vocab heads <<<"$(shape_of "$s")"
        local f16="$DIR/models/$s-F16.gguf"
        [ -f "$f16" ] || PYTHONPATH="$DIR/pysite" "$PYTHON" "$HERE/make_gguf.py" --dim "$d" \
            --layers "$l" --mlp "$mlp" --vocab "$vocab" --heads "$heads" --out "$f16"
        for t in $TYPES; do
            local out="$DIR/models/$s-$t.gguf" extra=() qt=$t
            [ -f "$out" ] && continue
            # -f16out: embeddings and output head kept F16, as ours are bf16 (the same bytes).
            if [ "$t" = TQ2_0-f16out ]; then
                qt=TQ2_0
                extra=(--token-embedding-type f16 --output-tensor-type f16)
            fi
            "$BUILD/bin/llama-quantize" "${extra[@]}" "$f16" "$out.tmp" "$qt" "$THREADS" \
                >"$DIR/models/$s-$t.log" 2>&1 || { tail -n 20 "$DIR/models/$s-$t.log"; die "quantize $s $t failed"; }
            mv "$out.tmp" "$out"
        done
        # Ours: the shipped default model for 'default', random weights for the others.
        local bitt="$DIR/models/$s.bitt"
        if [ "$s" = default ]; then
            cp "$ROOT/models/default.bitt" "$bitt"
        elif [ ! -f "$bitt" ]; then
            "$PYTHON" "$HERE/make_bitt.py" --dim "$d" --layers "$l" --mlp "$mlp" --vocab "$vocab" \
                --heads "$heads" --out "$bitt"
        fi
    done
}

run() {
    [ -x "$BUILD/bin/llama-bench" ] || build
    [ -x "$BITTTT" ] || die "$BITTTT: build bitttt first (make build)"
    models
    local stamp; stamp=$(date -u +%Y%m%dT%H%M%SZ)
    local out="$DIR/results/$stamp"
    mkdir -p "$out"
    {
        echo "date $(date -u +%FT%TZ)"
        echo "host $(uname -n) $(nproc) cores; $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2)"
        echo "llama.cpp: llama-cpp-python $LCP_VERSION sdist (ggml-org/llama.cpp@0c1e57098), gguf $GGUF_VERSION"
        echo "bitttt: $("$BITTTT" --version) ($(git -C "$ROOT" rev-parse --short HEAD))"
        echo "threads $THREADS, rounds $ROUNDS"
    } >"$out/versions.txt"
    for s in $SHAPES; do
        read -r d l mlp vocab heads <<<"$(shape_of "$s")"
        # Ours prefills 512 tokens below D=2048 and 64 above (bench_model.cpp); llama.cpp does both.
        local pp=512; [ "$d" -ge 2048 ] && pp=64
        local reps=3; [ "$d" -ge 2048 ] && reps=2
        for r in $(seq 1 "$ROUNDS"); do
            echo "== $s round $r/$ROUNDS (load $(cut -d' ' -f1-3 /proc/loadavg))" >&2
            echo "{\"round\": $r, \"shape\": \"$s\", \"load\": \"$(cut -d' ' -f1-3 /proc/loadavg)\"}" >>"$out/load.jsonl"
            # The small shape also at EXTRA_THREADS (default 1): what thread synchronization costs.
            local tlist=$THREADS
            [ "$s" = default ] && tlist="$THREADS ${EXTRA_THREADS-1}"
            for n in $tlist; do
                for w in $OUR_WAIT; do
                    # auto: bitttt picks OpenMP's wait policy by load (spin below half the CPUs).
                    if [ "$w" = auto ]; then env -u OMP_WAIT_POLICY "$BITTTT" bench decode prompt \
                        --model "$DIR/models/$s.bitt" -t "$n" --json
                    else OMP_WAIT_POLICY=$w "$BITTTT" bench decode prompt \
                        --model "$DIR/models/$s.bitt" -t "$n" --json
                    fi | sed "s/^{/{\"round\": $r, \"shape\": \"$s\", /" >>"$out/bitttt.jsonl"
                done
                for t in $TYPES; do
                    "$BUILD/bin/llama-bench" -m "$DIR/models/$s-$t.gguf" -t "$n" -p "$pp" -n 128 \
                        -r "$reps" -o jsonl 2>>"$out/llama-bench.err" \
                        | sed "s/^{/{\"round\": $r, \"shape\": \"$s\", \"type\": \"$t\", /" >>"$out/llama.jsonl"
                done
            done
        done
    done
    PYTHONPATH="$DIR/pysite" "$PYTHON" "$HERE/summarize.py" "$out" "$DIR/models" | tee "$out/summary.md"
    echo "results: $out" >&2
}

case "${1:-all}" in
    fetch) fetch ;;
    build) build ;;
    models) models ;;
    run | all) run ;;
    *) die "usage: compare.sh [fetch|build|models|run|all]" ;;
esac
