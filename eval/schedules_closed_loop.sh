#!/usr/bin/env bash
# schedules_closed_loop.sh: regenerates results/schedules/ — bit schedules measured in the closed loop on both bundled
# models (SmolLM2-135M, Gemma-3-270M): uniform 2/3/4 bits, the seed article's rank rule, the peers' boundary rule and
# tq's optimal allocation under four sensitivity metrics (offline attn_kl, out_rel and out_proj on a dump of the same
# tokens; closed-loop cl_kl), at 2.5, 3.0 and 3.5 average code bits; turbo-mse keys (values exact), candidate widths
# 2/3/4, per layer. Every schedule is run by `tq perplexity --schedule` (next-token KL and dppl against the exact
# cache). Also the rank agreement (Spearman) of the closed-loop scan with the offline ones. Scans and dumps are kept
# in $WORK and reused. Usage: CL_TOKENS_gemma3=64 bash eval/schedules_closed_loop.sh   (MODELS, TOKENS, CL_TOKENS,
# SEEDS, TEXT, HELDOUT override; one to two hours on a shared 2-core machine, most of it the closed-loop scans)
set -euo pipefail
cd "$(dirname "$0")/.."
TQ=${TQ:-$PWD/tq}
OUT=${OUT:-results/schedules}
W=${WORK:-build/schedules}
TEXT=${TEXT:-datasets/text/tale-of-two-cities.txt}
TOKENS=${TOKENS:-256}
# closed-loop scans over the first CL_TOKENS tokens (one pass per layer and width: 54 passes for Gemma 3); when it
# differs from TOKENS the offline scans are repeated on that prefix (sens$CL_TOKENS-*.json) for the rank agreement.
# results/schedules/ has SmolLM2 at 256 and Gemma 3 at 64 (CL_TOKENS_gemma3=64): the shared machine it ran on gave
# the 256-token Gemma scan too little CPU to finish in the session
CL_TOKENS=${CL_TOKENS:-$TOKENS}
SEEDS=${SEEDS:-0}
MODELS=${MODELS:-"smollm2 gemma3"}
M=turbo-mse
BUDGETS="3.0 2.5 3.5" # 3.0 first: the acceptance budget
METRICS=${METRICS:-"attn_kl out_rel out_proj cl_kl"}
# held-out text: the 3.0-bit schedules, fitted on $TEXT, run unchanged over the first $TOKENS tokens of another
# (default: Pride and Prejudice + A Scandal in Bohemia, as eval/schedule_real.sh; HELDOUT=none skips it)
HELDOUT=${HELDOUT:-$W/heldout.txt}
[ -x "$TQ" ] || { echo "schedules_closed_loop: build tq first (make)" >&2; exit 1; }
mkdir -p "$OUT" "$W"
[ "$HELDOUT" != "$W/heldout.txt" ] || { cat datasets/text/pride-and-prejudice.txt; printf '\n\n'
                                        cat datasets/text/scandal-in-bohemia.txt; } > "$W/heldout.txt"
# rank fractions over 2,3,4 bits (least sensitive first), as eval/schedule_real.sh: the seed article's 25/50/25 at
# 3.0; at 2.5 and 3.5 the same rule on two widths (the more sensitive half one bit up)
frac() { case $1 in 2.5) echo 0.5,0.5,0 ;; 3.0) echo 0.25,0.5,0.25 ;; 3.5) echo 0,0.5,0.5 ;; esac; }
ppl() { # ppl NAME GGUF ARGS...: one tq perplexity run over ${PTEXT:-$TEXT}, kept when present
    local f=$W/$MODEL/ppl-$1.csv g=$2; shift 2
    [ -s "$f" ] && return
    echo "== $MODEL: $(basename "$f" .csv)" >&2
    "$TQ" perplexity "$g" --text "${PTEXT:-$TEXT}" --tokens "$TOKENS" --methods $M --values none --seed "$SEEDS" --threads 1 \
        --format csv "$@" -o "$f"
}

for MODEL in $MODELS; do
    G=$(bash scripts/get_models.sh "$MODEL")
    mkdir -p "$W/$MODEL" "$OUT/$MODEL"
    D=$W/$MODEL.h5
    [ -s "$D" ] || "$TQ" dump "$G" --text "$TEXT" --tokens "$TOKENS" --threads 1 -o "$D"
    var=CL_TOKENS_$MODEL
    NCL=${!var:-$CL_TOKENS}
    for met in $METRICS; do
        S=$OUT/$MODEL/sens-$met.json
        [ -s "$S" ] && continue
        echo "== $MODEL: sensitivity $met" >&2
        case $met in
            cl_kl) "$TQ" sensitivity "$G" --closed-loop --text "$TEXT" --tokens "$NCL" --method $M --bits 2-4 \
                       --threads 1 -o "$S" > "$OUT/$MODEL/sens-$met.md" ;;
            out_proj) "$TQ" sensitivity "$D" --model "$G" --metric $met --method $M --bits 2-4 -o "$S" \
                       > "$OUT/$MODEL/sens-$met.md" ;;
            *) "$TQ" sensitivity "$D" --metric $met --method $M --bits 2-4 -o "$S" > "$OUT/$MODEL/sens-$met.md" ;;
        esac
    done
    if [ "$NCL" != "$TOKENS" ]; then
        for met in attn_kl out_rel out_proj; do
            extra=(); [ $met = out_proj ] && extra=(--model "$G")
            S=$OUT/$MODEL/sens$NCL-$met.json
            [ -s "$S" ] || "$TQ" sensitivity "$D" --tokens "$NCL" --metric $met "${extra[@]}" --method $M --bits 2-4 \
                -o "$S" >/dev/null
        done
    fi
    ppl uniform-3 "$G" --bits 3
    for B in $BUDGETS; do
        for met in $METRICS; do
            "$TQ" mixed-schedule "$OUT/$MODEL/sens-$met.json" --budget "$B" \
                -o "$OUT/$MODEL/optimal-$met-$B.json" >/dev/null
            ppl "optimal-$met-$B" "$G" --schedule "$OUT/$MODEL/optimal-$met-$B.json"
        done
        # the rank rule ranks by the offline scan the seed article used (attention error of keys)
        "$TQ" mixed-schedule "$OUT/$MODEL/sens-attn_kl.json" --policy rank --fractions "$(frac "$B")" --budget "$B" \
            -o "$OUT/$MODEL/rank-$B.json" >/dev/null
        ppl "rank-$B" "$G" --schedule "$OUT/$MODEL/rank-$B.json"
        "$TQ" mixed-schedule "$OUT/$MODEL/sens-attn_kl.json" --policy boundary --budget "$B" \
            -o "$OUT/$MODEL/boundary-$B.json" >/dev/null
        ppl "boundary-$B" "$G" --schedule "$OUT/$MODEL/boundary-$B.json"
    done
    for b in 2 4; do ppl "uniform-$b" "$G" --bits $b; done # the plot's reference points
    if [ "$HELDOUT" != none ]; then
        PTEXT=$HELDOUT ppl heldout-uniform-3 "$G" --bits 3
        for f in "$OUT/$MODEL"/{optimal-*,rank,boundary}-3.0.json; do
            [ -s "$f" ] && PTEXT=$HELDOUT ppl "heldout-$(basename "$f" .json)" "$G" --schedule "$f"
        done
    fi
done
python3 eval/schedules_closed_loop.py --work "$W" --out "$OUT" $MODELS
