#!/usr/bin/env bash
# test_robustness.sh: the bad-input matrix across every command that reads an input (info, quantize, dequantize,
# sweep, entropy, sensitivity, mixed-schedule) and every command that writes one. Each case: the exit code (1 bad
# data / I/O, 2 usage), exactly one stderr line "tq: ..." with the expected words (a sanitizer report, many lines,
# fails it too), no file left in the output folder (temporaries included) and the inputs untouched. All-zero
# vectors must succeed and come back as zeros, with no NaN in any report. ROBUST_TABLE=FILE also appends
# "class|command|case|exit|message" per case (class: $ROBUST_CLASS, "round 1" outside section 7) (eval/robustness.sh turns that into results/robustness.md).
source "$(dirname "$0")/lib.sh"
HERE=$(cd "$(dirname "$0")/../.." && pwd)
if ! python3 -c "import h5py, numpy" 2>/dev/null; then
    skip "h5py/numpy not installed: robustness matrix not run"
    finish; exit
fi

# ---- inputs, made once ----
B="$T/in"; O="$T/outdir"
python3 "$HERE/tests/py/bad_dumps.py" "$B" >"$T/sizes" || { bad "bad_dumps.py failed"; finish; exit; }
full=$(tail -n 1 "$T/sizes")
G="$B/good.h5"
"$TQ" synth --dist gaussian --layers 1 --heads 1 --tokens 8 --dim 24 -o "$B/d24.h5" >/dev/null &&
"$TQ" quantize "$G" --method turbo-mse --bits 2 -o "$B/codes.h5" >/dev/null &&
"$TQ" sensitivity "$G" --method turbo-mse --bits 1-3 -o "$B/sens.json" >/dev/null &&
python3 "$HERE/tests/py/robust_inputs.py" "$B" "$B/codes.h5" "$B/sens.json" >"$T/csizes" ||
    { bad "making the inputs failed"; finish; exit; }
cfull=$(tail -n 1 "$T/csizes")
printf '{"tq_schedule": 1, "keys": [3, 3,]}' >"$B/sched_bad.json"
printf '{"tq_schedule": 1, "keys": [3' >"$B/sched_trunc.json"
: >"$B/sched_empty.json"
ln -s /dev/full "$B/full"   # -o through a link: a regressed tq renames over the link here, never over /dev/full
fingerprint() { ls -lA --time-style=full-iso "$B" | md5sum; }
fp0=$(fingerprint)

# fail_case COMMAND CASE CODE PATTERN [ulimit-KiB] -- cmd...
fail_case() {
    local cmd=$1 name=$2 code=$3 pat=$4; shift 4
    local lim=""; [ "$1" != -- ] && { lim=$1; shift; }; shift
    rm -rf "$O"; mkdir -p "$O"
    local err rc
    if [ -n "$lim" ]; then
        # a disk that fills up: writes past lim KiB fail with EFBIG (SIGXFSZ ignored, as a full disk sends none)
        err=$(bash -c 'trap "" XFSZ; ulimit -f "$0"; exec "$@"' "$lim" "$@" 2>&1 >/dev/null); rc=$?
    else
        err=$("$@" 2>&1 >/dev/null); rc=$?
    fi
    [ -n "${ROBUST_TABLE:-}" ] && printf '%s|%s|%s|%s|%s\n' "${ROBUST_CLASS:-round 1}" "$cmd" "$name" "$rc" "$(head -n 1 <<<"$err")" >>"$ROBUST_TABLE"
    local what="$cmd / $name"
    if [ "$rc" != "$code" ]; then bad "$what: exit $rc, want $code; stderr: $err"; return; fi
    if [ "$(printf '%s\n' "$err" | wc -l)" != 1 ]; then bad "$what: want one stderr line, got: $err"; return; fi
    if ! grep -qE "^tq: " <<<"$err"; then bad "$what: stderr does not start with 'tq: ': $err"; return; fi
    if ! grep -qE -- "$pat" <<<"$err"; then bad "$what: stderr '$err' does not match /$pat/"; return; fi
    if [ -n "$(ls -A "$O")" ]; then bad "$what: left behind in the output folder: $(ls -A "$O")"; return; fi
    if [ "$(fingerprint)" != "$fp0" ]; then bad "$what: the input folder changed: $(ls -A "$B" | grep -E 'tmp')"
                                            fp0=$(fingerprint); return; fi
    ok
}

# ROBUST_ROUND=2 runs only the round-2 classes (section 7), for quick iteration
if [ "${ROBUST_ROUND:-}" != 2 ]; then
# ---- 1. dumps: every command that reads one, every way a dump can be wrong ----
dump_cmds=(info quantize sweep entropy sensitivity)
run_dump() { # command, input -> the command line (outputs into $O)
    case $1 in
        info)        echo "$TQ info --strict $2" ;;
        quantize)    echo "$TQ quantize $2 --method turbo-mse --bits 2 -o $O/x.h5" ;;
        sweep)       echo "$TQ sweep $2 --methods turbo-mse --bits 2 -o $O/x.csv" ;;
        entropy)     echo "$TQ entropy $2 --methods turbo-mse --bits 2 -o $O/x.csv" ;;
        sensitivity) echo "$TQ sensitivity $2 --method turbo-mse --bits 2 -o $O/x.json" ;;
    esac
}
half=$((full / 2)); last=$((full - 1))
dump_cases=(
    "missing file|nope.h5|no such file"
    "directory|a_directory.h5|is a directory"
    "empty file|empty.h5|empty file \(0 bytes\)"
    "random bytes|random.h5|not an HDF5 file"
    "truncated at 4|trunc_4.h5|not an HDF5 file"
    "truncated at 1000|trunc_1000.h5|file is truncated: 1000 bytes, its HDF5 superblock says $full"
    "truncated at half|trunc_$half.h5|file is truncated: $half bytes"
    "truncated by 1 byte|trunc_$last.h5|file is truncated: $last bytes"
    "corrupt superblock|corrupt_superblock.h5|HDF5 cannot open it"
    "no tq attributes|no_format.h5|'tq_format' is missing"
    "newer format version|newer_version.h5|tq_format_version is 3, newer than the 2"
    "rank 2|rank2.h5|has rank 2, expected 3"
    "rank 4|rank4.h5|has rank 4, expected 3"
    "values shape mismatch|values_tokens.h5|'/layer_001/values' has shape \[2, 7, 16\], expected the keys'"
    "queries shape mismatch|queries_tokens.h5|'/layer_001/queries' has 6 tokens"
    "n_q_heads % n_kv_heads|gqa.h5|3 heads, expected a multiple of the 2 kv heads"
    "zero tokens|zero_tokens.h5|shape \[2, 0, 16\], expected every dimension >= 1"
    "zero head_dim|zero_dim.h5|shape \[2, 8, 0\], expected every dimension >= 1"
    "int32 keys|int32.h5|has type int32"
    "NaN/Inf|nan.h5|3 non-finite values \(2 nan, 1 inf\)"
    "absurd shape (2^33 values)|huge.h5|more than 2\^31 elements"
    "absurd shape (overflows)|overflow.h5|element count overflows"
    "absurd layer count|huge_layers.h5|'n_layers' is 2147483647, expected 1\.\.100000"
)
for c in "${dump_cases[@]}"; do
    IFS='|' read -r name file pat <<<"$c"
    for cmd in "${dump_cmds[@]}"; do
        # shellcheck disable=SC2046
        fail_case "$cmd" "$name" 1 "'$B/$file': .*$pat" -- $(run_dump "$cmd" "$B/$file")
    done
done

# ---- 2. codes files (dequantize) ----
ch=$((cfull / 2)); cl=$((cfull - 1))
codes_cases=(
    "missing file|nope.h5|No such file"
    "directory|a_directory.h5|is a directory"
    "empty file|empty.h5|empty file \(0 bytes\)"
    "random bytes|random.h5|not an HDF5 file"
    "truncated at 100|codes_trunc_100.h5|file is truncated: 100 bytes, its HDF5 superblock says $cfull"
    "truncated at half|codes_trunc_$ch.h5|file is truncated: $ch bytes, its HDF5 superblock says $cfull"
    "truncated by 1 byte|codes_trunc_$cl.h5|file is truncated: $cl bytes"
    "a dump, not codes|good.h5|this is a dump \(tq-kv\), not a codes file"
    "no tq attributes|codes_no_format.h5|missing attribute 'tq_format'"
    "newer format version|codes_newer.h5|tq_format_version is 3, this tq reads 1..2"
    "absurd layer count|codes_layers.h5|'n_layers' is 1073741824"
    "absurd shape (layer only)|codes_absurd.h5|1073741824 tokens x dim 65536 is more than 2\^31"
    "absurd shape (consistent)|codes_absurd_all.h5|4 heads x 1073741824 tokens x dim 65536 is more than 2\^31"
    "n_q_heads % n_kv_heads|codes_gqa.h5|n_q_heads 3 is not a multiple of n_kv_heads 2"
)
for c in "${codes_cases[@]}"; do
    IFS='|' read -r name file pat <<<"$c"
    fail_case dequantize "$name" 1 "'$B/$file'.*($pat)" -- "$TQ" dequantize "$B/$file" -o "$O/x.h5"
done

# ---- 3. sensitivity JSON (mixed-schedule) and schedule JSON (quantize/sweep --schedule) ----
json_cases=(
    "missing file|nope.json|cannot open .*No such file"
    "directory|a_directory.h5|Is a directory"
    "empty file|sens_empty.json|1:1: unexpected end of input"
    "random bytes|sens_random.json|NUL byte in JSON text"
    "truncated|sens_trunc.json|:[0-9]+:[0-9]+: "
    "newer format version|sens_newer.json|unsupported \"tq_sensitivity\" version"
    "NaN literal|sens_nan.json|unexpected character 'N'"
    "nesting 100000 deep|sens_deep.json|nesting deeper than the limit"
    "an array, not an object|sens_array.json|is a JSON object"
    "an HDF5 file|good.h5|is not a sensitivity file: it is HDF5"
)
for c in "${json_cases[@]}"; do
    IFS='|' read -r name file pat <<<"$c"
    fail_case mixed-schedule "$name" 1 "$pat" -- "$TQ" mixed-schedule "$B/$file" --budget 2 -o "$O/x.json"
done
for s in "empty|sched_empty.json|unexpected end of input" "trailing comma|sched_bad.json|1:34: trailing comma" \
         "truncated|sched_trunc.json|1:30: expected .,. or .]." "random bytes|sens_random.json|NUL byte"; do
    IFS='|' read -r name file pat <<<"$s"
    fail_case quantize "schedule: $name" 1 "$file'.*$pat" -- \
        "$TQ" quantize "$G" --method turbo-mse --schedule "$B/$file" --keys-only -o "$O/x.h5"
    fail_case sweep "schedule: $name" 1 "$file'.*$pat" -- \
        "$TQ" sweep "$G" --methods turbo-mse --schedule "$B/$file" --values none -o "$O/x.csv"
done

# ---- 4. options: bits 0 / 9 / -1 / abc, unknown method, Hadamard at d=24 (usage errors, exit 2) ----
opt_run() { # command, extra options
    local c=$1; shift
    case $c in
        quantize)       echo "$TQ quantize $G --method turbo-mse $* -o $O/x.h5" ;;
        sweep)          echo "$TQ sweep $G --methods turbo-mse $* -o $O/x.csv" ;;
        entropy)        echo "$TQ entropy $G --methods turbo-mse $* -o $O/x.csv" ;;
        sensitivity)    echo "$TQ sensitivity $G --method turbo-mse $* -o $O/x.json" ;;
        mixed-schedule) echo "$TQ mixed-schedule $B/sens.json --budget 2 $* -o $O/x.json" ;;
    esac
}
for cmd in quantize sweep entropy sensitivity mixed-schedule; do
    for b in 0 9 -1; do
        # shellcheck disable=SC2046
        fail_case "$cmd" "bits $b" 2 "'--bits' is $b,|--bits $b is out of range|at $b bits: it takes 1\.\.8" -- $(opt_run $cmd --bits $b)
    done
    # shellcheck disable=SC2046
    fail_case "$cmd" "bits abc" 2 "'--bits' needs an integer.*got 'abc'" -- $(opt_run $cmd --bits abc)
done
fail_case quantize "unknown method" 2 "unknown method 'turbo'" -- "$TQ" quantize "$G" --method turbo --bits 2 -o "$O/x.h5"
for cmd in sweep entropy; do
    fail_case $cmd "unknown method" 2 "unknown method 'turbo'" -- "$TQ" $cmd "$G" --methods turbo --bits 2 -o "$O/x.csv"
done
fail_case sensitivity "unknown method" 2 "unknown method 'turbo'" -- "$TQ" sensitivity "$G" --method turbo -o "$O/x.json"
for cmd in quantize sweep entropy sensitivity; do
    # shellcheck disable=SC2046
    fail_case "$cmd" "hadamard at d=24" 2 "hadamard rotation needs a power-of-two dim, got 24" -- \
        $(opt_run $cmd --bits 2 --rotation hadamard | sed "s|$G|$B/d24.h5|")
done

# ---- 5. outputs: missing folder, a file as folder, output = input, a device (/dev/full), a disk that fills up ----
write_cmd() { # command, output path -> a command line that would succeed with a good output
    case $1 in
        synth)          echo "$TQ synth --dist gaussian --layers 2 --heads 2 --tokens 256 --dim 64 -o $2" ;;
        quantize)       echo "$TQ quantize $B/big.h5 --method turbo-mse --bits 4 -o $2" ;;
        dequantize)     echo "$TQ dequantize $B/bigc.h5 -o $2" ;;
        sweep)          echo "$TQ sweep $G --methods int8,kivi --bits 1-4 -o $2" ;;
        entropy)        echo "$TQ entropy $G --methods kivi --bits 2 -o $2" ;;
        sensitivity)    echo "$TQ sensitivity $G --method turbo-mse --bits 2 -o $2" ;;
        mixed-schedule) echo "$TQ mixed-schedule $B/sens.json --budget 2 -o $2" ;;
    esac
}
"$TQ" synth --dist gaussian --layers 2 --heads 2 --tokens 256 --dim 64 --dtype f32 -o "$B/big.h5" >/dev/null &&
"$TQ" quantize "$B/big.h5" --method turbo-mse --bits 4 -o "$B/bigc.h5" >/dev/null || bad "big inputs"
fp0=$(fingerprint)
for cmd in synth quantize dequantize sweep entropy sensitivity mixed-schedule; do
    # shellcheck disable=SC2046
    fail_case $cmd "missing output folder" 1 "cannot write '$O/no/x': folder '$O/no' does not exist" -- \
        $(write_cmd $cmd "$O/no/x")
    # shellcheck disable=SC2046
    fail_case $cmd "output folder is a file" 1 "cannot write '$G/x': '$G' is not a folder" -- $(write_cmd $cmd "$G/x")
    # shellcheck disable=SC2046
    fail_case $cmd "output is /dev/full" 2 "output '$B/full' is not a regular file" -- $(write_cmd $cmd "$B/full")
    # writers that stream HDF5 get 4 KiB (the file is created, a dataset write fails); text writers none
    lim=0; case $cmd in synth|quantize|dequantize) lim=4 ;; esac
    # shellcheck disable=SC2046
    fail_case $cmd "disk full" 1 "cannot write '$O/x'.*(disk full|File too large)" $lim -- $(write_cmd $cmd "$O/x")
done
# output = input (the input itself, then through another spelling of its path)
fail_case quantize "output is the input" 2 "is the input" -- "$TQ" quantize "$G" --method int8 -o "$G"
fail_case quantize "output is the schedule" 2 "is the input" -- \
    "$TQ" quantize "$G" --method int8 --schedule "$B/sens.json" -o "$B/sens.json"
fail_case dequantize "output is the input" 2 "is the input" -- "$TQ" dequantize "$B/codes.h5" -o "$B/./codes.h5"
for cmd in sweep entropy; do
    fail_case $cmd "output is the input" 2 "output '$B/./good.h5' is the input" -- "$TQ" $cmd "$G" --methods int8 -o "$B/./good.h5"
done
fail_case sweep "output is the schedule" 2 "is the input" -- \
    "$TQ" sweep "$G" --methods turbo-mse --schedule "$B/sens.json" --values none -o "$B/sens.json"
fail_case sensitivity "output is the input" 2 "is the input" -- "$TQ" sensitivity "$G" --method turbo-mse -o "$G"
fail_case mixed-schedule "output is the input" 2 "is the input" -- "$TQ" mixed-schedule "$B/sens.json" --budget 2 -o "$B/sens.json"
# a report piped into a full disk: exit 1 and one line, not a silent 0
stdout_failed() { [ "$rc" = 1 ] && [ "$(wc -l <<<"$err")" = 1 ] && grep -qE "^tq: .*cannot write .*(stdout|standard output)" <<<"$err"; }
for c in "info $G" "sweep $G --methods int8 --bits 2" "memory --preset gemma-2b"; do
    # shellcheck disable=SC2086
    err=$("$TQ" $c 2>&1 >/dev/full); rc=$?
    [ -n "${ROBUST_TABLE:-}" ] && printf '%s|%s|%s|%s|%s\n' "round 1" "${c%% *}" "stdout is /dev/full" "$rc" "$err" >>"$ROBUST_TABLE"
    check "${c%% *}: stdout on a full disk -> exit 1, one line" stdout_failed
done

# ---- 6. all-zero vectors: accepted, decoded as zeros, no NaN anywhere ----
Z="$B/zero_vectors.h5"
for m in "fp16" "int8" "kivi --bits 2" "turbo-mse --bits 3" "turbo-prod --bits 3" "qjl --bits 1" "polar" \
         "turbo-prod --bits 2 --outliers 4" "turbo-mse --bits 3 --rotation hadamard --codebook empirical"; do
    rm -f "$T/zc.h5" "$T/zr.h5"
    # shellcheck disable=SC2086
    expect_ok "zero vectors: quantize $m" -- "$TQ" quantize "$Z" --method $m -o "$T/zc.h5" || continue
    expect_ok "zero vectors: dequantize $m" -- "$TQ" dequantize "$T/zc.h5" -o "$T/zr.h5" || continue
    check "zero vectors: $m decodes zeros to zeros" python3 - "$Z" "$T/zr.h5" "$m" <<'EOF'
import sys, h5py, numpy as np
src, rec, m = h5py.File(sys.argv[1]), h5py.File(sys.argv[2]), sys.argv[3]
for l in range(2):
    for t in ("keys", "values"):
        x = src[f"layer_{l:03d}/{t}"][()].astype(np.float64)
        y = rec[f"layer_{l:03d}/{t}"][()].astype(np.float64)
        assert np.isfinite(y).all(), (m, l, t, "non-finite reconstruction")
        zero = np.all(x == 0, axis=-1)
        if m.startswith("kivi"):
            # KIVI keys share a per-channel [min, max] grid along tokens (T = 8 < group 32: one group per channel), so
            # a zero key lands on the nearest grid level: |err| <= half a step = (max - min) / (2^2 - 1) / 2, plus
            # fp16 rounding of scale and zero (2^-11 relative). Values (per token) and an all-zero slice: exactly 0.
            if t == "keys":
                step = (x.max(axis=1, keepdims=True) - x.min(axis=1, keepdims=True)) / 3
                bound = np.broadcast_to(step / 2 * (1 + 2.0**-10) + 1e-6, x.shape)
                assert (np.abs(y - x)[zero] <= bound[zero]).all(), (m, l, t)
            else:
                assert (y[zero] == 0).all(), (m, l, t)
            full_zero = np.all(x == 0, axis=(1, 2))
            assert (y[full_zero] == 0).all(), (m, l, t, "zero slice")
        else:
            # every other method scales a code by the vector's norm (or absmax): norm 0 decodes to exactly 0
            assert (y[zero] == 0).all(), (m, l, t, np.abs(y[zero]).max())
EOF
done
expect_ok "zero vectors: sweep" -- "$TQ" sweep "$Z" --methods fp16,int8,kivi,turbo-mse,turbo-prod,qjl,polar --bits 1-3 \
    --format csv -o "$T/zs.csv"
expect_ok "zero vectors: entropy" -- "$TQ" entropy "$Z" --methods turbo-mse,kivi --bits 2 -o "$T/ze.json"
expect_ok "zero vectors: sensitivity" -- "$TQ" sensitivity "$Z" --method turbo-prod --bits 2-3 --per-head --metric nmse \
    -o "$T/zn.json"
expect_ok "zero vectors: mixed-schedule" -- "$TQ" mixed-schedule "$T/zn.json" --budget 2.5 -o "$T/zsch.json"
check "zero vectors: no nan/inf in the reports" python3 - "$T" <<'EOF'
import csv, json, math, sys
T = sys.argv[1]
rows = list(csv.DictReader(open(f"{T}/zs.csv")))
assert rows and not any(v.lower() in ("nan", "inf", "-inf") for r in rows for v in r.values()), "sweep"
# the all-zero slice (layer 1, head 1): relative metrics are 0/0 and so absent (empty), never NaN
z = [r for r in rows if r["layer"] == "1" and r["kv_head"] == "1" and r["tensor"] == "keys"]
assert z and all(r["nmse"] == "" for r in z), z[:1]
def walk(v):
    if isinstance(v, float): assert math.isfinite(v), v
    elif isinstance(v, dict): [walk(x) for x in v.values()]
    elif isinstance(v, list): [walk(x) for x in v]
for f in ("ze.json", "zn.json", "zsch.json"):
    text = open(f"{T}/{f}").read()
    assert "NaN" not in text and "Infinity" not in text, f
    walk(json.loads(text))
# the zero unit has nothing to lose: it gets the fewest scanned bits (2); the budget 2.5 goes to the others
sch = json.load(open(f"{T}/zsch.json"))
assert sch["keys"][1][1] == 2, sch["keys"]
EOF
fi # ROBUST_ROUND

# ---- 7. round 2 (issue 20), one block per class; every case here failed on the tq before the fix ----
python3 "$HERE/tests/py/robust2_inputs.py" "$B" "$G" && mkfifo "$B/fifo.h5" || bad "robust2_inputs.py failed"
fp0=$(fingerprint)
R="$T/r2"; mkdir -p "$R"

ROBUST_CLASS="2 clobbering"
# -- class 2: temporary files. (a) A link planted at the temporary name a tq would pick (the old "<out>.tmp.<pid>":
# the planting shell execs tq, keeping its pid) is not followed: the victim keeps its bytes, the output is a new
# regular file. An HDF5 dump writer (synth), the codes writer (quantize) and a text writer (sweep).
for w in "synth|s.h5|synth --dist gaussian --layers 1 --heads 1 --tokens 8 --dim 16" \
         "quantize|q.h5|quantize $G --method int8" "sweep|w.csv|sweep $G --methods int8 --bits 2"; do
    IFS='|' read -r cmd out line <<<"$w"
    echo precious >"$R/victim"
    # shellcheck disable=SC2016,SC2086
    bash -c 'ln -s "$1" "$2.tmp.$$"; exec "$3" "${@:4}" -o "$2"' _ "$R/victim" "$R/$out" "$TQ" $line >/dev/null 2>&1
    check "$cmd: a link planted at the temporary name is not followed" \
        [ "$(cat "$R/victim")" = precious ] && check "$cmd: the output is a regular file" [ -f "$R/$out" ] &&
        check "$cmd: the output is not the planted link" [ ! -L "$R/$out" ]
    rm -f "$R/$out" "$R"/*.tmp.*
done
# (b) an -o path too long for its temporary name: refused up front (exit 2), an existing file there untouched
long="$R"; while [ ${#long} -lt 3800 ]; do long="$long/$(printf 'd%.0s' {1..200})"; done
mkdir -p "$long"; long="$long/$(printf 'f%.0s' $(seq 1 $((4090 - ${#long} - 1))))"
echo old >"$long"
fail_case sweep "-o path of 4090 bytes" 2 "too long \(4090 bytes" -- "$TQ" sweep "$G" --methods int8 --bits 2 -o "$long"
fail_case synth "-o path of 4090 bytes" 2 "too long \(4090 bytes" -- \
    "$TQ" synth --dist gaussian --layers 1 --heads 1 --tokens 8 --dim 16 -o "$long"
check "long -o: the existing file is untouched" [ "$(cat "$long")" = old ]
rm -rf "$R"/ddd*
# (c) -o naming a file the input reads through an external link or a virtual dataset: refused, the source intact
# (fail_case's input-folder fingerprint)
fail_case sweep "-o is an external-link target" 2 \
    "is a file the input '$B/ext.h5' reads \('/layer_000' is an external link to 'ext_src.h5'\)" -- \
    "$TQ" sweep "$B/ext.h5" --methods int8 --bits 2 -o "$B/ext_src.h5"
fail_case quantize "-o is a virtual-dataset source" 2 \
    "reads \('/layer_000/keys' is a virtual dataset whose source is 'vds_src.h5'\)" -- \
    "$TQ" quantize "$B/vds.h5" --method int8 -o "$B/vds_src.h5"
# (d) SIGINT / SIGTERM mid-write: the temporary file goes and the command dies of the signal. Started from Python
# with SIGINT at its default, as at a terminal: a background job inherits SIGINT ignored (and tq leaves an ignored
# signal ignored, as nohup expects).
"$TQ" synth --dist gaussian --layers 2 --heads 4 --tokens 1024 --dim 128 --dtype f32 -o "$R/sig_in.h5" >/dev/null
check "signals: no temporary file left by synth (SIGINT, SIGTERM) and sweep (SIGTERM)" python3 - "$TQ" "$R" <<'EOF'
import glob, signal, subprocess, sys, time
tq, R = sys.argv[1], sys.argv[2]
big = ["synth", "--dist", "gaussian", "--layers", "16", "--heads", "8", "--tokens", "4096", "--dim", "128"]
runs = [(big + ["-o", f"{R}/sig.h5"], signal.SIGINT), (big + ["-o", f"{R}/sig.h5"], signal.SIGTERM),
        (["sweep", f"{R}/sig_in.h5", "--methods", "turbo-mse,turbo-prod,polar,qjl", "--bits", "1-7",
          "-o", f"{R}/sig.csv"], signal.SIGTERM)]
for args, sig in runs:
    p = subprocess.Popen([tq] + args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                         preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    t0 = time.time()
    # the HDF5 writers create their temporary file first: wait for it; the sweep writes its table at the end, so
    # it is signalled after 1 s and the check is that nothing is left either way
    while not glob.glob(f"{R}/sig.*.tmp.*") and time.time() - t0 < (30 if args[0] == "synth" else 1):
        time.sleep(0.02)
    assert p.poll() is None, (args[0], "finished before the signal: make the run longer")
    p.send_signal(sig)
    rc = p.wait(timeout=60)
    left = glob.glob(f"{R}/sig.*")
    assert rc == -sig, (args[0], sig, rc)
    assert not left, (args[0], sig, left)
EOF

ROBUST_CLASS="1 hangs"
# -- class 1 (hangs): a layer that is an external link to a FIFO blocked `tq info` forever; refused (under timeout)
fail_case info "external link to a FIFO" 1 "'/layer_000' is an external link to '.*fifo.h5', which is not a regular file" -- \
    timeout 20 "$TQ" info "$B/ext_fifo.h5"

ROBUST_CLASS="1 hangs"
# -- class 1 (hangs), the memory-limit test: every command under an address-space limit of 100, 200, 300 and 600 MB
# ends cleanly within its timeout — exit 0, or exit 1 with one "tq: " line — never a hang (OpenBLAS's retry loop: exit
# 124 from timeout) or a signal. Not under ASan, which reserves terabytes of shadow memory and cannot run there.
if ldd "$TQ" 2>/dev/null | grep -q libasan; then
    skip "memory-limit test: an ASan build cannot run under ulimit -v"
else
    "$TQ" quantize "$G" --method turbo-mse --bits 2 -o "$R/lim_codes.h5" >/dev/null
    lim_cmds=("info $G" "sweep $G --methods int8,turbo-mse,kivi,polar --bits 2 -o $O/x.csv"
              "quantize $G --method turbo-prod --bits 3 -o $O/x.h5" "dequantize $R/lim_codes.h5 -o $O/x.h5"
              "synth --dist rope --layers 2 --heads 2 --tokens 64 --dim 64 -o $O/x.h5"
              "sensitivity $G --method turbo-mse --bits 1-3 -o $O/x.json" "entropy $G --methods turbo-mse --bits 2 -o $O/x.csv")
    for lim in 100000 200000 300000 600000; do
        for c in "${lim_cmds[@]}"; do
            rm -rf "$O"; mkdir -p "$O"
            # shellcheck disable=SC2086
            err=$(bash -c 'ulimit -v "$0"; exec timeout 60 "$@"' "$lim" "$TQ" $c 2>&1 >/dev/null); rc=$?
            [ -n "${ROBUST_TABLE:-}" ] && printf '%s|%s|%s|%s|%s\n' "$ROBUST_CLASS" "${c%% *}" "ulimit -v $lim" "$rc" "$(head -n 1 <<<"$err")" >>"$ROBUST_TABLE"
            if [ "$rc" = 0 ] || { [ "$rc" = 1 ] && [ "$(wc -l <<<"$err")" = 1 ] && grep -q "^tq: " <<<"$err"; }; then ok
            else bad "${c%% *} under ulimit -v $lim: exit $rc (124: hung), stderr: $(head -c 300 <<<"$err")"; fi
        done
    done
fi

ROBUST_CLASS="3 wrong output, exit 0"
# -- class 3: exit 0 with wrong or unusable output
# a missing virtual-dataset source read as zeros; unwritten chunks read as zeros
fail_case sweep "virtual dataset source missing" 1 "'/layer_000/keys' is a virtual dataset whose source is 'vds_gone.h5', which does not exist" -- \
    "$TQ" sweep "$B/vds_missing.h5" --methods int8 --bits 2 -o "$O/x.csv"
fail_case quantize "chunks never written" 1 "'/layer_000/keys' has 1 of its 4 chunks written" -- \
    "$TQ" quantize "$B/sparse.h5" --method int8 -o "$O/x.h5"
# side information that is not finite (an empirical codebook fit on subnormal tokens) is refused, not stored
fail_case quantize "subnormal tokens, empirical codebook" 1 "section 'codebook' element [0-9]+ is not finite" -- \
    "$TQ" quantize "$B/subnormal.h5" --method turbo-mse --bits 3 --outliers 4 --codebook empirical -o "$O/x.h5"
# float16 data near 65504 round-tripped to inf/NaN with exit 0. Now polar's float16 radii overflow and quantize
# refuses to store them; turbo with fp32 norms reconstructs beyond 65504 and dequantize's writer refuses it
fail_case quantize "float16 near 65504: polar" 1 "section 'radii' element 0 is not finite" -- \
    "$TQ" quantize "$B/f16max.h5" --method polar -o "$O/x.h5"
"$TQ" quantize "$B/f16max.h5" --method turbo-mse --bits 3 --norms fp32 -o "$R/f16c.h5" >/dev/null 2>&1
fail_case dequantize "float16 near 65504: turbo-mse, fp32 norms" 1 "beyond float16's range \(max 65504\)" -- \
    "$TQ" dequantize "$R/f16c.h5" -o "$O/x.h5"
rm -f "$R/f16c.h5"
# a per-head schedule whose head count matches layer 0 but not layer 1; a schedule without values bits
python3 - "$G" "$R/heads_differ.h5" <<'EOF'
import sys, h5py, numpy as np
with h5py.File(sys.argv[1]) as s, h5py.File(sys.argv[2], "w") as d:
    for k, v in s.attrs.items():
        d.attrs[k] = v
    s.copy(s["layer_000"], d, name="layer_000")
    g = d.create_group("layer_001")
    for k in ("keys", "values", "queries"):
        x = s["layer_001"][k][()]
        g[k] = np.concatenate([x, x], axis=0)
EOF
printf '{"tq_schedule": 1, "units": "head", "keys": [[2, 3], [3, 2]]}' >"$R/sched_h2.json"
printf '{"tq_schedule": 1, "units": "layer", "keys": [2, 3]}' >"$R/sched_l.json"
fail_case quantize "per-head schedule, a layer with more heads" 2 "has 2 heads per layer but the dump's layer 1 has 4 kv heads" -- \
    "$TQ" quantize "$R/heads_differ.h5" --method turbo-mse --schedule "$R/sched_h2.json" --keys-only -o "$O/x.h5"
fail_case sweep "per-head schedule, a layer with more heads" 2 "has 2 heads per layer but the dump's layer 1 has 4 kv heads" -- \
    "$TQ" sweep "$R/heads_differ.h5" --methods turbo-mse --schedule "$R/sched_h2.json" --values none -o "$O/x.csv"
fail_case quantize "--schedule without values bits" 2 "schedule '.*sched_l.json' has no values bits" -- \
    "$TQ" quantize "$G" --method turbo-mse --schedule "$R/sched_l.json" -o "$O/x.h5"

ROBUST_CLASS="4 cost before checks"
# -- class 4: cost before checks. A sparse 2^31-element layer (nothing stored) cost 12 GB to read: refused at open,
# here under a 2 GB address-space limit with a timeout
# (an ASan build reserves terabytes of shadow memory and cannot start under ulimit -v: there the limit is lifted and
# the case checks the refusal and the timeout alone)
if ldd "$TQ" 2>/dev/null | grep -q libasan; then V2G=unlimited V1G=unlimited; else V2G=2000000 V1G=1000000; fi
fail_case info "sparse 2^31-element layer under ulimit -v 2 GB" 1 "'/layer_000/keys' has 0 of its 2048 chunks written" -- \
    bash -c 'ulimit -v "$0"; exec timeout 60 "$@"' "$V2G" "$TQ" info "$B/sparse_huge.h5"

# a codes file declaring a 2^32-element section (chunked, nothing stored: a few KB) allocated 4 GB before the layout
# check refused it; now the layout is checked first. Under a 1 GB address-space limit with a timeout.
python3 - "$B/codes.h5" "$R/codes_2e32.h5" <<'EOF'
import shutil, sys, h5py
shutil.copy(sys.argv[1], sys.argv[2])
with h5py.File(sys.argv[2], "r+") as f:
    g = f["layer_000/keys/head_000"]
    del g["codes"]
    g.create_dataset("codes", shape=(1 << 32,), dtype="u1", chunks=(1 << 16,))
EOF
fail_case dequantize "2^32-element section under ulimit -v 1 GB" 1 "dataset 'codes' has 4294967296 elements of type 1, expected 32" -- \
    bash -c 'ulimit -v "$0"; exec timeout 60 "$@"' "$V1G" "$TQ" dequantize "$R/codes_2e32.h5" -o "$O/x.h5"
# the JSON duplicate-key check was quadratic: 80k keys and a duplicate at the end took ~10 s (the 16 MiB limit,
# minutes); linear now. Bounded by `timeout 5` (~0.2 s here), so a quadratic check fails the case by its exit code.
python3 -c "
import json, sys
d = {'tq_sensitivity': 1}
d.update({f'k{i}': i for i in range(80000)})
sys.stdout.write(json.dumps(d)[:-1] + ', \"k79999\": 0}')" >"$R/dup80k.json"
fail_case mixed-schedule "80k keys, a duplicate at the end" 1 "dup80k.json':1:[0-9]+: duplicate key \"k79999\"" -- \
    timeout 5 "$TQ" mixed-schedule "$R/dup80k.json" --budget 2 -o "$O/x.json"

ROBUST_CLASS="5 leftovers, messages"
# -- class 5: messages. Missing external-link target, a filter the library lacks (LZF, with no plugin path), a file
# locked by a writer, and a finite 1e30 input (was "non-finite")
fail_case info "external link target missing" 1 "'/layer_000' is an external link to 'nowhere.h5', which does not exist" -- \
    "$TQ" info "$B/ext_missing.h5"
fail_case sweep "LZF-compressed dataset" 1 "compressed with filter 32000 \('lzf', h5py's LZF\), which this HDF5 library lacks" -- \
    env HDF5_PLUGIN_PATH=/nonexistent "$TQ" sweep "$B/lzf.h5" --methods int8 --bits 2 -o "$O/x.csv"
# a codes file with one edited byte decoded to other numbers with exit 0: each section's checksum is verified on read
python3 - "$B/codes.h5" "$R/codes_edited.h5" <<'EOF'
import shutil, sys, h5py
shutil.copy(sys.argv[1], sys.argv[2])
with h5py.File(sys.argv[2], "r+") as f:
    d = f["layer_001/values/head_001/codes"]
    x = d[()]
    x[3] ^= 0x10
    d[...] = x
EOF
fail_case dequantize "codes file with one edited byte" 1 "/layer_001/values/head_001: dataset 'codes' fails its checksum" -- \
    "$TQ" dequantize "$R/codes_edited.h5" -o "$O/x.h5"
fail_case info "file locked by a writer" 1 "the file is locked by another process" -- flock -x "$G" "$TQ" info "$G"
fail_case quantize "finite 1e30 input" 1 "norm [0-9.e+]+ of vector 0 overflows fp16 .*use --norms fp32" -- \
    "$TQ" quantize "$B/big1e30.h5" --method turbo-mse --bits 2 -o "$O/x.h5"
# a failing run's leaks (issue 20: a LeakSanitizer report on a failing command): the sweep-family commands whose
# report or summary goes to a full stdout must end with their one line, no sanitizer report, under `make test
# SANITIZE=1` (the summary writer died with its ranking array dead and unfreed: LSan reported it)
for c in "sweep $G --methods int8,kivi --bits 2" "sweep $G --methods int8 --bits 2 --format json" \
         "sensitivity $G --method turbo-mse --bits 2-3" "entropy $G --bits 2" \
         "sweep --synthetic gaussian --tokens 16 --dim 8 --methods kivi --bits 2"; do
    # shellcheck disable=SC2086
    fail_case "${c%% *}" "stdout full: ${c#* }" 1 "cannot write (the report|the summary|the standard output)" -- \
        bash -c '"$@" >/dev/full' _ "$TQ" $c
done

check "no stray temporary files anywhere" [ -z "$(find "$T" -name '*.tmp.*')" ]
finish
