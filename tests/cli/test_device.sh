#!/usr/bin/env bash
# test_device.sh: `--device` on quantize — a bad device is a usage error (exit 2); a CPU-only build answers
# `--device cuda` with "built without CUDA" (exit 1, nothing written); `--device cpu` is the default path.
# (With CUDA, eval/gpu_run.sh checks that quantize --device cuda writes the same datasets as the CPU.)
source "$(dirname "$0")/lib.sh"

expect_ok synth -- "$TQ" synth --dist gaussian --layers 1 --heads 2 --tokens 40 --dim 64 --seed 1 -o "$T/s.h5"
expect_fail bad-device 2 "unknown device 'tpu'" -- "$TQ" quantize "$T/s.h5" --method turbo-mse --bits 3 --device tpu -o "$T/c.h5"
if "$TQ" --version | grep -q "cuda no"; then
    expect_fail no-cuda 1 "built without CUDA" -- "$TQ" quantize "$T/s.h5" --method turbo-mse --bits 3 --device cuda -o "$T/c.h5"
    check no-output-written test ! -e "$T/c.h5"
else
    skip "no-cuda: this tq is built with CUDA"
fi
expect_ok cpu -- "$TQ" quantize "$T/s.h5" --method turbo-mse --bits 3 --device cpu -o "$T/c.h5"
check cpu-output test -s "$T/c.h5"
expect_ok help -- "$TQ" quantize --help
check help-mentions-device grep -q -- "--device cpu|cuda" "$T/out"
finish
