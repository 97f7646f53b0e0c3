#!/usr/bin/env bash
# test_memory.sh: `tq memory` byte counts against sizes worked out by hand from the layouts (README "Formats"):
# keys + values = 2 tensors x layers x kv heads x batch slices of `context` vectors of d coordinates.
source "$(dirname "$0")/lib.sh"

# field N of the CSV row of method M (columns: model,layers,kv_heads,head_dim,context,batch,method,bits,params,
# bits_total,bytes,gib,vs_fp16; params is quoted but has no commas for fp16/int8, so count from the end for others)
bytes_of() { awk -F, -v m="$1" -v b="$2" '$7 == m && $8 == b { print $(NF-2) }' "$T/out"; }
want() { # NAME METHOD BITS EXPECTED
    local got; got=$(bytes_of "$2" "$3")
    if [ "$got" = "$4" ]; then ok; else bad "$1: $2 $3 bits: got '$got', want $4"; fi
}

# llama-3.1-8b (32 layers, 8 kv heads, d 128) at 8192 tokens.
expect_ok "llama-3.1-8b" -- "$TQ" memory --preset llama-3.1-8b --context 8192 --format csv
# fp16: 2*32*8*8192*128*2 bytes = 2^30 = 1 GiB
want "fp16" fp16 16 $((2 * 32 * 8 * 8192 * 128 * 2))
check "fp16 is 1 GiB" [ "$(bytes_of fp16 16)" = 1073741824 ]
# int8 containers: 128 one-byte codes + a 2-byte fp16 scale per vector
want "int8" int8 8 $((2 * 32 * 8 * 8192 * (128 + 2)))
# turbo-mse 3 bits: ceil(128*3/8) = 48 bytes of codes + fp16 norm (2)
want "turbo-mse" turbo-mse 3 $((2 * 32 * 8 * 8192 * (48 + 2)))
# turbo-prod 3 bits: 2-bit MSE codes (32) + 128 QJL signs (16) + norm (2) + residual norm (2)
want "turbo-prod" turbo-prod 3 $((2 * 32 * 8 * 8192 * (32 + 16 + 2 + 2)))
# polar 4,2,2,2 over 8 blocks of 16: per block 8*4 + 4*2 + 2*2 + 1*2 = 46 bits, so 8*46/8 = 46 bytes + 8 fp16 radii
want "polar" polar 3 $((2 * 32 * 8 * 8192 * (46 + 16)))
# kivi 3 bits, group 32: 48 bytes of codes per token + fp16 scale and zero (4 bytes) per group of 32 (keys: 128
# channels per 32 tokens; values: 4 groups per token) = 16 bytes per token either way
want "kivi" kivi 3 $((2 * 32 * 8 * 8192 * (48 + 16)))

# gemma-2b (18 layers, 1 kv head, d 256) fp16 at 8192: the seed article's shape
expect_ok "gemma-2b" -- "$TQ" memory --preset gemma-2b --format csv
want "gemma fp16" fp16 16 $((2 * 18 * 1 * 8192 * 256 * 2))

# smollm2-135m (30, 3, 64) at 320 tokens, batch 4: turbo-prod 3 bits = 16 + 8 + 2 + 2 = 28 bytes per vector
expect_ok "smollm2 batch 4" -- "$TQ" memory --preset smollm2-135m --context 320 --batch 4 --methods turbo-prod --format csv
want "smollm2 turbo-prod" turbo-prod 3 $((2 * 30 * 3 * 4 * 320 * 28))

# 2.5 bits: 32 outlier channels at 3 bits + 96 at 2 bits: 24 + 12 bytes of codes + 2 norms (4) per vector, and the
# 32 outlier channel indices (int32, 128 bytes) once per slice
expect_ok "outliers" -- "$TQ" memory --preset llama-3.1-8b --methods turbo-mse --bits 2 --outliers 32 --format csv
want "2.5 bits" turbo-mse 2 $((2 * 32 * 8 * (8192 * (24 + 12 + 4) + 128)))
check "2.5 bits total" grep -q ',turbo-mse,2,.*,2.500977,' "$T/out"

# fp32 side information: turbo-mse 3 bits = 48 + 4 bytes; int8 = 128 + 4
expect_ok "fp32 norms" -- "$TQ" memory --layers 2 --kv-heads 3 --head-dim 128 --context 100 --methods turbo-mse --norms fp32 --format csv
want "fp32 turbo-mse" turbo-mse 3 $((2 * 2 * 3 * 100 * 52))
want "fp32 int8" int8 8 $((2 * 2 * 3 * 100 * 132))

# Markdown: every preset, a header and fp16 first
expect_ok "all presets" -- "$TQ" memory --all-presets
check "md header" grep -q '^| model |' "$T/out"
check "md rows" [ "$(grep -c '| fp16 |' "$T/out")" = 4 ]

# usage errors: exit 2, one line naming the problem
expect_fail "no shape" 2 "give --preset" -- "$TQ" memory
expect_fail "unknown preset" 2 "unknown preset 'llama-9'" -- "$TQ" memory --preset llama-9
expect_fail "partial shape" 2 "needs all of" -- "$TQ" memory --layers 4 --kv-heads 2
expect_fail "preset and shape" 2 "give one of" -- "$TQ" memory --preset gemma-2b --layers 3
expect_fail "bits range" 2 "'--bits'" -- "$TQ" memory --preset gemma-2b --bits 9
expect_fail "context 0" 2 "'--context'" -- "$TQ" memory --preset gemma-2b --context 0
expect_fail "unknown method" 2 "unknown method 'turbo'" -- "$TQ" memory --preset gemma-2b --methods turbo
expect_fail "polar dim" 2 "polar" -- "$TQ" memory --layers 1 --kv-heads 1 --head-dim 72 --methods polar
expect_fail "format" 2 "--format" -- "$TQ" memory --preset gemma-2b --format json
expect_ok "help" -- "$TQ" memory --help
check "help to stdout" grep -q '^usage: tq memory' "$T/out"
finish
