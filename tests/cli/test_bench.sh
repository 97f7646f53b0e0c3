#!/usr/bin/env bash
# test_bench.sh: `tq bench` — usage errors exit 2, a CPU-only build answers --device cuda with "built without CUDA"
# (exit 1), and the CPU benchmark prints one encode row per method with a positive time and throughput.
source "$(dirname "$0")/lib.sh"

expect_ok help -- "$TQ" bench --help
check help-mentions-fused grep -q "fused" "$T/out"
expect_fail bad-device 2 "unknown device 'gpu'" -- "$TQ" bench --device gpu
expect_fail bad-dim 2 "dim" -- "$TQ" bench --dim 96
expect_fail bad-heads 2 "multiple of --kv-heads" -- "$TQ" bench --q-heads 6 --kv-heads 4
expect_fail bad-option 2 "unknown option '--frobnicate'" -- "$TQ" bench --frobnicate 1
if "$TQ" --version | grep -q "cuda no"; then
    expect_fail no-cuda 1 "built without CUDA" -- "$TQ" bench --device cuda
else
    skip "no-cuda: this tq is built with CUDA"
fi
# CPU encode rows: turbo-mse, turbo-prod, qjl (1 bit), int8 (8 bits), kivi; each ms > 0 and MB/s > 0
expect_ok cpu -- "$TQ" bench --device cpu --encode-vectors 512 -o "$T/b.csv"
for m in turbo-mse turbo-prod qjl int8 kivi; do
    check "cpu-row-$m" awk -F'|' -v m="$m" '$3 ~ " "m" " && $5+0 > 0 && $6+0 > 0 {f=1} END {exit !f}' "$T/out"
done
check csv-written grep -q "^encode,turbo-mse 3b,512," "$T/b.csv"
check csv-no-temp bash -c "! ls '$T'/b.csv.tmp.* 2>/dev/null"
finish
