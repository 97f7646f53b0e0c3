#!/usr/bin/env bash
# closed_loop.sh: the runs behind results/closed_loop/ (README "Closed loop"): tq perplexity on SmolLM2-135M over
# 512 tokens and Gemma-3-270M over 1024 tokens (its 512-token sliding windows act); tq generate on SmolLM2 (three
# chat prompts, 64 greedy tokens) and its passkey retrieval (256-token context, 20 keys per cell); then the plots.
# Usage: bash scripts/closed_loop.sh [smollm2|gemma3|gemma3-3bit|generate|needle|plot]... (default: smollm2 gemma3 plot)
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
# Gemma 3 over 1024 tokens: a pass costs ~10x SmolLM2's (262k-entry output head), so the grid is reduced to what the
# README's questions need (one BLAS thread: the bytes do not depend on OpenBLAS's split of the work)
run_gemma() {
    local gguf=$1 common="--text $TEXT --tokens 1024 --threads 1 --format csv"
    # int8, KIVI, turbo-mse, turbo-prod at 2-4 bits: quantized prefill, no recent window, seed 0
    $TQ perplexity "$gguf" $common --methods int8,kivi,turbo-mse,turbo-prod --bits 2-4 \
        --per-position $OUT/gemma3-positions.csv -o $OUT/gemma3-methods.csv
    # rotation seeds 1-4 at 3 bits (seed 0 is in gemma3-methods.csv): the spread
    $TQ perplexity "$gguf" $common --methods turbo-mse --bits 3 --seed 1-4 -o $OUT/gemma3-seeds.csv
    # fp16 vs quantized prefill, with and without a 32-token recent window, at 3 bits
    $TQ perplexity "$gguf" $common --methods kivi,turbo-mse --bits 3 --prefill fp16,quantized --recent 0,32 \
        -o $OUT/gemma3-knobs.csv
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
    needle)
        $TQ generate "$(bash scripts/get_models.sh smollm2)" --needle --context 256 --depths 0,50,100 --trials 20 \
            --methods turbo-mse,kivi --bits 2,3,4 -o $OUT/smollm2-needle.csv ;;
    plot) python3 scripts/plot_closed_loop.py $OUT ;;
    esac
done
