# cargo fuzz targets (fuzz/fuzz_targets/): the head parser, the chunked
# decoder, the PROXY header parser and PATH_INFO's percent-decoding, each
# seeded from the test corpora (fuzz/seed.py). They need the nightly
# toolchain and cargo-fuzz (`cargo install cargo-fuzz --locked`).
#
#   make fuzz-smoke   FUZZ_SMOKE_SECONDS (60) per target, in .ci/run
#   make fuzz         FUZZ_SECONDS (3600) per target; FUZZ_TARGETS picks some
#
# A crash leaves its input in fuzz/artifacts/TARGET/ and fails the run;
# `cargo +nightly fuzz run TARGET fuzz/artifacts/TARGET/crash-...` replays it.

FUZZ_TARGETS ?= head chunked proxy path_info
FUZZ_SMOKE_SECONDS ?= 60
FUZZ_SECONDS ?= 3600

.PHONY: fuzz fuzz-smoke fuzz-build

fuzz-build:
	python3 fuzz/seed.py
	cargo +nightly fuzz build

fuzz-smoke: fuzz-build
	for t in $(FUZZ_TARGETS); do \
		cargo +nightly fuzz run $$t fuzz/corpus/$$t -- -max_total_time=$(FUZZ_SMOKE_SECONDS) -print_final_stats=1 || exit 1; \
	done

fuzz: fuzz-build
	for t in $(FUZZ_TARGETS); do \
		cargo +nightly fuzz run $$t fuzz/corpus/$$t -- -max_total_time=$(FUZZ_SECONDS) -print_final_stats=1 || exit 1; \
	done
