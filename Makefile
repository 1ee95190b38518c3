# Thin wrapper around meson and the lab, so a newcomer types one command.
# Every target that builds or runs installs what it needs first.

BUILD      ?= build
ASAN_BUILD ?= build-asan
FUZZ_BUILD ?= build-fuzz
# The benchmarks' build: with their hooks on the control socket (bench/).
BENCH_BUILD ?= build-bench
# Seconds each fuzz target runs in `make check` (and `make fuzz FUZZ_SECONDS=600`).
FUZZ_SECONDS ?= 10
# Warnings are errors in CI (CI=true), warnings elsewhere.
WERROR     ?= $(if $(filter true 1 yes,$(CI)),true,false)
PYTHON     ?= /usr/bin/python3
# Parallel jobs of ninja: the machines this runs on have two cores.
JOBS       ?= 2
LAB        := lab/ettm-lab
FUZZ_TARGETS := config proto command openflow pmp trust join tls policy

.PHONY: all deps build lab lab-down check check-slow unit asan fuzz lab-test chaos chaos-smoke bench-build bench-smoke format clean

all: build

deps:
	@scripts/install-deps.sh

# meson setup once; later runs only update options.
# $(call) splits its arguments at commas: spell them $(comma) inside one.
comma := ,

define setup
	@if [ ! -d $(1)/meson-private ]; then \
		$(2) meson setup $(1) $(3); \
	else \
		meson configure $(1) $(3); \
	fi
endef

build: deps
	$(call setup,$(BUILD),,-Dwerror=$(WERROR))
	ninja -C $(BUILD) -j$(JOBS)

# The lab network of DESIGN.md with the default 4 hosts; stays up.
lab: build
	$(LAB) up

lab-down:
	$(LAB) down

unit: build
	meson test -C $(BUILD) --suite unit --suite fuzz --print-errorlogs

# The same unit tests and corpus replays under AddressSanitizer and UBSan.
asan: deps
	$(call setup,$(ASAN_BUILD),,-Dwerror=$(WERROR) -Db_sanitize=address$(comma)undefined -Db_lundef=false)
	ninja -C $(ASAN_BUILD) -j$(JOBS)
	UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 \
		meson test -C $(ASAN_BUILD) --suite unit --suite fuzz --print-errorlogs

# libFuzzer on each target for FUZZ_SECONDS, from a copy of the checked-in
# corpus (new inputs land in the build directory, not in the source tree).
fuzz: deps
	$(call setup,$(FUZZ_BUILD),CC=clang,-Dfuzz=true -Db_sanitize=address$(comma)undefined -Db_lundef=false -Dc_args=-fsanitize=fuzzer-no-link)
	ninja -C $(FUZZ_BUILD) -j$(JOBS)
	@for t in $(FUZZ_TARGETS); do \
		mkdir -p $(FUZZ_BUILD)/corpus-$$t && \
		cp -n tests/fuzz/corpus/$$t/* $(FUZZ_BUILD)/corpus-$$t/ && \
		echo "fuzz-$$t: $(FUZZ_SECONDS) s" && \
		UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 \
		$(FUZZ_BUILD)/tests/fuzz/fuzz-$$t -max_total_time=$(FUZZ_SECONDS) \
			-artifact_prefix=$(FUZZ_BUILD)/ -print_final_stats=1 \
			$(FUZZ_BUILD)/corpus-$$t >$(FUZZ_BUILD)/fuzz-$$t.log 2>&1; \
		status=$$?; tail -n 12 $(FUZZ_BUILD)/fuzz-$$t.log; \
		[ $$status -eq 0 ] || { echo "fuzz-$$t failed: see $(FUZZ_BUILD)/fuzz-$$t.log"; exit 1; }; \
	done

# Integration tests in namespaces (root; skipped with a reason otherwise).
lab-test: build
	$(PYTHON) -m pytest -v --durations=15 -p no:cacheprovider tests/lab

# The chaos test (tests/chaos): a lab of its own under random faults, the
# check that no acknowledged write is lost. `make chaos SECONDS=600 SEED=n`
# runs it long (SEED: random when unset); the report lands in
# build/chaos/seed-SEED/report.md.
SECONDS ?= 600
chaos: build
	$(PYTHON) tests/chaos/chaos.py --seconds $(SECONDS) --hosts 5 --build-dir $(BUILD) \
		$(if $(SEED),--seed $(SEED))

# The short seeded run of `make check` (a few minutes; skipped with the
# reason when not root).
chaos-smoke: build
	ETTM_BUILD=$(abspath $(BUILD)) $(PYTHON) -m pytest -v -rs -p no:cacheprovider tests/chaos


# The benchmarks' build, as bench/benchlib.py expects it.
bench-build: deps
	$(call setup,$(BENCH_BUILD),,-Dwerror=$(WERROR) -Dbench_hooks=true)
	ninja -C $(BENCH_BUILD) -j$(JOBS)

# A short run of every benchmark under bench/ (root; skipped with a reason
# otherwise): one that no longer runs is a broken feature. Results go to
# $(BENCH_BUILD)/bench-smoke-*.log, never to bench/RESULTS.md.
bench-smoke: $(if $(filter 0,$(shell id -u)),bench-build)
	BENCH_BUILD=$(BENCH_BUILD) PYTHON=$(PYTHON) scripts/bench-smoke.sh


check: unit asan fuzz lab-test chaos-smoke bench-smoke

# What is too long for every run: the scale test at 64 hosts as well as 16
# (tests/lab/test_scale.py).
check-slow: build
	ETTM_SLOW=1 $(PYTHON) -m pytest -v -p no:cacheprovider tests/lab/test_scale.py

format:
	clang-format -i $$(git ls-files '*.c' '*.h')

clean:
	rm -rf $(BUILD) $(ASAN_BUILD) $(FUZZ_BUILD) $(BENCH_BUILD)
