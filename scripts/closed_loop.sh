#!/usr/bin/env bash
# closed_loop.sh: the runs behind results/closed_loop/ (README "Closed loop"): tq perplexity on SmolLM2-135M over
# 512 tokens and Gemma-3-270M over 1024 tokens (its 512-token sliding windows act); tq generate on SmolLM2 (three
# chat prompts, 64 greedy tokens) and its passkey retrieval (256-token context, 20 keys per cell); then the plots.
# Usage: bash scripts/closed_loop.sh [smollm2|gemma3|generate|needle|plot]... (default: smollm2 gemma3 plot)
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
for what in ${@:-smollm2 gemma3 plot}; do
    case $what in
    smollm2) run_model smollm2 "$(bash scripts/get_models.sh smollm2)" 512 fp16,quantized ;;
    gemma3) run_model gemma3 "$(bash scripts/get_models.sh gemma3)" 1024 "${GEMMA_PREFILL:-fp16,quantized}" ;;
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
