# lib.sh: helpers for the CLI test scripts. Each script sources this, calls the expect_* helpers, and ends with
# `finish`, which prints "N passed, N failed, N skipped". $TQ is the binary under test; $T a fresh scratch folder.
set -u
TQ=${TQ:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)/tq}
T=$(mktemp -d "${TQ_TMP:-/tmp}/cli.XXXXXX")
trap 'rm -rf "$T"' EXIT
_pass=0; _fail=0; _skip=0
ok()   { _pass=$((_pass + 1)); }
bad()  { _fail=$((_fail + 1)); echo "FAIL $*" >&2; }
skip() { _skip=$((_skip + 1)); echo "SKIP $*" >&2; }

# expect_fail NAME EXIT_CODE PATTERN -- cmd...: the command exits with EXIT_CODE, prints exactly one stderr line
# (starting "tq: ") that matches the extended regex PATTERN, and nothing on stdout.
expect_fail() {
    local name=$1 code=$2 pat=$3; shift 4
    local out err rc
    out=$("$@" 2>"$T/.err"); rc=$?; err=$(cat "$T/.err")
    if [ "$rc" != "$code" ]; then bad "$name: exit $rc, want $code; stderr: $err"; return; fi
    if [ "$(printf '%s\n' "$err" | wc -l)" != 1 ]; then bad "$name: want one stderr line, got: $err"; return; fi
    if ! grep -qE "^tq: " <<<"$err"; then bad "$name: stderr does not start with 'tq: ': $err"; return; fi
    if ! grep -qE -- "$pat" <<<"$err"; then bad "$name: stderr '$err' does not match /$pat/"; return; fi
    if [ -n "$out" ]; then bad "$name: stdout not empty: $out"; return; fi
    ok
}
# expect_ok NAME -- cmd...: exit 0; stdout saved in $T/out.
expect_ok() {
    local name=$1; shift 2
    "$@" >"$T/out" 2>"$T/.err"; local rc=$?
    if [ "$rc" != 0 ]; then bad "$name: exit $rc: $(cat "$T/.err")"; return 1; fi
    ok
}
# under_sanitizers: $TQ is the ASan + UBSan build (make test SANITIZE=1), where the model-heavy cases run smaller (the
# plain suite runs them at full size; README "CI time" lists them)
under_sanitizers() { [ -n "${TQ_SANITIZE:-}" ] || ldd "$TQ" 2>/dev/null | grep -q libasan; }
# check NAME CONDITION-COMMAND...
check() { local name=$1; shift; if "$@"; then ok; else bad "$name"; fi; }
finish() { echo "$_pass passed, $_fail failed, $_skip skipped"; [ "$_fail" = 0 ]; }
