#!/usr/bin/env bash
# test_messages.sh: the defaults and messages of issue "tidy outputs, defaults" — one check per message: --threads
# defaults to the machine's cores and changes no byte (sweep, entropy, sensitivity against --threads 1 and 3), a dump
# given to mixed-schedule is "not a sensitivity file", sweep's schedule/method mismatch names --methods, schedules carry
# the model fingerprint and another model's is refused (--force overrides) in sweep and quantize, and a command that
# writes a file says "tq: wrote FILE" once on stderr (no progress bar off a terminal).
source "$(dirname "$0")/lib.sh"
D=$(cd "$(dirname "$0")/../.." && pwd)/datasets/smollm2-135m.h5

# --threads: the default is the online core count (help says so) and the output is byte-identical to 1 and 3 threads
check "help: threads default" bash -c "'$TQ' sweep --help 2>&1 | grep -q \"default: the machine's cores\""
SW=("$D" --methods turbo-mse,kivi --bits 2,3 --layers 0,5 --tokens 64 --format csv)
expect_ok "sweep default threads" -- "$TQ" sweep "${SW[@]}"
cp "$T/out" "$T/def.csv"
for n in 1 3; do
    expect_ok "sweep threads $n" -- "$TQ" sweep "${SW[@]}" --threads $n
    check "sweep default = threads $n" cmp -s "$T/out" "$T/def.csv"
done
expect_ok "sensitivity default threads" -- "$TQ" sensitivity "$D" --method kivi --bits 2,3 --tokens 48 -o "$T/sd.json"
expect_ok "sensitivity threads 1" -- "$TQ" sensitivity "$D" --method kivi --bits 2,3 --tokens 48 --threads 1 \
    -o "$T/s1.json"
check "sensitivity default = threads 1" cmp -s "$T/sd.json" "$T/s1.json"
EN=(--synthetic gaussian,structured --layers 1 --heads 3 --tokens 64 --dim 32 --bits 2)
expect_ok "entropy default threads" -- "$TQ" entropy "${EN[@]}" -o "$T/ed.csv"
expect_ok "entropy threads 1" -- "$TQ" entropy "${EN[@]}" --threads 1 -o "$T/e1.csv"
check "entropy default = threads 1" cmp -s "$T/ed.csv" "$T/e1.csv"

# "tq: wrote FILE": exactly that one stderr line (stderr is not a terminal here: no progress bar)
expect_ok "wrote line" -- "$TQ" sweep "${SW[@]}" -o "$T/w.csv"
check "wrote: one line" [ "$(cat "$T/.err")" = "tq: wrote $T/w.csv" ]
check "wrote: stdout empty" [ ! -s "$T/out" ]

# progress bars: on a terminal (a pseudo-terminal from script(1)) sweep and dump draw one; off a terminal nothing
if command -v script >/dev/null; then
    script -qec "'$TQ' sweep --synthetic gaussian --layers 2 --heads 2 --tokens 64 --dim 32 --methods kivi --bits 2 \
        -o '$T/p.csv'" /dev/null >"$T/pty" 2>&1
    check "sweep progress on a terminal" grep -q "synthetic:gaussian \[#*\] 2/2" <(tr '\r' '\n' <"$T/pty")
    M=$(bash "$(dirname "$0")/../../scripts/get_models.sh" smollm2 2>/dev/null || true)
    if [ -n "$M" ] && [ -f "$M" ]; then
        script -qec "'$TQ' dump '$M' --text '$(dirname "$D")/text/tale-of-two-cities.txt' --tokens 64 --layers 0 \
            -o '$T/dd.h5'" /dev/null >"$T/pty" 2>&1
        check "dump progress on a terminal" grep -q "dump \[#*\] 64/64" <(tr '\r' '\n' <"$T/pty")
        "$TQ" dump "$M" --text "$(dirname "$D")/text/tale-of-two-cities.txt" --tokens 64 --layers 0 -o "$T/dd.h5" \
            2>"$T/.err"
        check "dump: no progress off a terminal" [ "$(grep -c . "$T/.err")" = 1 ]
    else skip "dump progress: no SmolLM2 model (scripts/get_models.sh)"; fi
else skip "progress: no script(1) for a pseudo-terminal"; fi

# a dump given to mixed-schedule: named for what it is, exit 1
expect_fail "mixed-schedule of a dump" 1 "is not a sensitivity file: it is HDF5" -- \
    "$TQ" mixed-schedule "$D" --budget 3

# schedules: made for SmolLM2 (fingerprint recorded), refused for a synthetic dump of the same shape
"$TQ" mixed-schedule "$T/sd.json" --budget 2.5 -o "$T/sch.json" >/dev/null 2>&1 || bad "mixed-schedule"
check "schedule fingerprint" python3 -c "
import json; m = json.load(open('$T/sch.json'))['model']
assert m == {'name': 'SmolLM2-135M-Instruct-Q4_1', 'n_layers': 30, 'n_kv_heads': 3, 'head_dim': 64}, m"
expect_fail "sweep: schedule method" 2 "made for method 'kivi', not 'turbo-mse'; pass --methods kivi" -- \
    "$TQ" sweep "$D" --schedule "$T/sch.json" --methods turbo-mse --values none
"$TQ" synth --dist gaussian --layers 30 --heads 3 --q-heads 9 --tokens 32 --dim 64 -o "$T/other.h5" >/dev/null 2>&1
FP="was made for model 'SmolLM2-135M-Instruct-Q4_1' \(30 layers, 3 kv heads, head dim 64\), not 'synthetic:gaussian'.*--force"
expect_fail "sweep: other model" 2 "$FP" -- "$TQ" sweep "$T/other.h5" --schedule "$T/sch.json" --values none
expect_fail "quantize: other model" 2 "$FP" -- \
    "$TQ" quantize "$T/other.h5" --method kivi --schedule "$T/sch.json" --keys-only -o "$T/c.h5"
check "quantize: refused writes nothing" [ ! -e "$T/c.h5" ]
expect_ok "sweep: --force" -- "$TQ" sweep "$T/other.h5" --schedule "$T/sch.json" --values none --force --format csv
check "sweep: --force rows" [ "$(grep -c '^' "$T/out")" -gt 30 ]
expect_ok "quantize: --force" -- "$TQ" quantize "$T/other.h5" --method kivi --schedule "$T/sch.json" --keys-only \
    --force -o "$T/c.h5"
expect_ok "sweep: own model" -- "$TQ" sweep "$D" --schedule "$T/sch.json" --values none --tokens 16 --format csv
# a schedule without a fingerprint (written before it, or by hand) is still accepted
python3 -c "
import json; s = json.load(open('$T/sch.json')); del s['model']; json.dump(s, open('$T/old.json', 'w'))"
expect_ok "sweep: no fingerprint" -- "$TQ" sweep "$T/other.h5" --schedule "$T/old.json" --values none --format csv
finish
