#!/usr/bin/env bash
# closed_loop.sh: the runs behind results/closed_loop/ (README "Closed loop"): tq perplexity on SmolLM2-135M over
# 512 tokens and Gemma-3-270M over 1024 tokens (its 512-token sliding windows act); tq generate on SmolLM2 (three
# chat prompts, 64 greedy tokens) and its passkey retrieval (128-token context, 20 keys per cell); then the plots.
# Usage: bash scripts/closed_loop.sh [smollm2|gemma3|gemma3-3bit|generate|needle|needle-gemma3|gemma3-merge|
#        needle-merge|plot]... (default: smollm2 gemma3 plot). JOBS=N runs N jobs at a time; finished jobs are cached
#        in build/closed_loop/ and skipped on the next call.
set -euo pipefail
cd "$(dirname "$0")/.."
TQ=${TQ:-./tq}
OUT=results/closed_loop
TEXT=$OUT/text.txt   # the three bundled passages of datasets/text/, concatenated
run_model() {
    local name=$1 gguf=$2 tokens=$3 prefill=$4
    # every method at 2-4 bits, fp16 vs quantized prefill, with and without a 32-token recent window
    $TQ perplexity "$gguf" --text $TEXT --tokens "$tokens" --methods int8,kivi,turbo-mse,turbo-prod,qjl,polar \
        --bits 2-4 --prefill "$prefill" --recent 0,32 --per-position $OUT/$name-positions.csv -o $OUT/$name-methods.csv
    # turbo-mse: both rotations, center off/on
    $TQ perplexity "$gguf" --text $TEXT --tokens "$tokens" --methods turbo-mse --bits 2-4 --rotation dense,hadamard \
        --center off,on -o $OUT/$name-knobs.csv
    # the spread over rotation seeds at 3 bits
    $TQ perplexity "$gguf" --text $TEXT --tokens "$tokens" --methods turbo-mse,turbo-prod --bits 3 --seed 0-4 \
        -o $OUT/$name-seeds.csv
}
# A queue of jobs, each one tq invocation writing its own CSV into $CACHE (build/, ignored): a job whose CSV is
# there is skipped (finished rows are kept when a long run is stopped), JOBS of them run at a time (nice'd), and
# merge_csv joins the parts into one table. The bytes do not depend on JOBS (one BLAS thread each).
CACHE=${CACHE:-build/closed_loop}
JOBS=${JOBS:-1}
job() { # job NAME CMD...: run CMD with its -o pointing at $CACHE/NAME.csv unless that file exists
    local name=$1; shift
    [ -e "$CACHE/$name.csv" ] && return 0
    while [ "$(jobs -rp | wc -l)" -ge "$JOBS" ]; do wait -n || true; done
    ( nice "$@" -o "$CACHE/$name.csv" 2>"$CACHE/$name.log" || echo "closed_loop.sh: job '$name' failed" >&2 ) &
}
merge_csv() { # merge_csv OUT PART...: the parts' rows under one header, in the order given (missing parts skipped)
    local out=$1 first=1; shift
    : >"$out.tmp"
    for f in "$@"; do
        [ -e "$f" ] || continue
        if [ $first = 1 ]; then cat "$f" >>"$out.tmp"; first=0; else tail -n +2 "$f" >>"$out.tmp"; fi
    done
    mv "$out.tmp" "$out"
}
# Gemma 3 over 1024 tokens (its sliding windows act), jobs in the order of the questions they answer (a pass costs
# ~20 CPU seconds on one core, the 262k-entry output head: ~80 passes in all): every method at 2-4 bits with
# quantized prefill and no recent window; fp16 prefill and --recent 32 at 3 bits for KIVI and turbo-mse, then for
# the others; the rotations and --center; rotation seeds 0-4 at 3 bits; fp16 prefill and --recent 32 at 2 and 4 bits.
run_gemma() {
    local gguf=$1 c="$CACHE/gemma3"
    mkdir -p "$c"
    local P="$TQ perplexity $gguf --text $TEXT --tokens 1024 --threads 1 --format csv"
    CACHE=$c job base-a $P --methods int8,qjl,kivi,turbo-mse --bits 2-4 --per-position $c/base-a-positions.csv
    CACHE=$c job knobs3-km-fp16 $P --methods kivi,turbo-mse --bits 3 --prefill fp16 --recent 0,32
    CACHE=$c job knobs3-km-recent $P --methods kivi,turbo-mse --bits 3 --recent 32
    CACHE=$c job base-b $P --methods turbo-prod,polar --bits 2-4 --per-position $c/base-b-positions.csv
    CACHE=$c job seeds-mse $P --methods turbo-mse --bits 3 --seed 1-4
    CACHE=$c job seeds-prod-polar $P --methods turbo-prod,polar --bits 3 --seed 1-4
    CACHE=$c job center-mse $P --methods turbo-mse --bits 2-4 --rotation dense --center on
    CACHE=$c job rot-mse $P --methods turbo-mse --bits 2-4 --rotation hadamard --center off,on
    CACHE=$c job knobs3-fp16 $P --methods int8,qjl,turbo-prod,polar --bits 3 --prefill fp16 --recent 0,32
    CACHE=$c job knobs3-recent $P --methods int8,qjl,turbo-prod,polar --bits 3 --recent 32
    CACHE=$c job rot-other $P --methods turbo-prod,polar,qjl --bits 2-4 --rotation hadamard
    CACHE=$c job knobs24-fp16 $P --methods kivi,turbo-mse,turbo-prod,polar --bits 2,4 --prefill fp16 --recent 0,32
    CACHE=$c job knobs24-recent $P --methods kivi,turbo-mse,turbo-prod,polar --bits 2,4 --recent 32
    wait
    merge_gemma
}
# the finished parts into results/ (also alone: `closed_loop.sh gemma3-merge` after a run stopped early)
merge_gemma() {
    local c="$CACHE/gemma3" parts=(base-a base-b knobs3-km-fp16 knobs3-km-recent knobs3-fp16 knobs3-recent seeds-mse
                                   seeds-prod-polar rot-mse center-mse rot-other knobs24-fp16 knobs24-recent)
    local files=()
    for p in "${parts[@]}"; do files+=("$c/$p.csv"); done
    merge_csv $OUT/gemma3-methods.csv "${files[@]}"
    merge_csv $OUT/gemma3-positions.csv $c/base-a-positions.csv $c/base-b-positions.csv
}
# Passkey retrieval heat map, one job per depth (each computes its own reference rows), 20 keys per cell: the fp16
# cache, int8, turbo-mse and KIVI at 2-4 bits (KIVI 3 costs what a second job's repeated reference rows would)
run_needle() {
    local name=$1 gguf=$2 ctx=$3 c="$CACHE/$1-needle"
    mkdir -p "$c"
    for d in ${DEPTHS:-0 50 100 25 75}; do
        CACHE=$c job d$d $TQ generate "$gguf" --needle --context "$ctx" --depths $d --trials 20 --threads 1 \
            --methods int8,turbo-mse,kivi --bits 2,3,4 --format csv
    done
    wait
    merge_needle "$name"
}
merge_needle() {
    local c="$CACHE/$1-needle" parts=()
    for d in 0 25 50 75 100; do parts+=("$c/d$d.csv"); done
    merge_csv $OUT/$1-needle.csv "${parts[@]}"
}
for what in ${@:-smollm2 gemma3 plot}; do
    case $what in
    smollm2) run_model smollm2 "$(bash scripts/get_models.sh smollm2)" 512 fp16,quantized ;;
    gemma3) run_gemma "$(bash scripts/get_models.sh gemma3)" ;;
    # the 3-bit slice of gemma3's first run alone (what fits in half an hour of a shared 2-core machine)
    gemma3-3bit) $TQ perplexity "$(bash scripts/get_models.sh gemma3)" --text $TEXT --tokens 1024 --threads 1 \
        --format csv --methods kivi,turbo-mse,turbo-prod --bits 3 --per-position $OUT/gemma3-3bit-positions.csv \
        -o $OUT/gemma3-3bit.csv ;;
    generate)
        $TQ generate "$(bash scripts/get_models.sh smollm2)" --prompts $OUT/prompts.txt --chat --tokens 64 \
            --methods int8,kivi,turbo-mse,turbo-prod --bits 2-4 --per-position $OUT/smollm2-generate-positions.csv \
            -o $OUT/smollm2-generate.csv ;;
    needle) run_needle smollm2 "$(bash scripts/get_models.sh smollm2)" 128 ;;
    needle-gemma3) run_needle gemma3 "$(bash scripts/get_models.sh gemma3)" 160 ;;
    gemma3-merge) merge_gemma ;;
    needle-merge) merge_needle smollm2 ;;
    plot) python3 scripts/plot_closed_loop.py $OUT ;;
    esac
done
