#!/usr/bin/env bash
# demo.sh: the main job, run by `make demo` — describe the bundled real dump, sweep the main methods over it at
# 2-4 bits, and leave results/demo/ (sweep.csv, summary.md, error_vs_bits.png).
set -euo pipefail
cd "$(dirname "$0")/.."
TQ=${TQ:-./tq}
DUMP=datasets/smollm2-135m.h5
OUT=results/demo
mkdir -p "$OUT"
echo "== tq info $DUMP"
"$TQ" info "$DUMP" | tee "$OUT/info.md"
echo
echo "== tq sweep $DUMP --methods turbo-mse,turbo-prod,polar,kivi,int8 --bits 2-4 (all layers and heads)"
"$TQ" sweep "$DUMP" --methods turbo-mse,turbo-prod,polar,kivi,int8 --bits 2-4 --threads 2 -o "$OUT/sweep.csv"
echo
python3 scripts/plot_demo.py "$OUT/sweep.csv" "$OUT"
echo
echo "demo: wrote $OUT/sweep.csv (every slice), $OUT/summary.md and $OUT/error_vs_bits.png"
