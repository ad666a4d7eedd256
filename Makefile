# Bit-TTT engine: the two README commands (`make run`, `make test`) and their helpers.
BUILD_DIR ?= build
BUILD_TYPE ?= Release
JOBS ?= $(shell nproc)
PYTHON ?= python3
PROMPT ?= Once upon a time

APT_PACKAGES := cmake g++ make pkg-config libcli11-dev nlohmann-json3-dev libfmt-dev libpcre2-dev \
                zlib1g-dev libxxhash-dev libomp-dev libgtest-dev libgmock-dev libbenchmark-dev
LINT_PACKAGES := clang-format clang-tidy cppcheck
PIP_PACKAGES := numpy pytest safetensors tokenizers nanobind scikit-build-core matplotlib

BITTTT := $(BUILD_DIR)/bitttt

.PHONY: all deps build python run test bench bench-llamacpp clean format lint lint-fast lint-changed lint-deps fuzz \
        fuzz-build fuzz-pack test-sanitize test-sanitize-ci

all: build

# $(call apt_install,PACKAGES): idempotent, installs only what is missing, quietly.
define apt_install
	@missing=$$(for p in $(1); do dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q 'ok installed' || echo $$p; done); \
	if [ -n "$$missing" ]; then \
	  echo "deps: installing apt packages:" $$missing; \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq $$missing >/dev/null; \
	fi
endef

deps:
	$(call apt_install,$(APT_PACKAGES))
	@$(PYTHON) tools/check_pip.py $(PIP_PACKAGES) || $(PYTHON) -m pip install -q $(PIP_PACKAGES)

build: deps
	@cmake -S . -B $(BUILD_DIR) -DCMAKE_BUILD_TYPE=$(BUILD_TYPE) -DBITTTT_WERROR=ON >/dev/null
	@cmake --build $(BUILD_DIR) -j $(JOBS)

# `make run` tells a story with the shipped default model (models/README.md) on the CPU;
# `make run PROMPT="..."` continues another prompt. Without the model it runs the demo.
DEFAULT_MODEL := models/default.bitt
run: build
	@if [ -f $(DEFAULT_MODEL) ]; then \
	  $(BITTTT) generate $(DEFAULT_MODEL) --prompt "$(PROMPT)" --max-tokens 256 --seed $$(date +%s); \
	else $(BITTTT) demo; fi

# The Python package (`import bitttt`, `import cortex_rust`), built by scikit-build-core.
python: deps
	@$(PYTHON) -m pip install -q --no-build-isolation --root-user-action=ignore .

test: build python
	@cd $(BUILD_DIR) && ctest --output-on-failure -j $(JOBS)
	@BITTTT_BUILD_DIR=$(abspath $(BUILD_DIR)) $(PYTHON) -m pytest -q tests/python

# ---- fuzzing and sanitizers (issue 9; tests/fuzz/README.md) ----
# `make fuzz`: libFuzzer targets (clang, ASan+UBSan) in build-fuzz, each run FUZZ_SECONDS over its
# seed corpus (tests/fuzz/corpus/<target>, only read) plus a working corpus in build-fuzz/corpus.
# Crashes land in build-fuzz/crashes/. FUZZ_TARGETS picks a subset, e.g. FUZZ_TARGETS=fuzz_bitt.
FUZZ_DIR ?= build-fuzz
FUZZ_SECONDS ?= 60
FUZZ_TARGETS ?= $(basename $(notdir $(wildcard tests/fuzz/fuzz_*.cpp)))
fuzz-build: deps
	@command -v clang++ >/dev/null && ls /usr/lib/llvm-*/lib/clang/*/lib/linux/libclang_rt.fuzzer-x86_64.a >/dev/null 2>&1 || \
	  { echo "fuzz: needs clang++ and libFuzzer (apt-get install clang libclang-rt-14-dev)"; exit 1; }
	@CC=clang CXX=clang++ cmake -S . -B $(FUZZ_DIR) -DCMAKE_BUILD_TYPE=RelWithDebInfo -DBITTTT_SANITIZE=ON \
	  -DBITTTT_FUZZ=ON -DBITTTT_CUDA=OFF -DBITTTT_BUILD_CLI=OFF >/dev/null
	@cmake --build $(FUZZ_DIR) -j $(JOBS) --target $(FUZZ_TARGETS)

# `make fuzz-pack`: the binaries, their libraries and the corpora in .fuzzbin, for a campaign on
# a machine without clang (tests/fuzz/README.md: `.fuzzbin/campaign.sh -s SECONDS -o DIR`).
fuzz-pack: fuzz-build
	@tests/fuzz/pack.sh $(FUZZ_DIR)/tests .fuzzbin

fuzz: fuzz-build
	@mkdir -p $(FUZZ_DIR)/crashes
	@for t in $(FUZZ_TARGETS); do \
	  mkdir -p $(FUZZ_DIR)/corpus/$$t; \
	  $(FUZZ_DIR)/tests/$$t -max_total_time=$(FUZZ_SECONDS) -max_len=65536 -timeout=10 -rss_limit_mb=4096 \
	    -print_final_stats=1 -artifact_prefix=$(abspath $(FUZZ_DIR))/crashes/$$t- \
	    $(FUZZ_DIR)/corpus/$$t tests/fuzz/corpus/$$t >$(FUZZ_DIR)/$$t.log 2>&1 \
	    || { tail -n 60 $(FUZZ_DIR)/$$t.log; echo "fuzz: $$t FAILED (log: $(FUZZ_DIR)/$$t.log)"; exit 1; }; \
	  echo "fuzz: $$t: $$(grep -h 'stat::number_of_executed_units' $(FUZZ_DIR)/$$t.log | awk '{print $$2}') runs in $(FUZZ_SECONDS) s, no crash"; \
	done

# `make test-sanitize`: the C++ test suite (gtest, C ABI, corpus replays) and the CLI tests built
# with ASan+UBSan in build-asan, then the threaded code's tests with TSan in build-tsan.
ASAN_DIR ?= build-asan
TSAN_DIR ?= build-tsan
TSAN_TESTS ?= ternary_test f32_matmul_test norms_test ttt_test capi_test tokenizer_test model_test
test-sanitize: deps
	@cmake -S . -B $(ASAN_DIR) -DCMAKE_BUILD_TYPE=RelWithDebInfo -DBITTTT_SANITIZE=ON -DBITTTT_CUDA=OFF \
	  -DBITTTT_WERROR=ON >/dev/null
	@cmake --build $(ASAN_DIR) -j $(JOBS)
	@cd $(ASAN_DIR) && ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 \
	  UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 ctest --output-on-failure -j $(JOBS)
	@# The command-line tests, driving the sanitized `bitttt` (the Python module is not sanitized).
	@ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 \
	  BITTTT_BUILD_DIR=$(abspath $(ASAN_DIR)) $(PYTHON) -m pytest -q tests/python/test_cli.py \
	  tests/python/test_train_cli.py tests/python/test_generate_cli.py tests/python/test_tokenizer.py \
	  tests/python/test_files.py tests/python/test_cli_hostile.py tests/python/test_crash_safety.py
	@# TSan with clang and LLVM's OpenMP runtime, whose barriers TSan understands through the
	@# Archer tool (libarcher.so); GCC's libgomp is not instrumented and gives false reports.
	@CC=clang CXX=clang++ cmake -S . -B $(TSAN_DIR) -DCMAKE_BUILD_TYPE=RelWithDebInfo -DBITTTT_CUDA=OFF \
	  -DBITTTT_BUILD_CLI=OFF -DCMAKE_CXX_FLAGS=-fsanitize=thread -DCMAKE_C_FLAGS=-fsanitize=thread \
	  -DCMAKE_EXE_LINKER_FLAGS=-fsanitize=thread -DCMAKE_SHARED_LINKER_FLAGS=-fsanitize=thread >/dev/null
	@cmake --build $(TSAN_DIR) -j $(JOBS) --target $(TSAN_TESTS)
	@for t in $(TSAN_TESTS); do \
	  echo "tsan: $$t"; \
	  OMP_NUM_THREADS=4 OMP_TOOL_LIBRARIES=$$(ls /usr/lib/llvm-*/lib/libarcher.so | head -n 1) \
	  TSAN_OPTIONS="halt_on_error=1 second_deadlock_stack=1 ignore_noninstrumented_modules=1" $(TSAN_DIR)/tests/$$t --gtest_brief=1 || exit 1; \
	done

# `make test-sanitize-ci` (run by .ci/run after `make test`): what of test-sanitize fits the CI
# budget (2 cores, ~8 minutes more): the ASan+UBSan build (gcc, -O1 without debug info) of the
# library, the CLI and every C++ test; ctest (every gtest but the 1-minute training-convergence
# one, the C99 ABI test, the 8 fuzz corpus replays); then the command-line tests that feed
# `bitttt` hostile input and SIGKILL it mid-write. TSan and the other CLI tests stay in
# test-sanitize. tests/fuzz/README.md has the timings.
ASAN_CI_DIR ?= build-asan-ci
ASAN_CI_SKIP ?= TrainLoop.TinyModelOverfitsTinyText
ASAN_CI_PYTESTS ?= tests/python/test_cli_hostile.py tests/python/test_crash_safety.py
test-sanitize-ci: deps
	@cmake -S . -B $(ASAN_CI_DIR) -DCMAKE_BUILD_TYPE=None -DCMAKE_CXX_FLAGS=-O1 -DCMAKE_C_FLAGS=-O1 \
	  -DBITTTT_SANITIZE=ON -DBITTTT_CUDA=OFF -DBITTTT_WERROR=ON >/dev/null
	@cmake --build $(ASAN_CI_DIR) -j $(JOBS)
	@cd $(ASAN_CI_DIR) && ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 \
	  UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 ctest --output-on-failure -j $(JOBS) \
	  -E '$(ASAN_CI_SKIP)'
	@ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 \
	  BITTTT_BUILD_DIR=$(abspath $(ASAN_CI_DIR)) $(PYTHON) -m pytest -q $(ASAN_CI_PYTESTS)

bench: build
	@$(BITTTT) bench all

# `make bench-llamacpp`: llama.cpp's llama-bench (TQ2_0, TQ1_0, Q4_0) next to `bitttt bench decode
# prompt` at the same shapes on this CPU (bench/README.md). Opt-in, not in `make test`: it downloads
# llama.cpp's source from PyPI into .llamacpp/ (ignored) and builds it (-j2, minutes).
bench-llamacpp: build python
	@BITTTT=$(abspath $(BITTTT)) PYTHON=$(PYTHON) bench/llamacpp/compare.sh all

format:
	@clang-format -i $$(git ls-files '*.cpp' '*.hpp' '*.h' '*.c' '*.cu' '*.cuh')

# Static checks (tools/lint.sh): `make lint-fast` = clang-format check + cppcheck (seconds; CI runs
# it), `make lint` adds clang-tidy on every src/ file (~25 s a file), `make lint-changed BASE=main`
# runs clang-tidy only on the .cpp files changed since BASE.
BASE ?= main
lint-deps:
	$(call apt_install,$(LINT_PACKAGES))
lint-fast: build lint-deps
	@BUILD_DIR=$(BUILD_DIR) tools/lint.sh --fast
lint: build lint-deps
	@BUILD_DIR=$(BUILD_DIR) tools/lint.sh
lint-changed: build lint-deps
	@files=$$(git diff --name-only --diff-filter=d $(BASE) -- 'src/*.cpp' 'tests/*.cpp'); \
	if [ -z "$$files" ]; then BUILD_DIR=$(BUILD_DIR) tools/lint.sh --fast; \
	else BUILD_DIR=$(BUILD_DIR) tools/lint.sh $$files; fi

clean:
	rm -rf $(BUILD_DIR)
