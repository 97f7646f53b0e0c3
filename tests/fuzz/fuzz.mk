# fuzz.mk (included by the Makefile): `make fuzz` builds the libFuzzer harnesses tests/fuzz/fuzz_*.c with clang
# (ASan + UBSan; libtq's sources compiled again with -fsanitize=fuzzer-no-link into build/fuzz, OpenMP off) and runs
# each for FUZZ_SECONDS on its seed corpus tests/fuzz/corpus/<name>/ through tests/fuzz/run.sh, which sorts crashes
# into tq's (a failure) and libhdf5's own (recorded). FUZZ_CC=clang-NN picks another clang.
FUZZ_CC ?= clang-14
FUZZ_SECONDS ?= 60
FUZZ_DIR := build/fuzz
FUZZ_CFLAGS := -std=c11 -D_DEFAULT_SOURCE -g -O1 -fno-omit-frame-pointer -fsanitize=address,undefined \
               -fno-sanitize-recover=undefined -Ilib -Icmd $(PKG_CFLAGS) -DTQ_HAVE_OPENMP=0 -DTQ_HAVE_CUDA=0 \
               -Wno-unknown-pragmas
FUZZ_LIB_OBJ := $(patsubst lib/%.c,$(FUZZ_DIR)/lib/%.o,$(LIB_SRC))
FUZZ_BIN := $(patsubst tests/fuzz/%.c,$(FUZZ_DIR)/%,$(wildcard tests/fuzz/fuzz_*.c))

$(FUZZ_DIR)/lib/%.o: lib/%.c $(wildcard lib/*.h)
	@mkdir -p $(@D)
	$(FUZZ_CC) $(FUZZ_CFLAGS) -fsanitize=fuzzer-no-link -c $< -o $@
# the option parsers die() with exit(2): the harness turns exit into a longjmp back to the fuzzer loop
$(FUZZ_DIR)/cmd_util.o: cmd/cmd_util.c cmd/cmd.h
	@mkdir -p $(@D)
	$(FUZZ_CC) $(FUZZ_CFLAGS) -fsanitize=fuzzer-no-link -Dexit=tq_fuzz_exit -c $< -o $@
$(FUZZ_DIR)/fuzz_%: tests/fuzz/fuzz_%.c tests/fuzz/fuzz_common.h $(FUZZ_LIB_OBJ) $(FUZZ_DIR)/cmd_util.o
	$(FUZZ_CC) $(FUZZ_CFLAGS) -fsanitize=fuzzer $< $(FUZZ_LIB_OBJ) $(if $(filter options,$*),$(FUZZ_DIR)/cmd_util.o) \
	    $(PKG_LIBS) -lm -lpthread -o $@

.PHONY: fuzz fuzz-build
fuzz-build: $(FUZZ_BIN)
fuzz: deps fuzz-build
	@FUZZ_SECONDS=$(FUZZ_SECONDS) bash tests/fuzz/run.sh $(FUZZ_BIN)
# the objects are intermediate to make's pattern chain: keep them so a second build links only
.SECONDARY: $(FUZZ_LIB_OBJ) $(FUZZ_DIR)/cmd_util.o
