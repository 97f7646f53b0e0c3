#!/usr/bin/env bash
# test_window.sh: per-layer attention specs (dump format 2) from the outside. `tq synth --window/--global-layers/
# --attn-scale/--attn-softcap` writes them; `tq sweep`, `tq entropy` and `tq sensitivity` honour them: on the same
# data, a windowed layer's attention metrics differ from the global dump's, a global layer's and every non-attention
# metric are identical, a window >= T and an explicit 1/sqrt(d) scale change nothing, and the window shows per row.
source "$(dirname "$0")/lib.sh"
SY=(--dist structured --layers 3 --heads 2 --q-heads 4 --tokens 160 --dim 32 --seed 9)
expect_ok "synth global" -- "$TQ" synth "${SY[@]}" -o "$T/g.h5"
expect_ok "synth windowed" -- "$TQ" synth "${SY[@]}" --window 24 --global-layers 1 -o "$T/w.h5"
expect_ok "synth W = T" -- "$TQ" synth "${SY[@]}" --window 160 -o "$T/wt.h5"
expect_ok "synth scale 1/sqrt(d)" -- "$TQ" synth "${SY[@]}" --attn-scale 0.17677669529663687 -o "$T/s1.h5"
expect_ok "synth scale, softcap" -- "$TQ" synth "${SY[@]}" --attn-scale 0.4 --attn-softcap 5 -o "$T/sc.h5"
expect_fail "global-layers alone" 2 "--global-layers applies with --window only" -- \
    "$TQ" synth "${SY[@]}" --global-layers 1 -o "$T/x.h5"
expect_fail "negative window" 2 "--window" -- "$TQ" synth "${SY[@]}" --window -1 -o "$T/x.h5"
expect_fail "global layer out of range" 2 "--global-layers" -- \
    "$TQ" synth "${SY[@]}" --window 8 --global-layers 3 -o "$T/x.h5"

# tq info shows the spec
expect_ok "info" -- "$TQ" info "$T/w.h5"
check "info window rows" test "$(grep -cE '^\| +[02] \| +24 \|' "$T/out")" = 2
check "info global row" grep -qE '^\| +1 \| +global \|' "$T/out"

for n in g w wt s1 sc; do
    "$TQ" sweep "$T/$n.h5" --methods kivi,turbo-prod --bits 2,3 --format csv -o "$T/$n.csv" 2>"$T/.err" || bad "sweep $n"
done
check "sweep windows and attention" python3 - "$T" <<'EOF'
import csv, sys
T = sys.argv[1]
rd = lambda n: list(csv.DictReader(open(f"{T}/{n}.csv")))
g, w, wt, s1, sc = (rd(n) for n in ("g", "w", "wt", "s1", "sc"))
ATT = ["attn_kl", "entropy", "entropy_q", "entropy_collapse", "top8", "out_rel"]
OTHER = ["nmse", "dmse", "cos", "ip_bias", "ip_rmse", "ip_nrmse", "ip_slope", "bits_total"]
assert len(g) == len(w) == len(wt) == len(s1) == len(sc) > 0
for a, b in zip(g, w):
    key = (a["layer"], a["kv_head"], a["tensor"], a["method"], a["params"])
    assert key == (b["layer"], b["kv_head"], b["tensor"], b["method"], b["params"]), key
    # the window column: 24 on layers 0 and 2, 0 on the global layer 1, -1 on the mixed dump-level aggregates
    want = {"0": "24", "1": "0", "2": "24", "-1": "-1"}[a["layer"]]
    assert b["window"] == want and a["window"] == "0", (key, a["window"], b["window"])
    for c in OTHER:
        assert a[c] == b[c], ("non-attention metric moved", key, c)
    for c in ATT:
        if a[c] == "":
            continue
        if a["layer"] == "1":
            assert a[c] == b[c], ("global layer moved", key, c)
        elif a["layer"] != "-1" and c in ("entropy", "attn_kl", "out_rel"):
            assert a[c] != b[c], ("window ignored", key, c, a[c])
        if c == "entropy" and a["layer"] in ("0", "2"):
            # 24 of up to 160 keys: the windowed entropy must be lower
            assert float(b[c]) < float(a[c]) - 0.05, (key, a[c], b[c])
# W >= T and an explicit 1/sqrt(d) are the global computation: every metric column equal
for x in (wt, s1):
    for a, b in zip(g, x):
        assert all(a[c] == b[c] for c in OTHER + ATT), ("W >= T or default scale differs", a["layer"], a["kv_head"])
assert {r["window"] for r in wt} == {"160"}
# scale 0.4 with soft-cap 5: attention metrics move on every layer, nothing else does
moved = 0
for a, b in zip(g, sc):
    assert all(a[c] == b[c] for c in OTHER)
    moved += a["entropy"] != b["entropy"] and a["entropy"] != ""
assert moved > 0
EOF

# tq entropy on the same dumps: its table carries the window and the entropies move
expect_ok "entropy windowed" -- "$TQ" entropy "$T/w.h5" --methods kivi --bits 2 --format csv -o "$T/ew.csv"
expect_ok "entropy global" -- "$TQ" entropy "$T/g.h5" --methods kivi --bits 2 --format csv -o "$T/eg.csv"
check "entropy honours the window" python3 - "$T" <<'EOF'
import csv, sys
T = sys.argv[1]
w, g = (list(csv.DictReader(open(f"{T}/{n}.csv"))) for n in ("ew", "eg"))
kw = [r for r in w if r["tensor"] == "keys"]
kg = [r for r in g if r["tensor"] == "keys"]
assert kw and len(kw) == len(kg)
assert all(float(a["entropy"]) < float(b["entropy"]) for a, b in zip(kw, kg)), (kw, kg)
EOF

# tq sensitivity: window per unit in the JSON, windowed layers' curves differ, the global layer's do not
expect_ok "sensitivity windowed" -- "$TQ" sensitivity "$T/w.h5" --method turbo-mse --bits 2,3 -o "$T/sw.json"
expect_ok "sensitivity global" -- "$TQ" sensitivity "$T/g.h5" --method turbo-mse --bits 2,3 -o "$T/sg.json"
check "sensitivity honours the window" python3 - "$T" <<'EOF'
import json, sys
T = sys.argv[1]
w, g = (json.load(open(f"{T}/{n}.json"))["rows"] for n in ("sw", "sg"))
assert [u["window"] for u in w] == [24, 0, 24] and all(u["window"] == 0 for u in g), w
assert w[1]["metric"] == g[1]["metric"], "global layer moved"
assert w[0]["metric"] != g[0]["metric"] and w[2]["metric"] != g[2]["metric"], "window ignored"
EOF
# tq quantize --emit-recon keeps each layer's spec, and so does dequantize (the codes file keeps the dump's layer
# attributes in /provenance)
expect_ok "quantize emit-recon" -- "$TQ" quantize "$T/w.h5" --method kivi --bits 2 -o "$T/c.h5" --emit-recon "$T/r.h5"
expect_ok "dequantize" -- "$TQ" dequantize "$T/c.h5" -o "$T/dq.h5"
check "recon and dequantize keep the windows" python3 - "$TQ" "$T" <<'EOF'
import json, subprocess, sys
tq, T = sys.argv[1], sys.argv[2]
win = lambda p: [l["sliding_window"] for l in json.loads(subprocess.run([tq, "info", "--json", p],
                 capture_output=True, text=True).stdout)["layers"]]
assert win(f"{T}/r.h5") == [24, 0, 24] and win(f"{T}/dq.h5") == [24, 0, 24], (win(f"{T}/r.h5"), win(f"{T}/dq.h5"))
EOF
finish
