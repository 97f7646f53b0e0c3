#!/usr/bin/env bash
# gemma3_findings.sh: the Gemma 3 findings of README "Real models" from the bundled dump datasets/gemma3-270m.h5 —
# tq info (windows, outlier ratios), tq sensitivity per layer (turbo-mse and kivi keys, attn_kl, 2-4 bits), a tq sweep
# of turbo-mse/kivi/polar at 2-4 bits, then scripts/plot_gemma3.py draws the per-layer plot and writes summary.md.
# Deterministic (seed 0, any --threads). Output: results/gemma3/.
set -euo pipefail
cd "$(dirname "$0")/.."
TQ=${TQ:-./tq}
D=datasets/gemma3-270m.h5
OUT=results/gemma3
mkdir -p "$OUT"
"$TQ" info "$D" >"$OUT/info.md"
"$TQ" info "$D" --json >"$OUT/info.json"
"$TQ" info datasets/smollm2-135m.h5 --json >"$OUT/smollm2_info.json"
for m in turbo-mse kivi; do
    "$TQ" sensitivity "$D" --method "$m" --bits 2-4 --threads 2 -o "$OUT/sensitivity_$m.json" >"$OUT/sensitivity_$m.md"
done
"$TQ" sweep "$D" --methods turbo-mse,kivi,polar --bits 2-4 --threads 2 -o "$OUT/sweep.csv"
python3 scripts/plot_gemma3.py "$OUT"
