# qvac — build, test, demo.
#   make            build/qvac
#   make test       the Criterion suite (then the same under ASan+UBSan)
#   make asan       the suite under AddressSanitizer + UndefinedBehaviorSanitizer
#   make demo       fine-tune the built-in model on the built-in data (before/after, compare)
#   make clean
# Every target but clean runs scripts/deps.sh first (quiet and quick when all
# is installed), before the flags are read: see "Phase 1" below.

VERSION := 0.1.0
CC      ?= cc
PKGS    := OpenCL vulkan jansson libxxhash sqlite3 libzmq msgpack libsodium libpcre2-8 libmicrohttpd
GLSLC   ?= glslc

BUILD   ?= build
SAN     ?=
# V=1 shows the full commands.
ifeq ($(V),1)
Q :=
else
Q := @
endif

# WITH_OPENCL=0 / WITH_VULKAN=0 build without that backend.
WITH_OPENCL ?= 1
WITH_VULKAN ?= 1
QV_DEFS :=
LIB_SRC := $(wildcard common/*.c kernels/*.c kernels/ref/*.c formats/*.c autotune/*.c train/*.c scheduler/*.c worker/*.c)
CL_SRC  :=
COMP_SRC:=
ifeq ($(WITH_OPENCL),1)
LIB_SRC += $(wildcard kernels/opencl/*.c)
CL_SRC  := $(wildcard kernels/opencl/*.cl)
else
QV_DEFS += -DQV_NO_OPENCL
PKGS    := $(filter-out OpenCL,$(PKGS))
endif
ifeq ($(WITH_VULKAN),1)
LIB_SRC += $(wildcard kernels/vulkan/*.c)
COMP_SRC:= $(wildcard kernels/vulkan/*.comp)
else
QV_DEFS += -DQV_NO_VULKAN
PKGS    := $(filter-out vulkan,$(PKGS))
endif

# ---- Phase 1: dependencies first --------------------------------------------
# The flags below come from pkg-config when make reads this file, so the
# packages must exist before then: a plain `make ...` only runs
# scripts/deps.sh (install what is missing, or stop with one message naming
# it, before anything compiles) and then the same goals again in a sub-make
# with QV_DEPS_CHECKED=1, which reads the flags. Sub-makes inherit it.
ifeq ($(QV_DEPS_CHECKED),)
QV_GOALS := $(or $(MAKECMDGOALS),all)
.PHONY: $(QV_GOALS) qv-deps
$(QV_GOALS): qv-deps
	@:
qv-deps:
ifneq ($(filter-out clean,$(QV_GOALS)),)
	@QV_PKGS="$(PKGS)" bash scripts/deps.sh
endif
	@$(MAKE) --no-print-directory QV_DEPS_CHECKED=1 $(MAKECMDGOALS)

else
# ---- Phase 2: the build -----------------------------------------------------
CLI_SRC := $(wildcard cli/*.c)

PKG_CFLAGS := $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
PKG_LIBS   := $(shell pkg-config --libs $(PKGS) 2>/dev/null)

OPT     ?= -O2 -g
CFLAGS  += $(OPT) -std=c11 -D_POSIX_C_SOURCE=200809L -Wall -Wextra -Werror \
           -Wshadow -Wstrict-prototypes -MMD -MP -I. -I$(BUILD)/gen \
           -DQV_VERSION=\"$(VERSION)\" -DCL_TARGET_OPENCL_VERSION=120 \
           $(QV_DEFS) $(PKG_CFLAGS) $(SAN)
LDLIBS  += $(PKG_LIBS) -lm -lpthread
LDFLAGS += $(SAN)

SPV     := $(patsubst kernels/vulkan/%.comp,$(BUILD)/spv/%.spv,$(COMP_SRC))
TEST_SRC:= $(wildcard tests/test_*.c)
TESTS   := $(patsubst tests/%.c,$(BUILD)/tests/%,$(TEST_SRC))

# Objects depend on the flags they were built with: changing WITH_*, SAN or
# OPT rebuilds what it must.
FLAGS_STAMP := $(BUILD)/flags.stamp
FLAGS_NOW := $(CC) $(CFLAGS) $(LDFLAGS) $(LDLIBS) $(CL_SRC) $(COMP_SRC)
$(shell mkdir -p $(BUILD); echo '$(FLAGS_NOW)' | cmp -s - $(FLAGS_STAMP) || echo '$(FLAGS_NOW)' > $(FLAGS_STAMP))

LIB_OBJ := $(patsubst %.c,$(BUILD)/obj/%.o,$(LIB_SRC)) $(BUILD)/obj/gen/embedded_data.o
CLI_OBJ := $(patsubst %.c,$(BUILD)/obj/%.o,$(CLI_SRC))
# Sanitizer builds keep drivers mapped until exit so leak reports can name
# them (see tests/support/keep_drivers_loaded.c).
ifneq ($(SAN),)
CLI_OBJ += $(BUILD)/obj/tests/support/keep_drivers_loaded.o
TEST_EXTRA := $(BUILD)/obj/tests/support/keep_drivers_loaded.o
endif
LIB     := $(BUILD)/libqvac.a

.PHONY: all deps test asan check-asan demo clean bench fuzz
all: $(BUILD)/qvac

# Phase 1 has run scripts/deps.sh already.
deps:
	@:

$(BUILD)/qvac: $(CLI_OBJ) $(LIB) $(FLAGS_STAMP)
	@$(if $(Q),echo "  LD      $@")
	$(Q)$(CC) $(LDFLAGS) -o $@ $(CLI_OBJ) $(LIB) $(LDLIBS)

$(LIB): $(LIB_OBJ)
	@rm -f $@
	$(Q)ar rcs $@ $^

$(BUILD)/obj/%.o: %.c $(FLAGS_STAMP)
	@mkdir -p $(dir $@)
	@$(if $(Q),echo "  CC      $<")
	$(Q)$(CC) $(CFLAGS) -c -o $@ $<

# Embedded kernel sources: OpenCL C as text, GLSL compiled to SPIR-V.
$(BUILD)/tools/embed: tools/embed.c $(FLAGS_STAMP)
	@mkdir -p $(dir $@)
	$(CC) -O1 -o $@ $<

$(BUILD)/spv/%.spv: kernels/vulkan/%.comp $(wildcard kernels/vulkan/*.glsl)
	@mkdir -p $(dir $@)
	@$(if $(Q),echo "  GLSLC   $<")
	$(Q)$(GLSLC) --target-env=vulkan1.1 -O -Ikernels/vulkan -o $@ $<

# The built-in model, fine-tuning data and pretraining corpus (docs/data.md),
# each only if present.
DATA_EMBED := $(wildcard data/model/qvac-tiny.gguf data/finetune/pirate.jsonl data/corpus/stories.txt)
DATA_NAME = $(if $(findstring qvac-tiny,$(1)),model/qvac-tiny.gguf,data/$(notdir $(1)))

$(BUILD)/gen/embedded_data.c: $(BUILD)/tools/embed $(CL_SRC) $(SPV) $(DATA_EMBED) $(FLAGS_STAMP)
	@mkdir -p $(dir $@)
	$(Q)$(BUILD)/tools/embed $@ \
	  $(foreach f,$(CL_SRC),opencl/$(notdir $(f))=$(f)) \
	  $(foreach f,$(SPV),vulkan/$(notdir $(f))=$(f)) \
	  $(foreach f,$(DATA_EMBED),$(call DATA_NAME,$(f))=$(f))

$(BUILD)/obj/gen/embedded_data.o: $(BUILD)/gen/embedded_data.c
	@mkdir -p $(dir $@)
	$(Q)$(CC) $(CFLAGS) -Wno-overlength-strings -c -o $@ $<

# Tests: one Criterion binary per module.
$(BUILD)/tests/%: tests/%.c $(LIB) $(TEST_EXTRA) $(FLAGS_STAMP)
	@mkdir -p $(dir $@)
	@$(if $(Q),echo "  TEST-LD $@")
	$(Q)$(CC) $(CFLAGS) -o $@ $< $(TEST_EXTRA) $(LIB) $(LDFLAGS) $(LDLIBS) -lcriterion

# the CLI's option parser is tested on its own
$(BUILD)/tests/test_cli: $(BUILD)/obj/cli/args.o
$(BUILD)/tests/test_cli: TEST_EXTRA += $(BUILD)/obj/cli/args.o

test: $(BUILD)/qvac $(TESTS)
	@set -e; export QVAC_BIN=$(BUILD)/qvac; \
	for t in $(TESTS); do echo "== $$t"; $$t --jobs 1 --short-filename; done
ifeq ($(SAN),)
	@$(MAKE) --no-print-directory asan
endif

ASAN_FLAGS := -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=all
asan check-asan:
	@$(MAKE) --no-print-directory BUILD=build-asan SAN="$(ASAN_FLAGS)" OPT="-O1 -g" \
	  build-asan/qvac $(patsubst $(BUILD)/%,build-asan/%,$(TESTS))
	@set -e; export QVAC_BIN=build-asan/qvac ASAN_OPTIONS=detect_leaks=1 \
	  LSAN_OPTIONS=suppressions=$(CURDIR)/tests/lsan.supp:print_suppressions=0 \
	  UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1; \
	for t in $(patsubst $(BUILD)/%,build-asan/%,$(TESTS)); do \
	  echo "== $$t (asan+ubsan)"; \
	  $$t --jobs 1 --short-filename > $$t.log 2>&1 && rc=0 || rc=$$?; \
	  grep -v '^\[----\]   $$' $$t.log | tail -n 25; \
	  if [ $$rc -ne 0 ] || grep -qE 'Sanitizer|runtime error' $$t.log; then \
	    echo "FAILED under sanitizers: $$t (log: $$t.log)"; exit 1; fi; \
	done; \
	echo "== build-asan/qvac check (asan+ubsan)"; \
	build-asan/qvac check > build-asan/check.log 2>&1 && rc=0 || rc=$$?; \
	cat build-asan/check.log; \
	if [ $$rc -ne 0 ] || grep -qE 'Sanitizer|runtime error' build-asan/check.log; then \
	  echo "FAILED under sanitizers: qvac check"; exit 1; fi

# libFuzzer targets (clang): every parser of untrusted bytes has one. A
# target's seed inputs come from real files (tests/fuzz/seeds.c writes them
# into build-fuzz/seeds/NAME/ first) and from tests/fuzz/corpus/NAME/ (read,
# never written: new inputs go to build-fuzz/corpus/NAME); it may have a
# dictionary
# tests/fuzz/NAME.dict, libFuzzer options in tests/fuzz/NAME.options (one
# line, e.g. -max_len for targets whose real inputs are large) and more
# sources and libraries in tests/fuzz/NAME.src (one line: files, then
# pkg-config names after "--").
FUZZ_SECONDS ?= 30
FUZZ_SRC := $(wildcard tests/fuzz/fuzz_*.c)
FUZZ_LIBSRC := common/status.c common/half.c common/file.c kernels/ternary.c $(wildcard formats/*.c) autotune/cache.c train/model.c train/model_io.c kernels/mem_tag.c train/bench_json.c
fuzz: $(BUILD)/fuzz_seeds
	@mkdir -p build-fuzz/corpus
	@rm -rf build-fuzz/seeds && $(BUILD)/fuzz_seeds build-fuzz/seeds
	@set -e; for f in $(FUZZ_SRC); do n=$$(basename $$f .c); \
	  extra=; pkgs=; if [ -f tests/fuzz/$$n.src ]; then \
	    line=$$(cat tests/fuzz/$$n.src); extra=$${line%%--*}; \
	    case "$$line" in *--*) pkgs=$${line#*--};; esac; fi; \
	  clang -std=c11 -D_POSIX_C_SOURCE=200809L -g -O1 -I. -Wall -Wextra -Werror \
	    -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all \
	    -o build-fuzz/$$n $$f $(FUZZ_LIBSRC) $$extra -lm \
	    $$(pkg-config --libs sqlite3 jansson msgpack libpcre2-8 $$pkgs) -lpthread; \
	  mkdir -p build-fuzz/corpus/$$n; \
	  echo "== $$n ($(FUZZ_SECONDS) s)"; \
	  seeds=; [ -d tests/fuzz/corpus/$$n ] && seeds=tests/fuzz/corpus/$$n; \
	  [ -d build-fuzz/seeds/$$n ] && seeds="$$seeds build-fuzz/seeds/$$n"; \
	  dict=; [ -f tests/fuzz/$$n.dict ] && dict=-dict=tests/fuzz/$$n.dict; \
	  opts=-max_len=4096; [ -f tests/fuzz/$$n.options ] && opts=$$(cat tests/fuzz/$$n.options); \
	  build-fuzz/$$n -max_total_time=$(FUZZ_SECONDS) $$opts -print_final_stats=0 $$dict \
	    build-fuzz/corpus/$$n $$seeds > build-fuzz/$$n.log 2>&1 || { tail -40 build-fuzz/$$n.log; exit 1; }; \
	  tail -1 build-fuzz/$$n.log; done

# The main job end to end on the embedded defaults (scripts/demo.sh).
demo: all
	@BUILD=$(BUILD) bash scripts/demo.sh

# Autotuner benchmark (benchmarks/README.md): the exhaustive search on every
# device, strategies replayed against it, CLBlast SGEMM beside the tuned
# kernels. Tens of minutes on CPU devices; interrupted runs resume.
.PHONY: bench-tune
bench-tune: all $(BUILD)/bench_tune
	$(BUILD)/bench_tune --db $(BUILD)/bench/tune-bench.db --out benchmarks/reports/autotune.md

$(BUILD)/bench_tune: benchmarks/bench_tune.c benchmarks/clblast_peer.c $(LIB) $(FLAGS_STAMP)
	@mkdir -p $(dir $@)
	@$(if $(Q),echo "  LD      $@")
	$(Q)$(CC) $(CFLAGS) -o $@ $< benchmarks/clblast_peer.c $(LIB) $(LDFLAGS) $(LDLIBS) $$(pkg-config --libs clblast)

# Tokenizer throughput on one core (benchmarks/bench_tok.c):
#   make bench-tok VOCABS="ggml-vocab-gpt-2.gguf ggml-vocab-llama-spm.gguf ..."
.PHONY: bench-tok
bench-tok: all $(BUILD)/bench_tok
	$(BUILD)/bench_tok $(VOCABS)

$(BUILD)/bench_tok: benchmarks/bench_tok.c $(LIB) $(FLAGS_STAMP)
	@mkdir -p $(dir $@)
	@$(if $(Q),echo "  LD      $@")
	$(Q)$(CC) $(CFLAGS) -o $@ $< $(LIB) $(LDFLAGS) $(LDLIBS)

# Synthetic models of real shapes and vocabularies (tools/synth_model.c).
$(BUILD)/synth_model: tools/synth_model.c $(LIB) $(FLAGS_STAMP)
	@mkdir -p $(dir $@)
	@$(if $(Q),echo "  LD      $@")
	$(Q)$(CC) $(CFLAGS) -o $@ $< $(LIB) $(LDFLAGS) $(LDLIBS)

# Training benchmark (benchmarks/README.md): LoRA fine-tunes with ternary
# and with f16 weights (built-in and BitNet-shaped models, every device but
# ref), MFU, the kernel table beside ggml's CPU kernels
# (QVAC_PEER_GGML=/path/to/llama.cpp; skipped, and said, without), CLBlast's
# GEMM on OpenCL devices and ggml-vulkan's mul_mat on Vulkan ones, goals:
# training.md, training.json and SVG charts from one run, under 45 minutes.
.PHONY: bench-train
bench-train: all $(BUILD)/bench_train
	$(BUILD)/bench_train --out benchmarks/reports/training.md $(if $(QVAC_PEER_GGML),--peer '$(QVAC_PEER_GGML)')

$(BUILD)/bench_train: benchmarks/bench_train.c benchmarks/clblast_peer.c $(LIB) $(FLAGS_STAMP)
	@mkdir -p $(dir $@)
	@$(if $(Q),echo "  LD      $@")
	$(Q)$(CC) $(CFLAGS) -o $@ benchmarks/bench_train.c benchmarks/clblast_peer.c $(LIB) \
	  $(LDFLAGS) $(LDLIBS) $$(pkg-config --libs clblast)

# Scheduler benchmark (benchmarks/README.md): durable submissions per second,
# dispatch latency and CPU with many heartbeating workers, insecure and
# CURVE, against the real scheduler on loopback. About two minutes.
.PHONY: bench-sched
bench-sched: all $(BUILD)/bench_sched
	$(BUILD)/bench_sched --out benchmarks/reports/scheduler.md

$(BUILD)/fuzz_seeds: tests/fuzz/seeds.c $(LIB) $(FLAGS_STAMP)
	@mkdir -p $(dir $@)
	@$(if $(Q),echo "  LD      $@")
	$(Q)$(CC) $(CFLAGS) -o $@ $< $(LIB) $(LDFLAGS) $(LDLIBS)

$(BUILD)/bench_sched: benchmarks/bench_sched.c $(LIB) $(FLAGS_STAMP)
	@mkdir -p $(dir $@)
	@$(if $(Q),echo "  LD      $@")
	$(Q)$(CC) $(CFLAGS) -o $@ $< $(LIB) $(LDFLAGS) $(LDLIBS)

clean:
	rm -rf build build-asan build-fuzz

-include $(shell find $(BUILD) build-asan -name '*.d' 2>/dev/null)

endif
