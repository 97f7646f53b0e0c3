#!/usr/bin/env bash
# test_valgrind.sh: the CLI pipeline synth -> info -> quantize -> dequantize -> sweep (plus sensitivity ->
# mixed-schedule and one failing run) on a tiny dump under valgrind memcheck: no invalid access, no uninitialised
# value used, no definite leak (--errors-for-leak-kinds=definite; OpenBLAS/OpenMP thread pools show up as "possibly
# lost" and do not count). Outputs must match the runs without valgrind: byte for byte where no BLAS kernel is
# involved; within float rounding where one is (valgrind's CPUID makes OpenBLAS pick another kernel). Skips without
# valgrind.
source "$(dirname "$0")/lib.sh"
if ! command -v valgrind >/dev/null; then
    skip "valgrind not installed (scripts/deps.sh installs it)"
    finish; exit
fi
# valgrind and AddressSanitizer cannot share a process: the SANITIZE=1 suite covers memory errors its own way.
if ldd "$TQ" 2>/dev/null | grep -q libasan; then
    skip "tq is an ASan build (SANITIZE=1): valgrind runs in the plain suite"
    finish; exit
fi
# one OpenBLAS thread: fewer pools to report and a faster run; --threads 2 still exercises OpenMP in sweep
export OPENBLAS_NUM_THREADS=1
VG=(valgrind --quiet --error-exitcode=99 --leak-check=full --errors-for-leak-kinds=definite
    --show-leak-kinds=definite --track-origins=yes --num-callers=30)

# vg NAME -- cmd...: exit 0 under valgrind, no report on stderr (stdout saved in $T/vg.out)
vg() {
    local name=$1; shift 2
    "${VG[@]}" --log-file="$T/vg.log" "$@" >"$T/vg.out" 2>"$T/vg.err"; local rc=$?
    if [ "$rc" = 99 ] || [ -s "$T/vg.log" ]; then bad "$name: valgrind: $(head -n 30 "$T/vg.log")"; return 1; fi
    if [ "$rc" != 0 ]; then bad "$name: exit $rc: $(cat "$T/vg.err")"; return 1; fi
    ok
}
vg "synth" -- "$TQ" synth --dist outlier --layers 2 --heads 2 --q-heads 4 --tokens 24 --dim 32 --seed 1 -o "$T/d.h5"
vg "info" -- "$TQ" info --json "$T/d.h5"
cp "$T/vg.out" "$T/info.vg"
"$TQ" info --json "$T/d.h5" >"$T/info.plain"
check "info: same output under valgrind" cmp -s "$T/info.vg" "$T/info.plain"
for m in "turbo-prod --bits 3" "polar --rotation hadamard" "kivi --bits 2 --group 8"; do
    vg "quantize $m" -- "$TQ" quantize "$T/d.h5" --method $m -o "$T/c.h5" || continue
    vg "dequantize $m" -- "$TQ" dequantize "$T/c.h5" -o "$T/r.h5"
    "$TQ" quantize "$T/d.h5" --method $m -o "$T/c2.h5" >/dev/null
    # a dense rotation goes through sgemm: another kernel may round a coordinate across a threshold
    [ "${m%% *}" = turbo-prod ] || check "quantize $m: same codes file under valgrind" cmp -s "$T/c.h5" "$T/c2.h5"
    rm -f "$T/c.h5" "$T/c2.h5" "$T/r.h5"
done
vg "sweep" -- "$TQ" sweep "$T/d.h5" --methods turbo-mse,qjl,int8 --bits 2 --threads 2 --format csv -o "$T/s.csv"
"$TQ" sweep "$T/d.h5" --methods turbo-mse,qjl,int8 --bits 2 --threads 2 --format csv -o "$T/s2.csv"
# float32 sums over <= 24 x 32 terms in another order: relative differences up to n * 2^-24 ~ 5e-5; allow 2e-4
check "sweep: same numbers under valgrind (rel 2e-4)" python3 - "$T/s.csv" "$T/s2.csv" <<'EOF'
import csv, math, sys
a, b = (list(csv.reader(open(p))) for p in sys.argv[1:])
assert len(a) == len(b) and a[0] == b[0]
for ra, rb in zip(a[1:], b[1:]):
    for x, y in zip(ra, rb):
        try:
            fx, fy = float(x), float(y)
        except ValueError:
            assert x == y, (x, y)
            continue
        assert math.isclose(fx, fy, rel_tol=2e-4, abs_tol=1e-6), (ra[:6], x, y)
EOF
vg "sensitivity" -- "$TQ" sensitivity "$T/d.h5" --method turbo-mse --bits 1-3 -o "$T/sens.json"
vg "mixed-schedule" -- "$TQ" mixed-schedule "$T/sens.json" --budget 2 -o "$T/sch.json"
# an error path: the reader's cleanup after a malformed file must not leak either
head -c 3000 "$T/d.h5" >"$T/trunc.h5"
"${VG[@]}" --log-file="$T/vg.log" "$TQ" sweep "$T/trunc.h5" >/dev/null 2>&1; rc=$?
check "truncated input: exit 1 and valgrind clean" [ "$rc" = 1 -a ! -s "$T/vg.log" ]
finish
