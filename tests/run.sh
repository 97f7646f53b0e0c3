#!/usr/bin/env bash
# run.sh: runs every unit test program, every CLI test script (tests/cli/*.sh) and every Python check
# (tests/py/test_*.py), adds up their "N passed, N failed[, N skipped]" lines and ends with the total.
# Environment from the Makefile: TQ (the tq binary), BUILD (build dir with tests/). The programs are independent
# (each works in its own mktemp folder), so TQ_TEST_JOBS of them (default: the machine's cores) run at once, the
# slowest started first; results print in the fixed order below, each with its wall and CPU (user + sys) seconds,
# then the slowest by CPU. TQ_TEST_JOBS=1 runs them one by one. With TQ_LANES (tests/lanes.sh; .ci/run sets it) the
# programs take their turns on lanes shared with other runners instead.
set -u
cd "$(dirname "$0")/.."
export TQ BUILD
export TQ_TMP=$(mktemp -d /tmp/tq-test.XXXXXX)
# Programs share the cores (several at once), so an OpenMP thread that waits at a barrier sleeps instead of spinning
# on a core another program needs (test_turbo_simd, two at once: 22 -> 9 CPU s each). Numbers do not change: the
# policy decides only how idle threads wait.
export OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-passive}
# python3 resolved once: where it is a version manager's shim (pyenv's costs ~0.13 CPU s a call), the suite's ~400
# python3 runs go straight to the interpreter the shim picks here (~50 CPU s of CI)
py=$(python3 -c 'import sys; print(sys.executable)' 2>/dev/null)
if [[ $py =~ ^[A-Za-z0-9_./+-]+$ ]] && [ -x "$py" ]; then
    mkdir -p "$TQ_TMP/bin" && printf '#!/bin/sh\nexec %s "$@"\n' "$py" >"$TQ_TMP/bin/python3" &&
        chmod +x "$TQ_TMP/bin/python3" && export PATH=$TQ_TMP/bin:$PATH
fi
trap 'rm -rf "$TQ_TMP"' EXIT
jobs_max=${TQ_TEST_JOBS:-$(nproc 2>/dev/null || echo 1)}
[ "$jobs_max" -ge 1 ] 2>/dev/null || jobs_max=1
tp=0; tf=0; ts=0; broken=()

# every program, in report order: name, kind (unit | cli | py), path
names=(); kinds=(); paths=()
for t in "$BUILD"/tests/test_*; do [ -x "$t" ] && { names+=("$(basename "$t")"); kinds+=(unit); paths+=("$t"); }; done
for t in tests/cli/*.sh; do
    [ -f "$t" ] && [ "$(basename "$t")" != lib.sh ] && { names+=("$(basename "$t")"); kinds+=(cli); paths+=("$t"); }
done
for t in tests/py/test_*.py; do [ -f "$t" ] && { names+=("$(basename "$t")"); kinds+=(py); paths+=("$t"); }; done

# start order: the slowest first (by CPU, the larger of the two builds'), so that the lanes finish together; then the
# rest in order
slow="test_closed_loop test_mpi.sh test_sensitivity_closed_loop.sh test_python_binding.py test_valgrind.sh
test_generate.sh test_tokenizer_llama.py test_perplexity.sh test_closed_loop_numpy.py test_robustness.sh test_turbo_simd
test_turbo test_dump_model.sh test_validate.sh test_model test_paper test_quantize.sh test_determinism.sh
test_attention_spec test_synth.sh"
sorted=()
for s in $slow; do for i in "${!names[@]}"; do [ "${names[$i]}" = "$s" ] && sorted+=("$i"); done; done
for i in "${!names[@]}"; do [[ " ${sorted[*]} " == *" $i "* ]] || sorted+=("$i"); done

# Under the sanitizers (BUILD=.../build/san) a Python check that never runs $TQ (the Python binding's libtq.so is the
# plain build's; the others are Python alone), and test_python_binding.py (its subject is that libtq.so: its CLI
# comparisons repeat commands the CLI tests run under the sanitizers), would repeat the plain suite's run byte for
# byte: they skip there (~145 CPU seconds of CI).
san_rerun() {
    [[ "$BUILD" == */build/san* ]] || return 1
    [ "$(basename "$1")" = test_python_binding.py ] || ! grep -q 'environ.get("TQ")' "$1"
}
R="$TQ_TMP/results"
mkdir -p "$R"
run_bg() { # index: runs names[i] with its output, stderr, exit status and times in $R/i.*
    local i=$1
    (
        TIMEFORMAT='%R %U %S'
        local run=("${paths[$i]}")
        case ${kinds[$i]} in cli) run=(bash "${paths[$i]}") ;; py) run=(python3 "${paths[$i]}") ;; esac
        if [ "${kinds[$i]}" = py ] && san_rerun "${paths[$i]}"; then
            run=(bash -c 'echo "SKIP under the sanitizers: its subject is build/libtq.so or Python, not the sanitized \
build (the plain suite runs it)" >&2; echo "0 passed, 0 failed, 1 skipped"')
        fi
        { time "${run[@]}" >"$R/$i.out" 2>"$R/$i.err"; echo $? >"$R/$i.rc"; } 2>"$R/$i.time"
        lane_give
    ) &
}
source tests/lanes.sh
lanes_open "$jobs_max"
for i in "${sorted[@]}"; do
    lane_take
    run_bg "$i"
done
wait

report() { # index
    local i=$1 name=${names[$1]} rc line p f s t
    rc=$(cat "$R/$i.rc" 2>/dev/null || echo 255)
    read -r tw tu tsys <"$R/$i.time" 2>/dev/null || { tw=0; tu=0; tsys=0; }
    t=$(awk -v w="$tw" -v u="$tu" -v s="$tsys" 'BEGIN { printf "[%6.1f s, cpu %6.1f s]", w, u + s }')
    printf '%s %s %s\n' "$(awk -v u="$tu" -v s="$tsys" 'BEGIN { printf "%.1f", u + s }')" "$tw" "$name" >>"$R/cpu"
    line=$(grep -E '^[0-9]+ passed, [0-9]+ failed' "$R/$i.out" | tail -n 1)
    if [ -z "$line" ]; then
        broken+=("$name (rc $rc, no result line)"); tf=$((tf + 1))
        printf '  %-28s CRASHED rc=%d %s\n' "$name" "$rc" "$t"; sed 's/^/    /' "$R/$i.err" | tail -n 20
        return
    fi
    p=$(sed -E 's/^([0-9]+) passed.*/\1/' <<<"$line")
    f=$(sed -E 's/^[0-9]+ passed, ([0-9]+) failed.*/\1/' <<<"$line")
    s=$(sed -nE 's/.*, ([0-9]+) skipped.*/\1/p' <<<"$line"); s=${s:-0}
    if [ "$rc" != 0 ] && [ "$f" = 0 ]; then f=1; broken+=("$name (rc $rc)"); fi
    tp=$((tp + p)); tf=$((tf + f)); ts=$((ts + s))
    printf '  %-28s %-40s %s\n' "$name" "$line" "$t"
    if [ "$f" != 0 ]; then sed 's/^/    /' "$R/$i.err" | grep -E 'FAIL|error|Error|ERROR' | head -n 30; fi
    grep -h '^SKIP' "$R/$i.err" | sed 's/^/    /'
}
last=""
for i in "${!names[@]}"; do
    if [ "${kinds[$i]}" != "$last" ]; then
        case ${kinds[$i]} in
            unit) echo "unit tests ($BUILD/tests):" ;;
            cli) echo "CLI tests (tests/cli):" ;;
            py) echo "Python checks (tests/py):" ;;
        esac
        last=${kinds[$i]}
    fi
    report "$i"
done
echo "slowest by CPU (user + sys s, wall s; ${TQ_LANES:+on lanes shared with other runners}${TQ_LANES:-$jobs_max at a time}):"
sort -rn "$R/cpu" | head -n 8 | awk '{ printf "  %-28s cpu %7.1f  wall %7.1f\n", $3, $1, $2 }'
awk '{ c += $1 } END { printf "  all programs: cpu %.1f s\n", c }' "$R/cpu"
[ ${#broken[@]} -gt 0 ] && printf 'broken: %s\n' "${broken[@]}"
echo "$tp passed, $tf failed, $ts skipped"
[ "$tf" = 0 ]
