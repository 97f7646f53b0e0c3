#!/usr/bin/env bash
# test_quantize.sh: `tq quantize` / `tq dequantize` end to end — the file round trip decodes bit for bit to what the
# encoder reconstructed in memory (--emit-recon), the same seed gives identical codes, payload sizes are the packed
# sizes of the formats, schedules and --layers/--keys-only shape the output, and every bad input exits non-zero with
# one message and leaves no file behind.
source "$(dirname "$0")/lib.sh"

"$TQ" synth --dist outlier --layers 2 --heads 2 --q-heads 4 --tokens 70 --dim 128 --seed 3 -o "$T/d.h5" >/dev/null ||
    { bad "synth d=128"; finish; exit; }
"$TQ" synth --dist gaussian --layers 1 --heads 1 --tokens 16 --dim 96 --seed 3 -o "$T/d96.h5" >/dev/null ||
    bad "synth d=96"
"$TQ" synth --dist gaussian --layers 1 --heads 1 --tokens 20 --dim 64 --seed 4 --dtype f32 -o "$T/d32.h5" >/dev/null ||
    bad "synth f32"
have_turbo=0
"$TQ" quantize "$T/d.h5" --method turbo-mse --bits 3 -o "$T/probe.h5" >/dev/null 2>&1 && have_turbo=1
rm -f "$T/probe.h5"

# same_dumps A1 B1 A2 B2 ...: per pair, one line "1" when every dataset of the two dumps is equal bit for bit (dtype,
# shape, bytes) and the layer lists are the same, else "0". One interpreter for all the pairs: one per pair was ~20 of
# this test's ~30 CPU seconds.
same_dumps() {
    python3 - "$@" <<'EOF'
import sys, h5py
def names(f):
    out = []
    f.visititems(lambda n, o: out.append(n) if isinstance(o, h5py.Dataset) else None)
    return sorted(out)
for pa, pb in zip(sys.argv[1::2], sys.argv[2::2]):
    try:
        a, b = h5py.File(pa, "r"), h5py.File(pb, "r")
        ok = names(a) == names(b) and all(a[n].dtype == b[n].dtype and a[n].shape == b[n].shape and
                                          a[n][()].tobytes() == b[n][()].tobytes() for n in names(a))
    except OSError:
        ok = False
    print(1 if ok else 0)
EOF
}

# 1. quantize -> file -> dequantize equals the in-memory reconstruction, bit for bit, for every method and both
#    source dtypes (the codes file holds everything the decoder needs).
configs=("fp16" "int8" "kivi --bits 2" "kivi --bits 3 --group 16 --norms fp32" "polar" "polar --polar-bits 3,2,2"
         "polar --bits 2 --rotation hadamard" "kivi --bits 4 --values int8:8" "int8 --keys-only" "kivi --bits 2 --residual 20")
[ $have_turbo = 1 ] && configs+=("turbo-mse --bits 3" "turbo-prod --bits 3 --rotation hadamard" "qjl --bits 1"
                                 "turbo-mse --bits 2 --outliers 8 --center" "turbo-mse --bits 3 --codebook empirical")
pairs=(); labels=()
for cfg in "${configs[@]}"; do
    for src in d.h5 d32.h5; do
        k=${#labels[@]}
        rm -f "$T/c.h5"
        # shellcheck disable=SC2086
        expect_ok "quantize $cfg $src" -- "$TQ" quantize "$T/$src" --method $cfg --seed 9 -o "$T/c.h5" \
            --emit-recon "$T/r1-$k.h5" || continue
        check "summary line for $cfg" grep -qE "bits_code [0-9.]+, bits_total [0-9.]+, payload [0-9]+ bytes" "$T/out"
        expect_ok "dequantize $cfg $src" -- "$TQ" dequantize "$T/c.h5" -o "$T/r2-$k.h5" || continue
        pairs+=("$T/r1-$k.h5" "$T/r2-$k.h5"); labels+=("$cfg $src")
    done
done
if [ ${#labels[@]} -gt 0 ]; then
    mapfile -t same < <(same_dumps "${pairs[@]}")
    for k in "${!labels[@]}"; do
        check "${labels[$k]}: dequantize == in-memory reconstruction" [ "${same[$k]:-0}" = 1 ]
    done
    rm -f "${pairs[@]}"
fi
[ $have_turbo = 1 ] || skip "turbo rows not linked: turbo round trips"

# 2. Determinism: the same seed writes byte-identical codes files (no HDF5 timestamps); another seed changes the
#    rotation and so the polar codes.
for s in 5 5 6; do "$TQ" quantize "$T/d.h5" --method polar --seed $s -o "$T/p$s-$RANDOM.h5" >/dev/null; done
set -- "$T"/p5-*.h5
check "same seed: identical codes files" cmp -s "${1:-}" "${2:-}"
check "another seed: different codes" python3 - "$1" "$T"/p6-*.h5 <<'EOF'
import sys, h5py, numpy as np
a, b = (h5py.File(p, "r") for p in sys.argv[1:])
n = "layer_000/keys/head_000/codes"
sys.exit(0 if not np.array_equal(a[n][()], b[n][()]) else 1)
EOF
rm -f "$T"/p5-*.h5 "$T"/p6-*.h5

# 3. Payload sizes are the packed sizes: 70 tokens x 128 dims.
sizes() { python3 - "$@" <<'EOF'
import sys, h5py
f = h5py.File(sys.argv[1], "r")
g = f["layer_001/keys/head_001"]
print(" ".join(f"{k}={g[k].size * g[k].dtype.itemsize}" for k in sys.argv[2:]))
EOF
}
"$TQ" quantize "$T/d.h5" --method polar -o "$T/c.h5" >/dev/null
# polar 4,2,2,2: per vector 64*4 + 32*2 + 16*2 + 8*2 = 368 bits = 46 bytes of angles, 8 fp16 radii = 16 bytes
check "polar payload 46 + 16 bytes per vector" [ "$(sizes "$T/c.h5" codes radii)" = "codes=3220 radii=1120" ]
"$TQ" quantize "$T/d.h5" --method kivi --bits 2 -o "$T/c.h5" >/dev/null
# kivi keys: 2-bit rows of 32 bytes; per channel ceil(70/32) = 3 groups -> 384 fp16 scales and 384 zeros
check "kivi payload" [ "$(sizes "$T/c.h5" codes scales zeros)" = "codes=2240 scales=768 zeros=768" ]
if [ $have_turbo = 1 ]; then
    "$TQ" quantize "$T/d.h5" --method turbo-mse --bits 3 -o "$T/c.h5" >/dev/null
    # 3 bits x 128 coordinates = 48 bytes per vector, 70 vectors
    check "turbo-mse 3-bit codes: 48 bytes per vector" [ "$(sizes "$T/c.h5" codes)" = "codes=3360" ]
else skip "turbo rows not linked: 48-byte check"; fi

# 4. Schedules, --layers, --keys-only.
cat >"$T/s.json" <<'EOF'
{"tq_schedule": 1, "method": "kivi", "units": "head", "keys": [[2, 4], [3, 3]], "values": [[4, 4], [2, 2]]}
EOF
expect_ok "scheduled kivi" -- "$TQ" quantize "$T/d.h5" --method kivi --schedule "$T/s.json" -o "$T/c.h5"
check "schedule bits stored per head and the schedule text kept" python3 - "$T/c.h5" <<'EOF'
import sys, h5py, json
f = h5py.File(sys.argv[1], "r")
b = [[f[f"layer_{l:03d}/{t}/head_{h:03d}"].attrs["bits"] for h in range(2)] for t in ("keys", "values") for l in range(2)]
sys.exit(0 if b == [[2, 4], [3, 3], [4, 4], [2, 2]] and json.loads(f.attrs["schedule"])["units"] == "head" else 1)
EOF
expect_ok "layers subset, keys only" -- "$TQ" quantize "$T/d.h5" --method int8 --layers 1 --keys-only -o "$T/c.h5"
expect_ok "dequantize subset" -- "$TQ" dequantize "$T/c.h5" -o "$T/r.h5"
check "subset: one layer, no values, queries kept" python3 - "$T/r.h5" "$T/d.h5" <<'EOF'
import sys, h5py, numpy as np
r, d = (h5py.File(p, "r") for p in sys.argv[1:])
ok = r.attrs["n_layers"] == 1 and "values" not in r["layer_000"] and \
     np.array_equal(r["layer_000/queries"][()], d["layer_001/queries"][()])
sys.exit(0 if ok else 1)
EOF

# 5. Bad inputs: exit code, one message, no output file (nor temp file) left.
nofile() { [ ! -e "$T/x.h5" ] && [ -z "$(ls "$T" | grep -F .tmp.)" ]; }
q() { "$TQ" quantize "$@"; }
expect_fail "unknown method" 2 "unknown method 'turbo'" -- q "$T/d.h5" --method turbo --bits 3 -o "$T/x.h5"
for b in 0 9 -1; do
    expect_fail "bits $b" 2 "quantize: --bits $b is out of range for kivi \(1..8\)" -- q "$T/d.h5" --method kivi --bits "$b" -o "$T/x.h5"
done
expect_fail "bits abc" 2 "needs an integer number of bits, got 'abc'" -- q "$T/d.h5" --method kivi --bits abc -o "$T/x.h5"
expect_fail "missing bits" 2 "kivi needs --bits" -- q "$T/d.h5" --method kivi -o "$T/x.h5"
expect_fail "int8 bits 4" 2 "out of range for int8" -- q "$T/d.h5" --method int8 --bits 4 -o "$T/x.h5"
expect_fail "hadamard at d=96" 2 "hadamard rotation needs a power-of-two dim, got 96" -- \
    q "$T/d96.h5" --method polar --rotation hadamard -o "$T/x.h5"
[ $have_turbo = 1 ] && expect_fail "turbo hadamard at d=96" 2 "power-of-two dim, got 96" -- \
    q "$T/d96.h5" --method turbo-mse --bits 3 --rotation hadamard -o "$T/x.h5"
expect_fail "polar 6 levels at d=96" 2 "multiple of 64, got 96" -- \
    q "$T/d96.h5" --method polar --polar-bits 4,2,2,2,2,2 -o "$T/x.h5"
expect_fail "output is input" 2 "is the input" -- q "$T/d.h5" --method int8 -o "$T/d.h5"
expect_fail "unwritable dir" 1 "cannot write '$T/nodir/x.h5'" -- q "$T/d.h5" --method int8 -o "$T/nodir/x.h5"
expect_fail "missing input" 1 "nope.h5" -- q "$T/nope.h5" --method int8 -o "$T/x.h5"
expect_fail "rotation for kivi" 2 "quantize: --rotation applies to" -- q "$T/d.h5" --method kivi --bits 2 --rotation none -o "$T/x.h5"
expect_fail "bad --values" 2 "quantize: --values wants METHOD:BITS" -- q "$T/d.h5" --method kivi --bits 2 --values kivi -o "$T/x.h5"
echo '{"tq_schedule": 1, "keys": [3, 3, 3]}' >"$T/s3.json"
expect_fail "schedule layer mismatch" 2 "has 3 layers but the dump has 2" -- \
    q "$T/d.h5" --method kivi --schedule "$T/s3.json" -o "$T/x.h5"
printf '{"tq_schedule": 1,\n "keys": [3, 3,]}' >"$T/sbad.json"
expect_fail "malformed schedule" 1 "sbad.json':2:16: trailing comma in array" -- \
    q "$T/d.h5" --method kivi --schedule "$T/sbad.json" -o "$T/x.h5"
echo '{"tq_schedule": 1, "keys": [3, 12]}' >"$T/s12.json"
expect_fail "schedule bits out of range" 1 "bits 12 out of range 1..8" -- \
    q "$T/d.h5" --method kivi --schedule "$T/s12.json" -o "$T/x.h5"
check "no output or temp file after failures" nofile
# dequantize: corrupted codes files are refused with the dataset named; output == input refused.
"$TQ" quantize "$T/d.h5" --method kivi --bits 2 -o "$T/c.h5" >/dev/null
expect_fail "dequantize onto itself" 2 "is the input" -- "$TQ" dequantize "$T/c.h5" -o "$T/c.h5"
expect_fail "dequantize a dump" 1 "this is a dump \(tq-kv\), not a codes file" -- "$TQ" dequantize "$T/d.h5" -o "$T/x.h5"
corrupt() { cp "$T/c.h5" "$T/cc.h5"; python3 -c "import h5py,sys; f=h5py.File(sys.argv[1],'r+'); $1" "$T/cc.h5"; }
corrupt 'del f["layer_001/keys/head_000/scales"]'
expect_fail "missing section" 1 "layer_001/keys/head_000: missing dataset 'scales'" -- "$TQ" dequantize "$T/cc.h5" -o "$T/x.h5"
corrupt 'f["layer_000/values/head_001"].attrs["bits"] = 9'
expect_fail "bits 9 in file" 1 "head_001: bad parameters: kivi needs --bits in 1..8, got 9" -- \
    "$TQ" dequantize "$T/cc.h5" -o "$T/x.h5"
corrupt 'g=f["layer_000/keys/head_000"]; d=g["codes"][()]; del g["codes"]; g["codes"]=d[:-1]'
expect_fail "short codes" 1 "dataset 'codes' has 2239 elements of type 1, expected 2240" -- \
    "$TQ" dequantize "$T/cc.h5" -o "$T/x.h5"
corrupt 'f.attrs["tq_format_version"] = 7'
expect_fail "future version" 1 "tq_format_version is 7, this tq reads 1..2" -- "$TQ" dequantize "$T/cc.h5" -o "$T/x.h5"
check "no output or temp file after dequantize failures" nofile

# Provenance: a dump's own attributes (datasets/FORMAT.md "Attributes of real-model dumps": token_ids,
# model_layers, rope_theta, channel_order, per-layer model_layer and attention attributes, and anything else a user
# put there) survive quantize -> dequantize with their names, values, dtypes and shapes; model_layers keeps the
# entries of a --layers subset so that it still names each output layer's model layer. Compared exactly: the
# attributes are copied, never converted. A codes file without /provenance (an older tq) still dequantizes.
"$TQ" synth --dist gaussian --layers 3 --heads 2 --tokens 12 --dim 16 --window 4 --global-layers 2 -o "$T/pv.h5" >/dev/null &&
python3 - "$T/pv.h5" <<'EOF' || bad "provenance: making the dump"
import h5py, numpy as np, sys
with h5py.File(sys.argv[1], "r+") as f:
    f.attrs["token_ids"] = np.arange(1, 13, dtype=np.int64)
    f.attrs["model_layers"] = np.array([4, 9, 17], dtype=np.int64)
    f.attrs["model_n_layers"] = np.array([30], dtype=np.int64)
    f.attrs["rope_theta"] = np.float64(1e6)
    f.attrs["channel_order"] = "rotate_half"
    f.attrs["note_f32"] = np.float32([1.5, -2.25])
    f.attrs["note_fixed"] = np.bytes_(b"fixed-len")
    for i, g in enumerate(("layer_000", "layer_001", "layer_002")):
        f[g].attrs["model_layer"] = np.int64([4, 9, 17][i])
EOF
expect_ok "provenance: quantize a subset" -- "$TQ" quantize "$T/pv.h5" --method turbo-mse --bits 2 --layers 1,2 -o "$T/pvc.h5"
expect_ok "provenance: dequantize" -- "$TQ" dequantize "$T/pvc.h5" -o "$T/pvr.h5"
check "provenance: root and layer attributes kept, model_layers subset" python3 - "$T/pv.h5" "$T/pvr.h5" <<'EOF'
import h5py, numpy as np, sys
a, b = h5py.File(sys.argv[1], "r"), h5py.File(sys.argv[2], "r")
own = {"tq_format", "tq_format_version", "model", "source", "rope", "n_layers"}
for k in set(a.attrs) - own:
    va, vb = a.attrs[k], b.attrs.get(k)
    assert vb is not None, f"root '{k}' dropped"
    if k == "model_layers":
        assert list(vb) == [9, 17] and vb.dtype == np.int64, vb
        continue
    assert np.asarray(va).dtype == np.asarray(vb).dtype and np.array_equal(np.asarray(va), np.asarray(vb)), (k, va, vb)
for src, dst in (("layer_001", "layer_000"), ("layer_002", "layer_001")):
    assert dict(a[src].attrs).keys() == dict(b[dst].attrs).keys(), (dict(a[src].attrs), dict(b[dst].attrs))
    for k, v in a[src].attrs.items():
        w = b[dst].attrs[k]
        assert np.array_equal(v, w) and np.asarray(v).dtype == np.asarray(w).dtype, (src, k, v, w)
EOF
python3 -c "import h5py,sys; f=h5py.File(sys.argv[1],'r+'); del f['provenance']" "$T/pvc.h5"
expect_ok "provenance: a codes file without it (older tq) dequantizes" -- "$TQ" dequantize "$T/pvc.h5" -o "$T/pvr2.h5"
check "provenance: none kept when the codes file has none" python3 -c "
import h5py, sys; b = h5py.File(sys.argv[1], 'r'); assert 'token_ids' not in b.attrs and 'model_layer' not in b['layer_000'].attrs" "$T/pvr2.h5"
finish
