#!/usr/bin/env bash
# run.sh: runs every unit test program, every CLI test script (tests/cli/*.sh) and every Python check
# (tests/py/test_*.py), adds up their "N passed, N failed[, N skipped]" lines and ends with the total.
# Environment from the Makefile: TQ (the tq binary), BUILD (build dir with tests/).
set -u
cd "$(dirname "$0")/.."
export TQ BUILD
export TQ_TMP=$(mktemp -d /tmp/tq-test.XXXXXX)
trap 'rm -rf "$TQ_TMP"' EXIT
tp=0; tf=0; ts=0; broken=()

run_one() { # name, command...
    local name=$1; shift
    local out rc line
    out=$("$@" 2>"$TQ_TMP/stderr"); rc=$?
    line=$(grep -E '^[0-9]+ passed, [0-9]+ failed' <<<"$out" | tail -n 1)
    if [ -z "$line" ]; then
        broken+=("$name (rc $rc, no result line)"); tf=$((tf + 1))
        printf '  %-28s CRASHED rc=%d\n' "$name" "$rc"; sed 's/^/    /' "$TQ_TMP/stderr" | tail -n 20
        return
    fi
    local p f s
    p=$(sed -E 's/^([0-9]+) passed.*/\1/' <<<"$line")
    f=$(sed -E 's/^[0-9]+ passed, ([0-9]+) failed.*/\1/' <<<"$line")
    s=$(sed -nE 's/.*, ([0-9]+) skipped.*/\1/p' <<<"$line"); s=${s:-0}
    if [ "$rc" != 0 ] && [ "$f" = 0 ]; then f=1; broken+=("$name (rc $rc)"); fi
    tp=$((tp + p)); tf=$((tf + f)); ts=$((ts + s))
    printf '  %-28s %s\n' "$name" "$line"
    if [ "$f" != 0 ]; then sed 's/^/    /' "$TQ_TMP/stderr" | grep -E 'FAIL|error|Error|ERROR' | head -n 30; fi
    grep -h '^SKIP' "$TQ_TMP/stderr" | sed 's/^/    /'
}

echo "unit tests ($BUILD/tests):"
for t in "$BUILD"/tests/test_*; do
    [ -x "$t" ] || continue
    run_one "$(basename "$t")" "$t"
done
echo "CLI tests (tests/cli):"
for t in tests/cli/*.sh; do
    [ -f "$t" ] || continue
    [ "$(basename "$t")" = lib.sh ] && continue
    run_one "$(basename "$t")" bash "$t"
done
if ls tests/py/test_*.py >/dev/null 2>&1; then
    echo "Python checks (tests/py):"
    for t in tests/py/test_*.py; do run_one "$(basename "$t")" python3 "$t"; done
fi
[ ${#broken[@]} -gt 0 ] && printf 'broken: %s\n' "${broken[@]}"
echo "$tp passed, $tf failed, $ts skipped"
[ "$tf" = 0 ]
