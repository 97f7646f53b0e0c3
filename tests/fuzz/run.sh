#!/usr/bin/env bash
# run.sh BIN...: runs each libFuzzer harness for FUZZ_SECONDS (default 60) on a working copy of its seed corpus
# (tests/fuzz/corpus/<name>/ -> build/fuzz/corpus/<name>/, new inputs stay out of git), in fork mode so that a crash
# inside libhdf5 (not instrumented, not ours) does not end the run. Each crash is replayed and sorted by its first
# frame outside the sanitizer runtime: in tq's code (lib/, cmd/, tests/fuzz/) it fails the run; in libhdf5 it is
# recorded. Writes build/fuzz/summary.tsv: name, seconds, execs, corpus files, tq / hdf5 / not reproduced crashes.
# FUZZ_JOBS harnesses (default: the machine's cores) run at once, each for FUZZ_SECONDS of wall time (with TQ_LANES,
# tests/lanes.sh, each takes one of the lanes it shares with other runners instead); their lines and table rows come
# out in the order given.
set -u
cd "$(dirname "$0")/../.."
S=${FUZZ_SECONDS:-60}
export OPENBLAS_NUM_THREADS=1 ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:allocator_may_return_null=1}
export LSAN_OPTIONS=${LSAN_OPTIONS:-suppressions=$PWD/tests/fuzz/lsan.supp:print_suppressions=0}
out=build/fuzz; mkdir -p "$out/crashes"
printf 'fuzzer\tartifact\tclass\tkind\tframe\n' >"$out/crashes.tsv"
printf 'name\tseconds\texecs\tcorpus\ttq_crashes\thdf5_crashes\tnot_reproduced\n' >"$out/summary.tsv"
jobs_max=${FUZZ_JOBS:-$(nproc 2>/dev/null || echo 1)}
[ "$jobs_max" -ge 1 ] 2>/dev/null || jobs_max=1
part=$(mktemp -d /tmp/tq-fuzzrun.XXXXXX)
trap 'rm -rf "$part"' EXIT
# one harness: its console lines in $part/NAME.txt, its rows in $part/NAME.{crashes,summary}, 1 in $part/NAME.failed
# when tq crashed
fuzz_one() {
    local bin=$1 name seed work log t0 t1 execs ncorp tqc h5c nrep c rep rrc frame kind fn cls
    name=$(basename "$bin"); name=${name#fuzz_}
    seed=tests/fuzz/corpus/$name; work=$out/corpus/$name
    mkdir -p "$work" "$seed"
    rm -f "$out/crashes/$name-"*
    log=$out/$name.log
    t0=$(date +%s)
    "$bin" -fork=1 -ignore_crashes=1 -ignore_ooms=1 -ignore_timeouts=1 -max_total_time="$S" -timeout=5 \
        -rss_limit_mb=3072 -artifact_prefix="$out/crashes/$name-" "$work" "$seed" >"$log" 2>&1
    t1=$(date +%s)
    execs=$(grep -oE '^#[0-9]+' "$log" | tail -n 1 | tr -d '#')
    ncorp=$(ls "$work" | wc -l)
    tqc=0; h5c=0; nrep=0
    for c in "$out/crashes/$name-"*; do
        [ -f "$c" ] || continue
        rep=$(timeout 60 "$bin" -timeout=5 -rss_limit_mb=3072 "$c" 2>&1); rrc=$?
        if [ $rrc = 0 ]; then # e.g. a leak seen once in fork mode: replayed alone, clean
            nrep=$((nrep + 1)); echo "  not reproduced $(basename "$c")" >>"$part/$name.txt"; continue
        fi
        # first stack frame outside the sanitizer runtime, libFuzzer, libc (its named frames and its sysdeps/ sources:
        # glibc's own memcpy variants such as __memcpy_avx_unaligned_erms) and the allocator
        frame=$(grep -E '^ +#[0-9]+ ' <<<"$rep" | grep -vE ' in (__sanitizer|__asan|__lsan|__ubsan|__interceptor|fuzzer::|__libc|__pthread|__mem|__str|raise|abort|malloc|calloc|realloc|free|mem(cpy|move|set|cmp)|str[a-z]+)\b|__(mem|str)[a-z_]+|sysdeps/|libc\.so|libFuzzer|\(.*fuzz_[a-z]+\+0x' | head -n 1)
        kind=$(grep -m1 -oE 'ERROR: [A-Za-z]+: [A-Za-z-]+|runtime error: .*' <<<"$rep")
        fn=$(grep -m1 -oE ' in H5[A-Za-z0-9_]+' <<<"$rep" | sed 's/ in //')  # nearest named HDF5 function
        if grep -q 'libhdf5' <<<"$frame"; then
            h5c=$((h5c + 1)); cls=hdf5
            frame="libhdf5 ${fn:-?}"; echo "  hdf5 $(basename "$c"): $kind in $frame" >>"$part/$name.txt"
        else
            tqc=$((tqc + 1)); cls=tq; echo "  TQ CRASH $(basename "$c"): $kind at $frame" >>"$part/$name.txt"
        fi
        printf '%s\t%s\t%s\t%s\t%s\n' "$name" "$(basename "$c")" $cls "$kind" \
            "$(sed -E 's/^ +#[0-9]+ 0x[0-9a-f]+ (in )?//; s/ \(BuildId.*//' <<<"$frame")" >>"$part/$name.crashes"
    done
    printf '%s\t%d\t%s\t%d\t%d\t%d\t%d\n' "$name" $((t1 - t0)) "${execs:-0}" "$ncorp" $tqc $h5c $nrep >>"$part/$name.summary"
    printf 'fuzz %-8s %4ds  %9s execs  corpus %5d  crashes: tq %d, hdf5 %d, not reproduced %d\n' "$name" $((t1 - t0)) \
        "${execs:-0}" "$ncorp" $tqc $h5c $nrep >>"$part/$name.txt"
    [ $tqc = 0 ] || echo 1 >"$part/$name.failed"
}
source tests/lanes.sh
lanes_open "$jobs_max"
for bin in "$@"; do
    lane_take
    { fuzz_one "$bin"; lane_give; } &
done
wait
failed=0
for bin in "$@"; do
    name=$(basename "$bin"); name=${name#fuzz_}
    cat "$part/$name.txt" 2>/dev/null
    cat "$part/$name.crashes" >>"$out/crashes.tsv" 2>/dev/null
    cat "$part/$name.summary" >>"$out/summary.tsv" 2>/dev/null
    [ -e "$part/$name.failed" ] && failed=1
done
rm -f /dev/shm/tq-fuzz.* /tmp/tq-fuzz.* 2>/dev/null  # files of children killed by a crash
exit $failed
