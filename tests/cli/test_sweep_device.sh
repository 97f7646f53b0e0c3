#!/usr/bin/env bash
# test_sweep_device.sh: `--device cpu|cuda` on sweep, entropy and sensitivity (the shared engine, lib/evaluate.h
# over lib/device.h). CPU build: cuda answers "built without CUDA" (exit 1, nothing written), a bad device exits 2,
# --device cpu is the default byte for byte. Where tq has CUDA and a GPU answers: sweep --device cuda on the Hadamard path against cpu.
source "$(dirname "$0")/lib.sh"

SYN=(--synthetic gaussian --layers 1 --heads 2 --q-heads 4 --tokens 48 --dim 64)
expect_ok synth -- "$TQ" synth --dist gaussian --layers 2 --heads 2 --q-heads 4 --tokens 40 --dim 64 --seed 1 -o "$T/s.h5"

# a bad device is a usage error in each command, before any work
expect_fail sweep-bad-device 2 "sweep: unknown device 'tpu'" -- "$TQ" sweep "${SYN[@]}" --device tpu
expect_fail entropy-bad-device 2 "entropy: unknown device 'gpu'" -- "$TQ" entropy "${SYN[@]}" --device gpu
expect_fail sens-bad-device 2 "sensitivity: unknown device 'CUDA'" -- \
    "$TQ" sensitivity "$T/s.h5" --method turbo-mse --metric nmse --device CUDA

has_cuda=0
"$TQ" --version | grep -q "cuda yes" && has_cuda=1
if [ $has_cuda = 0 ]; then
    # exit 1 (runtime, not usage), the one line names the cure; -o files are never created
    expect_fail sweep-no-cuda 1 "sweep --device cuda: .*built without CUDA \(rebuild with make CUDA=1" -- \
        "$TQ" sweep "${SYN[@]}" --device cuda -o "$T/gpu.csv"
    check sweep-no-output test ! -e "$T/gpu.csv"
    expect_fail entropy-no-cuda 1 "entropy --device cuda: .*built without CUDA \(rebuild with make CUDA=1" -- \
        "$TQ" entropy "${SYN[@]}" --device cuda
    expect_fail sens-no-cuda 1 "sensitivity --device cuda: .*built without CUDA \(rebuild with make CUDA=1" -- \
        "$TQ" sensitivity "$T/s.h5" --method turbo-mse --metric nmse --device cuda -o "$T/sens.json"
    check sens-no-output test ! -e "$T/sens.json"
else
    skip "no-cuda messages: this tq is built with CUDA"
fi

# --device cpu is the default path: identical bytes out (CSV, the entropy report, the sensitivity JSON and summary)
expect_ok sweep-default -- "$TQ" sweep "${SYN[@]}" --methods turbo-mse,kivi --bits 2,3 --format csv
cp "$T/out" "$T/a.csv"
expect_ok sweep-cpu -- "$TQ" sweep "${SYN[@]}" --methods turbo-mse,kivi --bits 2,3 --format csv --device cpu
check sweep-cpu-same cmp -s "$T/a.csv" "$T/out"
check sweep-rows test "$(wc -l <"$T/a.csv")" -gt 8
expect_ok entropy-default -- "$TQ" entropy "${SYN[@]}" --methods turbo-prod --bits 2,3
cp "$T/out" "$T/e.md"
expect_ok entropy-cpu -- "$TQ" entropy "${SYN[@]}" --methods turbo-prod --bits 2,3 --device cpu
check entropy-cpu-same cmp -s "$T/e.md" "$T/out"
expect_ok sens-default -- "$TQ" sensitivity "$T/s.h5" --method turbo-prod --bits 2,3 -o "$T/sens.json"
cp "$T/out" "$T/s1.md"; mv "$T/sens.json" "$T/s1.json" # same -o path: the summary names it
expect_ok sens-cpu -- "$TQ" sensitivity "$T/s.h5" --method turbo-prod --bits 2,3 --device cpu -o "$T/sens.json"
check sens-cpu-same-json cmp -s "$T/s1.json" "$T/sens.json"
check sens-cpu-same-summary cmp -s "$T/s1.md" "$T/out"

for c in sweep entropy sensitivity; do
    expect_ok "$c-help" -- "$TQ" $c --help
    check "$c-help-mentions-device" grep -q -- "--device cpu|cuda" "$T/out"
done

# GPU against CPU. Codes are identical on the Hadamard path (test_cuda, quantize --device cuda), so bits columns and
# labels must match exactly. Decoding runs on the GPU (tq_cuda_decode), which sums in another order than the CPU
# decoder: each decoded coordinate is within (d + 4) 2^-24 (1.2 nq + QJL term) of exact on either side (test_cuda's
# bound), so a vector moves by at most rho = 2 sqrt(d) (d + 4) 2^-24 * 1.2 * 2 ~ 4.2e-4 of its norm at d = 128 (worst
# case, every rounding aligned; the QJL term at most doubles it). nmse/dmse/cos/ip_*/out_rel/top8 are Lipschitz in
# that relative perturbation with constants of a few units of their scale, attention logits move by <= rho |q||k|/sqrt d,
# so |gpu - cpu| <= 5 rho * max(|cpu|, scale) bounds them all; scale = 1, and sqrt(mean <q,k>^2) for ip_bias/ip_rmse.
gpu_ok=0
if [ $has_cuda = 1 ] && command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then gpu_ok=1; fi
if [ $gpu_ok = 1 ]; then
    cat >"$T/cmp.py" <<'EOF'
import csv, math, sys
a = list(csv.reader(open(sys.argv[1]))); b = list(csv.reader(open(sys.argv[2])))
if a[0] != b[0] or len(a) != len(b): sys.exit(f"shape: {len(a)} vs {len(b)} lines")
d = 128; rho = 2 * math.sqrt(d) * (d + 4) * 2.0**-24 * 1.2 * 2
col = {n: i for i, n in enumerate(a[0])}
worst, bad = 0.0, 0
for ra, rb in zip(a[1:], b[1:]):
    if ra[:9] != rb[:9]: sys.exit(f"labels/bits differ: {ra[:9]} vs {rb[:9]}")
    qk = None
    if ra[col["ip_rmse"]] and ra[col["ip_nrmse"]] and float(ra[col["ip_nrmse"]]) > 0:
        qk = float(ra[col["ip_rmse"]]) / float(ra[col["ip_nrmse"]])
    for n in a[0][9:]:
        x, y = ra[col[n]], rb[col[n]]
        if (x == "") != (y == ""): sys.exit(f"{n}: '{x}' vs '{y}'")
        if x == "": continue
        x, y = float(x), float(y)
        scale = qk if n in ("ip_bias", "ip_rmse") and qk else 1.0
        tol = 5 * rho * max(abs(x), scale)
        worst = max(worst, abs(x - y) / tol)
        bad += abs(x - y) > tol
print(f"  sweep --device cuda vs cpu: {len(a) - 1} rows, worst |gpu-cpu| = {worst:.3g} of the bound", file=sys.stderr)
sys.exit(1 if bad else 0)
EOF
    G=(--synthetic outlier,gaussian --layers 2 --heads 4 --q-heads 8 --tokens 256 --dim 128 --seed 5
       --methods turbo-mse,turbo-prod,qjl,kivi --bits 1-4 --rotation hadamard --format csv)
    expect_ok sweep-gpu-cpu -- "$TQ" sweep "${G[@]}" --device cpu
    grep -v ",kivi," "$T/out" | grep -v 'turbo-prod,"bits=1,' >"$T/cpu.csv" # params are quoted (commas)
    if expect_ok sweep-gpu -- "$TQ" sweep "${G[@]}" --device cuda; then
        cp "$T/out" "$T/gpu.csv"
        # kivi at 1-4 bits and turbo-prod at 1 bit are skipped with a note each (5), nothing else is
        check sweep-gpu-notes [ "$(grep -c "^tq: note: skipping" "$T/.err")" = 5 ]
        check sweep-gpu-notes-name-cpu [ "$(grep -c "use --device cpu" "$T/.err")" = 5 ]
        check sweep-gpu-matches-cpu python3 - "$T/cpu.csv" "$T/gpu.csv" <"$T/cmp.py"
        # GPU calls are serialised under --threads. Asserted within the bound above, not byte for byte: on the H100
        # host (16 cores) --threads 1 and 2 differed in one run, cause not pinned down; a likely one is the CPU
        # metrics' OpenBLAS calls, whose thread count --threads > 1 pins to 1 (the CPU path's ip_* columns also
        # differ by ~1e-8 relative between this 2-core machine and that host).
        expect_ok sweep-gpu-threads -- "$TQ" sweep "${G[@]}" --device cuda --threads 2
        check sweep-gpu-threads-close python3 - "$T/gpu.csv" "$T/out" <"$T/cmp.py"
    fi
else
    skip "sweep --device cuda vs cpu: no CUDA build or no GPU here"
fi
finish
