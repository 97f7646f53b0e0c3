#!/usr/bin/env bash
# check_repro.sh: `make repro QUICK=1`'s dataset tables (4, 5, 7, 8, 9; table 6 is timing) equal tests/golden/repro/,
# captured when eval/repro still ran `tq sweep`, `tq sensitivity`, `tq mixed-schedule` and `tq memory` as
# subprocesses, before it called the library in process. About 10 minutes,
# so not part of `make test`: run it after touching the engine, the formats or the metrics.
set -eu
cd "$(dirname "$0")/../.."
make --no-print-directory -s build/rel/eval/repro >/dev/null
O=$(mktemp -d /tmp/repro-check.XXXXXX)
trap 'rm -rf "$O"' EXIT
build/rel/eval/repro --out "$O" --quick --only 45789 >"$O/log" 2>&1 || { tail -n 5 "$O/log"; exit 1; }
bad=0
for f in tests/golden/repro/table[45789]*; do  # 1, 2, 3, 6: eval/check_paper.py (make repro-check)
    if cmp -s "$f" "$O/$(basename "$f")"; then echo "same   $(basename "$f")"; else echo "DIFFER $(basename "$f")"; bad=1; fi
done
exit $bad
