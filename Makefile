# Bit-TTT engine: the two README commands (`make run`, `make test`) and their helpers.
BUILD_DIR ?= build
BUILD_TYPE ?= Release
JOBS ?= $(shell nproc)
PYTHON ?= python3
PROMPT ?= Once upon a time

APT_PACKAGES := cmake g++ make pkg-config libcli11-dev nlohmann-json3-dev libfmt-dev libpcre2-dev \
                zlib1g-dev libxxhash-dev libomp-dev libgtest-dev libgmock-dev libbenchmark-dev
PIP_PACKAGES := numpy pytest safetensors tokenizers nanobind scikit-build-core matplotlib

BITTTT := $(BUILD_DIR)/bitttt

.PHONY: all deps build python run test bench clean format

all: build

# Idempotent: installs only what is missing, quietly.
deps:
	@missing=$$(for p in $(APT_PACKAGES); do dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q 'ok installed' || echo $$p; done); \
	if [ -n "$$missing" ]; then \
	  echo "deps: installing apt packages:" $$missing; \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq $$missing >/dev/null; \
	fi
	@$(PYTHON) tools/check_pip.py $(PIP_PACKAGES) || $(PYTHON) -m pip install -q $(PIP_PACKAGES)

build: deps
	@cmake -S . -B $(BUILD_DIR) -DCMAKE_BUILD_TYPE=$(BUILD_TYPE) -DBITTTT_WERROR=ON >/dev/null
	@cmake --build $(BUILD_DIR) -j $(JOBS)

# Until the default model ships, `make run` runs the most complete demo the project has.
run: build
	@$(BITTTT) demo

# The Python package (`import bitttt`, `import cortex_rust`), built by scikit-build-core.
python: deps
	@$(PYTHON) -m pip install -q --no-build-isolation --root-user-action=ignore .

test: build python
	@cd $(BUILD_DIR) && ctest --output-on-failure -j $(JOBS)
	@BITTTT_BUILD_DIR=$(abspath $(BUILD_DIR)) $(PYTHON) -m pytest -q tests/python

bench: build
	@$(BITTTT) bench all

format:
	@clang-format -i $$(git ls-files '*.cpp' '*.hpp' '*.h' '*.c' '*.cu' '*.cuh')

clean:
	rm -rf $(BUILD_DIR)
