#!/usr/bin/env bash
# test_sweep.sh: `tq sweep` and `tq entropy` from the outside — the CSV header is the documented one and parses with
# Python's csv module, JSON parses, Markdown tables have consistent column counts, results do not depend on
# --threads, aggregates are the vector-weighted means of their slices, and bad options exit 2 with one message.
source "$(dirname "$0")/lib.sh"

HEADER="dump,scope,layer,window,kv_head,tensor,method,params,bits_code,bits_total,compression,nmse,dmse,cos,ip_bias,ip_rmse,ip_nrmse,ip_slope,attn_kl,entropy,entropy_q,entropy_collapse,top8,out_rel"
SYN=(--synthetic gaussian,structured --layers 2 --heads 2 --q-heads 4 --tokens 64 --dim 32)

# a small dump written with h5py (GQA 4:2, with a zero key vector), independent of tq synth
python3 - "$T/d.h5" <<'EOF'
import sys, h5py, numpy as np
r = np.random.default_rng(1)
with h5py.File(sys.argv[1], "w") as f:
    f.attrs.update(tq_format="tq-kv", tq_format_version=1, model="test", source="test_sweep.sh", rope="none", n_layers=2)
    for l in range(2):
        g = f.create_group(f"layer_{l:03d}")
        k = r.standard_normal((2, 48, 32)).astype(np.float32)
        k[1, 5] = 0
        g["keys"] = k
        g["values"] = r.standard_normal((2, 48, 32)).astype(np.float32)
        g["queries"] = r.standard_normal((4, 48, 32)).astype(np.float32)
EOF

# CSV: documented header, every row the same number of fields, numbers parse, absent metrics empty
expect_ok "csv" -- "$TQ" sweep "$T/d.h5" --methods kivi,int8 --bits 2,4 --format csv
cp "$T/out" "$T/a.csv"
check "csv header" [ "$(head -n 1 "$T/a.csv")" = "$HEADER" ]
check "csv parses" python3 - "$T/a.csv" <<'EOF'
import csv, sys, math
rows = list(csv.DictReader(open(sys.argv[1])))
# 2 layers x (2 heads + 1 aggregate) x 2 tensors x 3 configs (kivi 2, kivi 4, int8) + 2 tensors x 3 overall rows
assert len(rows) == 2 * 3 * 2 * 3 + 2 * 3, len(rows)
for r in rows:
    for c in ("bits_total", "nmse", "cos"):
        assert math.isfinite(float(r[c])), (c, r[c])
    if r["tensor"] == "values":
        assert r["attn_kl"] == "" and r["ip_bias"] == "" and r["out_rel"] != "", r   # absent, never "nan"
    else:
        assert r["out_rel"] == "" and 0 <= float(r["top8"]) <= 1
    assert "nan" not in ",".join(r.values()).lower()
    # compression = 16 / bits_total (%.9g rounding: relative 1e-8)
    assert abs(float(r["compression"]) - 16 / float(r["bits_total"])) <= 1e-8 * float(r["compression"])
# aggregates are the means of their slices (equal vector counts here): layer 0, keys, first config
sl = [r for r in rows if r["layer"] == "0" and r["tensor"] == "keys" and r["params"] == "bits=2,group=32"]
heads, agg = [r for r in sl if r["scope"] == "slice"], [r for r in sl if r["scope"] == "layer"][0]
assert all(r["kv_head"] != "-1" for r in heads) and agg["kv_head"] == "-1"
for c in ("nmse", "ip_rmse", "attn_kl", "entropy"):
    m = sum(float(r[c]) for r in heads) / len(heads)
    assert abs(float(agg[c]) - m) <= 1e-8 * abs(m) + 1e-12, (c, agg[c], m)
e, eq = float(agg["entropy"]), float(agg["entropy_q"])
assert abs(float(agg["entropy_collapse"]) - (1 - eq / e)) <= 1e-8
EOF

# --threads 2 gives byte-identical output (no order-dependent reductions)
expect_ok "threads 2" -- "$TQ" sweep "$T/d.h5" --methods kivi,int8 --bits 2,4 --format csv --threads 2
check "threads identical" cmp -s "$T/out" "$T/a.csv"

# the same with sampled inner products (1500 tokens: 1.1M pairs per kv head > the 2^20 cap)
BIG=(--synthetic gaussian --layers 1 --heads 2 --tokens 1500 --dim 32 --methods kivi --bits 2 --format csv)
expect_ok "sampled threads 1" -- "$TQ" sweep "${BIG[@]}" --threads 1
cp "$T/out" "$T/big1.csv"
expect_ok "sampled threads 2" -- "$TQ" sweep "${BIG[@]}" --threads 2
check "sampled threads identical" cmp -s "$T/out" "$T/big1.csv"

# --layers/--heads selection: only layer 1, head 0
expect_ok "select" -- "$TQ" sweep "$T/d.h5" --methods int8 --layers 1 --heads 0 --format csv
check "select rows" python3 -c "
import csv,sys; rows=list(csv.DictReader(open('$T/out')))
assert {(r['scope'], r['layer'], r['kv_head']) for r in rows} == {('slice','1','0'), ('layer','1','-1'), ('dump','-1','-1')}, rows"

# JSON parses, columns match the CSV header, absent metrics are null
expect_ok "json" -- "$TQ" sweep "${SYN[@]}" --methods kivi --bits 3 --format json
check "json parses" python3 -c "
import json; d=json.load(open('$T/out'))
assert ','.join(d['columns']) == '$HEADER'
assert all(r['out_rel'] is None for r in d['rows'] if r['tensor']=='keys')
assert {r['dump'] for r in d['rows']} == {'synthetic:gaussian','synthetic:structured'}"

# Markdown (the default): header, separator and rows with the same number of cells; dump-level rows only by default
# (2 inputs x 2 configurations x 2 tensors), every row with --aggregate none
expect_ok "markdown" -- "$TQ" sweep "${SYN[@]}" --methods int8,kivi --bits 2
check "markdown columns" python3 -c "
lines=[l for l in open('$T/out') if l.startswith('|')]
n={l.count('|') for l in lines}
assert len(n)==1 and n.pop()==25 and len(lines) == 2 + 8, (n, len(lines))
assert all(l.split('|')[2].strip() == 'dump' for l in lines[2:])"
expect_ok "markdown none" -- "$TQ" sweep "${SYN[@]}" --methods int8,kivi --bits 2 --aggregate none
check "markdown none rows" [ "$(grep -c '^| synthetic' "$T/out")" = $((2 * 2 * 2 * (2 * 2 + 2 + 1))) ]
expect_ok "aggregate layer" -- "$TQ" sweep "${SYN[@]}" --methods int8,kivi --bits 2 --aggregate layer --format csv
check "aggregate layer scopes" python3 -c "
import csv; rows=list(csv.DictReader(open('$T/out')))
assert sorted({r['scope'] for r in rows}) == ['dump','layer'] and len(rows) == 2*2*2*(2+1), len(rows)"
expect_fail "aggregate bad" 2 "option '--aggregate': unknown level 'heads'" -- "$TQ" sweep "${SYN[@]}" --aggregate heads
# --wide: one row per configuration x scope with keys (k_*) and values (v_*) metrics equal to the long rows'
expect_ok "wide" -- "$TQ" sweep "${SYN[@]}" --methods int8,kivi --bits 2 --values kivi:3 --wide --format csv
cp "$T/out" "$T/w.csv"
expect_ok "long" -- "$TQ" sweep "${SYN[@]}" --methods int8,kivi --bits 2 --values kivi:3 --format csv
check "wide equals long" python3 - "$T/w.csv" "$T/out" <<'EOF'
import csv, sys
wide, long = list(csv.DictReader(open(sys.argv[1]))), list(csv.DictReader(open(sys.argv[2])))
assert len(long) == 2 * len(wide), (len(wide), len(long))
ids = ("dump", "scope", "layer", "kv_head")
for w in wide:
    k = [r for r in long if all(r[c] == w[c] for c in ids) and r["tensor"] == "keys" and r["method"] == w["method"]]
    v = [r for r in long if all(r[c] == w[c] for c in ids) and r["tensor"] == "values"]
    assert len(k) == 1 and w["values_method"] == "kivi" and w["values_params"] == "bits=3,group=32", w
    assert all(w["k_" + c] == k[0][c] for c in ("bits_total", "nmse", "attn_kl", "top8"))
    assert v and w["v_out_rel"] in {r["out_rel"] for r in v} and w["v_bits_total"] == v[0]["bits_total"]
    # compression over both tensors: 32 / (k bits + v bits), %.9g rounding
    c = 32 / (float(w["k_bits_total"]) + float(w["v_bits_total"]))
    assert abs(float(w["compression"]) - c) <= 1e-8 * c, (w["compression"], c)
EOF

# -o FILE.csv picks CSV by extension and leaves no temporary file
expect_ok "-o csv" -- "$TQ" sweep "${SYN[@]}" --methods int8 -o "$T/r.csv"
check "-o csv header" [ "$(head -n 1 "$T/r.csv")" = "$HEADER" ]
check "-o no temp" [ -z "$(ls "$T" | grep tmp)" ]
check "-o stdout empty" [ ! -s "$T/out" ]

# --values none: keys only; --values int8: values rows say int8
expect_ok "values none" -- "$TQ" sweep "${SYN[@]}" --methods kivi --bits 2 --values none --format csv
check "values none" python3 -c "
import csv; rows=list(csv.DictReader(open('$T/out'))); assert rows and all(r['tensor']=='keys' for r in rows)"
expect_ok "values int8" -- "$TQ" sweep "${SYN[@]}" --methods kivi --bits 2 --values int8 --format csv
check "values int8" python3 -c "
import csv; rows=list(csv.DictReader(open('$T/out')))
assert {r['method'] for r in rows if r['tensor']=='values'} == {'int8'}"

# skipped configurations are notes, not errors; none left is a usage error
expect_ok "skip note" -- "$TQ" sweep "${SYN[@]}" --methods kivi,int8 --bits 2,9 --format csv
check "skip note text" grep -q "note: skipping kivi at 9 bits" "$T/.err"
"$TQ" sweep "${SYN[@]}" --methods polar --dim 40 >"$T/out" 2>"$T/.err"; rc=$?
check "none left: exit 2" [ "$rc" = 2 ]
check "none left: notes then one error" [ "$(grep -vc '^tq: note: ' "$T/.err")" = 1 ]
check "none left: message" grep -q "^tq: no configuration left" "$T/.err"

# tq entropy: summary + table, -o JSON parses
expect_ok "entropy" -- "$TQ" entropy --synthetic gaussian,structured --layers 1 --heads 2 --tokens 64 --dim 32 \
    --methods kivi --bits 2,3 -o "$T/e.json"
check "entropy summary" grep -q "isotropic (gaussian) vs structured" "$T/out"
check "entropy json" python3 -c "
import json; d=json.load(open('$T/e.json')); assert len(d['rows']) == 4, len(d['rows'])"

# numbers against theory (TURBOQUANT.md, d = 128, 2 x 512 unit-norm-scaled Gaussian keys): turbo-mse's dmse is the
# exact Beta Lloyd-Max distortion 0.361, 0.116, 0.0340, 0.00932 and its 1-bit inner products shrink by 2/pi;
# turbo-prod is unbiased (slope 1) with d*D_prod = 1.571, 0.571, 0.185, 0.054. Tolerance 3%: per-vector distortion
# has relative sd ~sqrt(2/d) = 0.125, so the mean of 1024 vectors is within 0.4% (1 sigma), plus fp16 norms; the
# slope over 131k exhaustive pairs is within ~0.3%.
expect_ok "theory" -- "$TQ" sweep --synthetic gaussian --layers 1 --heads 2 --tokens 512 --dim 128 \
    --methods turbo-mse,turbo-prod --bits 1-4 --values none --no-attention --format csv
check "theory numbers" python3 - "$T/out" <<'EOF2'
import csv, sys, math
want = {("turbo-mse", 1): (0.361, 2 / math.pi), ("turbo-mse", 2): (0.116, None), ("turbo-mse", 3): (0.0340, None),
        ("turbo-mse", 4): (0.00932, None), ("turbo-prod", 1): (1.571, 1.0), ("turbo-prod", 2): (0.571, 1.0),
        ("turbo-prod", 3): (0.185, 1.0), ("turbo-prod", 4): (0.054, 1.0)}
got = {}
for r in csv.DictReader(open(sys.argv[1])):
    if r["scope"] == "dump":
        got[(r["method"], int(r["params"].split("bits=")[1].split(",")[0]))] = (float(r["dmse"]), float(r["ip_slope"]))
assert set(got) == set(want), sorted(got)
for key, (dm, sl) in want.items():
    assert abs(got[key][0] - dm) <= 0.03 * dm, (key, got[key][0], dm)
    if sl is not None:
        assert abs(got[key][1] - sl) <= 0.02 * sl, (key, got[key][1], sl)
EOF2

# a dump without queries: inner-product and attention metrics are absent (empty / '-'), never "nan"
python3 - "$T/nq.h5" <<'EOF2'
import sys, h5py, numpy as np
r = np.random.default_rng(2)
with h5py.File(sys.argv[1], "w") as f:
    f.attrs.update(tq_format="tq-kv", tq_format_version=1, model="test", source="no queries", rope="none", n_layers=1)
    g = f.create_group("layer_000")
    g["keys"] = r.standard_normal((1, 32, 16)).astype(np.float16)
EOF2
expect_ok "no queries csv" -- "$TQ" sweep "$T/nq.h5" --methods kivi --bits 2 --format csv
check "no queries absent" python3 -c "
import csv; rows=list(csv.DictReader(open('$T/out')))
assert rows and all(r['attn_kl']=='' and r['ip_rmse']=='' and r['out_rel']=='' and r['nmse']!='' for r in rows), rows"
expect_ok "no queries entropy" -- "$TQ" entropy "$T/nq.h5" --methods kivi --bits 2
check "no queries: no nan" bash -c "! grep -qi nan '$T/out' && grep -q '| - |' '$T/out'"

# bad options: exit 2, one line
expect_fail "no input" 2 "no input" -- "$TQ" sweep
expect_fail "unknown option" 2 "unknown option '--frobnicate'" -- "$TQ" sweep "$T/d.h5" --frobnicate
expect_fail "bad method" 2 "unknown method 'nope'" -- "$TQ" sweep "$T/d.h5" --methods nope
expect_fail "bits 0" 2 "'--bits'" -- "$TQ" sweep "$T/d.h5" --bits 0
expect_fail "bits abc" 2 "'--bits'" -- "$TQ" sweep "$T/d.h5" --bits abc
expect_fail "bad format" 2 "unknown format 'xml'" -- "$TQ" sweep "$T/d.h5" --format xml
expect_fail "bad rotation" 2 "unknown rotation" -- "$TQ" sweep "$T/d.h5" --rotation qr
expect_fail "bad values" 2 "'--values'" -- "$TQ" sweep "$T/d.h5" --values kivi
expect_fail "layer range" 2 "out of range for '.*d.h5', which has 2" -- "$TQ" sweep "$T/d.h5" --layers 0-5
expect_fail "both inputs" 2 "not both" -- "$TQ" sweep "$T/d.h5" --synthetic gaussian
expect_fail "threads 0" 2 "'--threads'" -- "$TQ" sweep "$T/d.h5" --threads 0
expect_fail "bad dist" 2 "unknown distribution 'cubic'" -- "$TQ" sweep --synthetic cubic
expect_fail "value missing" 2 "needs a value" -- "$TQ" sweep "$T/d.h5" --methods
expect_fail "entropy no input" 2 "no input" -- "$TQ" entropy
# runtime errors: exit 1
expect_fail "missing file" 1 "nope.h5" -- "$TQ" sweep "$T/nope.h5" --methods int8
expect_fail "unwritable" 1 "cannot write" -- "$TQ" sweep "$T/d.h5" --methods int8 -o "$T/no/such/dir/r.csv"
expect_ok "help" -- "$TQ" sweep --help
check "help on stdout" grep -q "usage: tq sweep" "$T/out"
finish
