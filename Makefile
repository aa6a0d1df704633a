# The two commands: `make run` and `make test`. Both install what is missing.
BUILD      ?= build
TESTBUILD  ?= build/test
JOBS       ?= $(shell nproc 2>/dev/null || echo 2)
LISTEN     ?= 127.0.0.1:8080
SLOTS      ?= 8

.PHONY: all run test deps build build-test soak bench clean

all: build

deps:
	@sh tools/install-deps.sh

build: deps
	@cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=RelWithDebInfo -DSN_TESTS=OFF >/dev/null
	@cmake --build $(BUILD) -j $(JOBS)

# The main job on its embedded default: 8 slots on 127.0.0.1:8080.
run: build
	$(BUILD)/bin/slotnet-web --listen $(LISTEN) --slots $(SLOTS) --root www

build-test:
	@sh tools/install-deps.sh test
	@cmake -S . -B $(TESTBUILD) -DCMAKE_BUILD_TYPE=Debug -DSN_SANITIZE=ON -DSN_TESTS=ON >/dev/null
	@cmake --build $(TESTBUILD) -j $(JOBS)

# The whole suite under ASan+UBSan.
test: build-test
	cd $(TESTBUILD) && ctest --output-on-failure -j $(JOBS)

# Longer simulator soak: thousands of seeds (not part of `make test`).
SOAK_SEEDS ?= 5000
soak: build-test
	$(TESTBUILD)/bin/sim_soak --seeds $(SOAK_SEEDS)

# Figures, not pass/fail: slotnet against a bare epoll peer, then slotnet-web
# against nginx (churn-max, seed-fast, upload-alone), each in the same run.
# BENCH_DURATION=S shortens churn-max and seed-fast.
bench: build
	$(BUILD)/bin/loopback_churn --requests 20000 --clients 4
	BUILD=$(BUILD) bash bench/vs-nginx.sh

clean:
	rm -rf $(BUILD)

# libFuzzer harnesses (fuzz/, clang): each target FUZZ_SECONDS from its corpus;
# new inputs go to build/fuzz/new/ (FUZZ_MERGE=1 merges them into fuzz/corpus/),
# crashes to build/fuzz/findings/; a summary line per target.
FUZZ_SECONDS ?= 60
.PHONY: fuzz
fuzz:
	@sh tools/install-deps.sh test
	@FUZZ_SECONDS=$(FUZZ_SECONDS) bash fuzz/run.sh fuzz
