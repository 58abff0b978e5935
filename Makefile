# The two commands: `make run` (the example on the embedded default) and `make test` (everything,
# also under AddressSanitizer and UndefinedBehaviorSanitizer). Both install missing Debian
# packages first, then configure, build and run.
BUILD_DIR      ?= build
SANITIZE_DIR   ?= build-sanitize
FUZZ_DIR       ?= build-fuzz
JOBS           ?= $(shell nproc)
CMAKE_ARGS     ?=
CTEST_ARGS     ?= --output-on-failure --timeout 900 -j $(JOBS)

.PHONY: all deps configure build run test test-release test-sanitize test-fuzz bench image clean

all: build

deps:
	@scripts/install-deps.sh

# Debug information as line tables (-g1): enough for stack traces, sanitizer reports and perf,
# and about a sixth less compile time than full -g on CI's two cores.
DEBUG_INFO     ?= -g1

configure: deps
	cmake -S . -B $(BUILD_DIR) -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DFANOUT_WERROR=ON \
	  "-DCMAKE_CXX_FLAGS_RELWITHDEBINFO=-O2 $(DEBUG_INFO) -DNDEBUG" "-DCMAKE_C_FLAGS_RELWITHDEBINFO=-O2 $(DEBUG_INFO) -DNDEBUG" $(CMAKE_ARGS)

build: configure
	cmake --build $(BUILD_DIR) -j $(JOBS)

# Builds the example and what it links, nothing else: the test suite is `make test`'s.
run: configure
	cmake --build $(BUILD_DIR) -j $(JOBS) --target fanout_lookups
	$(BUILD_DIR)/examples/fanout-lookups

test: test-release test-sanitize test-fuzz

test-release: build
	cd $(BUILD_DIR) && ctest $(CTEST_ARGS)

# Debug build with ASan and UBSan; examples and benchmarks are left out (nothing to check there
# that the release run does not), the package test too (a sanitized install cannot be linked by
# an ordinary consumer).
test-sanitize: deps
	cmake -S . -B $(SANITIZE_DIR) -G Ninja -DCMAKE_BUILD_TYPE=Debug -DFANOUT_WERROR=ON \
	  "-DCMAKE_CXX_FLAGS_DEBUG=$(DEBUG_INFO)" "-DCMAKE_C_FLAGS_DEBUG=$(DEBUG_INFO)" \
	  -DFANOUT_SANITIZE=address,undefined -DFANOUT_BUILD_EXAMPLES=OFF -DFANOUT_BUILD_BENCH=OFF $(CMAKE_ARGS)
	cmake --build $(SANITIZE_DIR) -j $(JOBS)
	cd $(SANITIZE_DIR) && ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1 \
	  ctest $(CTEST_ARGS)

# libFuzzer targets for every decoder a peer can reach (tests/fuzz, docs/security-fuzzing.md), each
# run for FANOUT_FUZZ_SECONDS (8) from the seed corpus; clang builds only the libraries they need.
test-fuzz: deps
	cmake -S . -B $(FUZZ_DIR) -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCMAKE_C_COMPILER=clang \
	  -DCMAKE_CXX_COMPILER=clang++ -DFANOUT_FUZZ=ON -DFANOUT_SANITIZE=address,undefined,fuzzer-no-link \
	  -DFANOUT_BUILD_TESTS=OFF -DFANOUT_BUILD_EXAMPLES=OFF -DFANOUT_BUILD_BENCH=OFF $(CMAKE_ARGS)
	cmake --build $(FUZZ_DIR) -j $(JOBS) --target fanout_fuzzers
	cd $(FUZZ_DIR) && ctest $(CTEST_ARGS) -L fuzz

# The container image as an OCI archive, without Docker or Podman (deploy/image/build-image.sh):
# $(BUILD_DIR)/deploy-image/fanout-VERSION.oci.tar.
image: build
	deploy/image/build-image.sh $(BUILD_DIR)

bench: build
	$(BUILD_DIR)/bench/fanout-bench --peers

clean:
	rm -rf $(BUILD_DIR) $(SANITIZE_DIR) $(FUZZ_DIR)
