#!/usr/bin/env bash
# test_options.sh: options as data (cmd/options.h) — for every command converted to an option table: --help is
# generated (usage line first, every declared option listed, exit 0 on stdout), an unknown option and a missing value
# are usage errors (exit 2) in one uniform message, --name=value equals --name value byte for byte, a flag given a
# value and an out-of-range number are usage errors naming the option.
source "$(dirname "$0")/lib.sh"
D=$(cd "$(dirname "$0")/../.." && pwd)/datasets/smollm2-135m.h5

for c in synth info quantize dequantize sweep entropy sensitivity mixed-schedule memory; do
    expect_ok "$c --help" -- "$TQ" $c --help
    check "$c help: usage line first" grep -q "^usage: tq $c" <(head -n 1 "$T/out")
    check "$c help: -h listed" grep -q -- "-h, --help" "$T/out"
    expect_fail "$c unknown option" 2 "^tq: $c: unknown option '--frobnicate' \(see 'tq $c --help'\)$" -- \
        "$TQ" $c --frobnicate
done
# options declared in each table appear in its --help
"$TQ" sweep --help >"$T/h"
for o in --methods --bits --rotation --codebook --center --outliers --values --synthetic --layers --heads --q-heads \
         --dim --tokens --threads --seed --no-attention --device --schedule --format -o; do
    check "sweep help lists $o" grep -qE -- "^  $o( |$)" "$T/h"
done
expect_fail "missing value" 2 "^tq: sweep: option '--bits' needs a value \(see 'tq sweep --help'\)$" -- \
    "$TQ" sweep "$D" --bits
expect_fail "flag with a value" 2 "option '--no-attention' takes no value" -- "$TQ" sweep "$D" --no-attention=1
expect_fail "range" 2 "option '--threads' is 0, must be in 1..1024" -- "$TQ" sweep "$D" --threads=0
expect_fail "choice" 2 "option '--tensor' is 'all', expected keys, values or both" -- \
    "$TQ" sensitivity "$D" --method kivi --tensor=all
# --name=value and --name value: the same table, byte for byte
A=(sweep "$D" --methods kivi,turbo-mse --layers 2 --heads 1 --tokens 32 --format csv)
"$TQ" "${A[@]}" --bits 2,3 >"$T/a" 2>/dev/null
"$TQ" "${A[@]}" --bits=2,3 >"$T/b" 2>/dev/null
check "--bits=2,3 equals --bits 2,3" cmp -s "$T/a" "$T/b"
check "the table is not empty" test "$(wc -l <"$T/a")" -gt 4
# the defaults declared in the table are applied: memory's --context 8192 and --bits 3
"$TQ" memory --preset smollm2-135m >"$T/m1"
"$TQ" memory --preset smollm2-135m --context 8192 --bits 3 --group 32 >"$T/m2"
check "declared defaults applied" cmp -s "$T/m1" "$T/m2"
finish
