#!/usr/bin/env bash
# demo.sh: the main job, run by `make demo` — describe the bundled real dump, sweep the main methods over it at
# 2-4 bits, and leave results/demo/ (sweep.csv, summary.md, error_vs_bits.png, error_by_tensor.png). Everything is made
# in build/demo first; a file replaces results/demo's copy only when its content really changed (numeq.py: text equal
# and numbers within 1e-6 relative — another CPU's SIMD and BLAS kernels round the last printed digit differently),
# and the figures are redrawn only then, so `make demo` leaves the work tree clean unless the results moved.
set -euo pipefail
cd "$(dirname "$0")/.."
TQ=${TQ:-./tq}
DUMP=datasets/smollm2-135m.h5
OUT=results/demo
NEW=build/demo
rm -rf "$NEW"
mkdir -p "$OUT" "$NEW"
echo "== tq info $DUMP"
"$TQ" info "$DUMP" | tee "$NEW/info.md"
echo
echo "== tq sweep $DUMP --methods turbo-mse,turbo-prod,polar,kivi,int8 --bits 2-4 (all layers and heads)"
"$TQ" sweep "$DUMP" --methods turbo-mse,turbo-prod,polar,kivi,int8 --bits 2-4 -o "$NEW/sweep.csv"
echo
python3 scripts/plot_demo.py "$NEW/sweep.csv" "$NEW"
python3 scripts/plot_sweep.py "$NEW/sweep.csv" "$NEW/error_by_tensor.png" >/dev/null
echo
changed=0
for f in info.md sweep.csv summary.md; do
    if [ -f "$OUT/$f" ] && python3 tests/golden/numeq.py "$OUT/$f" "$NEW/$f" >/dev/null; then continue; fi
    cp "$NEW/$f" "$OUT/$f"
    changed=1
    echo "demo: $OUT/$f changed"
done
for f in error_vs_bits.png error_by_tensor.png; do
    if [ "$changed" = 1 ] || [ ! -f "$OUT/$f" ]; then cp "$NEW/$f" "$OUT/$f"; fi
done
if [ "$changed" = 1 ]; then echo "demo: results changed: $OUT/ updated (sweep.csv: every slice; summary.md; figures)"
else echo "demo: results equal to $OUT/ (to 1e-6 relative); nothing rewritten (this run is in $NEW/)"; fi
