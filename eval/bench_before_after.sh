#!/usr/bin/env bash
# bench_before_after.sh: a refactor's cost, measured. Runs the same tq sweep with two binaries (the tree before and
# after a change), alternated in one call so both see the same machine, checks that their outputs agree (every column
# the two tables share, value for value as printed, with the pre-tidy schema's 'head' / 'all' read as kv_head / -1:
# a refactor changes no number; columns added in between are listed) and reports each binary's median wall and CPU
# time and the after/before ratio.
# Usage: eval/bench_before_after.sh OLD_TQ NEW_TQ [REPS] [REPORT]   (default 5 repetitions; the table to stdout
#        and, when given, to the file REPORT). The sweep: the bundled SmolLM2 dump, every layer, turbo-mse, turbo-prod,
#        kivi and polar at 2-4 bits, --threads 1 (the engine's own cost, no thread scheduling); DUMP=FILE sweeps
#        another dump (one both binaries read: a binary older than dump format 2 reads the format-1 file of its
#        own tree). BEFORE=TEXT and AFTER=TEXT label the binaries in the report (default: their paths).
set -euo pipefail
[ $# -ge 2 ] || { echo "usage: eval/bench_before_after.sh OLD_TQ NEW_TQ [REPS] [REPORT]" >&2; exit 2; }
old=$(realpath "$1"); new=$(realpath "$2"); reps=${3:-5}; out=${4:-}
cd "$(dirname "$0")/.."
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
args=(sweep "${DUMP:-datasets/smollm2-135m.h5}" --threads 1 --methods turbo-mse,turbo-prod,kivi,polar --bits 2-4
      --format csv)
one() { # one BIN TAG: append "wall cpu" of one run to $tmp/TAG.t, keep its output
    /usr/bin/time -f "%e %U %S" -o "$tmp/t" "$1" "${args[@]}" -o "$tmp/$2.csv" 2>"$tmp/err" >/dev/null ||
        { echo "bench_before_after: $1 failed: $(grep -v '^Command exited' "$tmp/err" | tail -n 2)" >&2
          exit 1; }
    awk '{print $1, $2 + $3}' "$tmp/t" >>"$tmp/$2.t"
}
for r in $(seq "$reps"); do one "$old" old; one "$new" new; done
DUMP_NAME=$(basename "${args[1]}") python3 - "$tmp" "$reps" "$old" "$new" "$out" <<'PY'
import csv, statistics as st, sys, time, os
tmp, reps, old, new, out = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4], sys.argv[5]
def rows_of(path):  # the tables before the tidy schema named kv_head 'head' and wrote 'all' for -1
    return [{("kv_head" if k == "head" else k): ("-1" if v == "all" else v) for k, v in r.items()}
            for r in csv.DictReader(open(path))]
a, b = (rows_of(f"{tmp}/{k}.csv") for k in ("old", "new"))
common = [c for c in a[0] if c in b[0]]
added = [c for c in b[0] if c not in a[0]]
bad = [(i, c) for i, (x, y) in enumerate(zip(a, b)) for c in common if x[c] != y[c]]
if len(a) != len(b) or bad:
    sys.exit(f"bench_before_after: outputs differ: {len(a)} vs {len(b)} rows; first differences {bad[:5]}")
rows = {k: [tuple(map(float, l.split())) for l in open(f"{tmp}/{k}.t")] for k in ("old", "new")}
med = {k: (st.median(w for w, _ in v), st.median(c for _, c in v)) for k, v in rows.items()}
lines = [f"`eval/bench_before_after.sh` on {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, load average "
         f"{os.getloadavg()[0]:.2f}, {reps} alternated runs each of `tq sweep {os.environ.get('DUMP_NAME', 'DUMP')} "
         f"--threads 1 "
         f"--methods turbo-mse,turbo-prod,kivi,polar --bits 2-4`; {len(a)} rows, equal in all {len(common)} shared "
         f"columns" + (f" (added since: {', '.join(added)})" if added else "") + ".", "",
         f"before: {os.environ.get('BEFORE') or '`' + old + '`'}  ",
         f"after: {os.environ.get('AFTER') or '`' + new + '`'}", "",
         "| binary | median wall s | median CPU s | runs (wall) |", "|---|---:|---:|---|"]
for k in ("old", "new"):
    lines.append(f"| {'before' if k == 'old' else 'after'} | {med[k][0]:.2f} | {med[k][1]:.2f} | "
                 f"{', '.join(f'{w:.2f}' for w, _ in rows[k])} |")
lines += ["", f"after / before: wall {med['new'][0] / med['old'][0]:.3f}, CPU {med['new'][1] / med['old'][1]:.3f}"]
text = "\n".join(lines) + "\n"
sys.stdout.write(text)
if out:
    open(out, "w").write(text)
PY
