#!/usr/bin/env bash
# test_synth.sh: `tq synth` end to end — every distribution at d = 64, 96, 128, 256 writes a dump that `tq info`
# reads with the right shapes and attributes; same seed gives identical datasets (compared by h5py, not as files:
# HDF5 files may differ in metadata); GQA shapes; outlier channels visible to `tq info`; bad options exit 2.
source "$(dirname "$0")/lib.sh"

# json_get FILE KEY: a top-level value of `tq info --json` output.
json_get() { python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))[sys.argv[2]])' "$1" "$2"; }

for dist in gaussian structured outlier heavy rope; do
    for d in 64 96 128 256; do
        f="$T/$dist-$d.h5"
        expect_ok "$dist d=$d" -- "$TQ" synth --dist "$dist" --layers 2 --heads 2 --q-heads 4 --tokens 24 --dim "$d" \
            --seed 5 -o "$f" || continue
        expect_ok "info $dist d=$d" -- "$TQ" info --json "$f" || continue
        cp "$T/out" "$T/info.json"
        rope=none; [ "$dist" = rope ] && rope=post
        got=$(python3 -c 'import json,sys; j=json.load(open(sys.argv[1])); print(*(j[k] for k in sys.argv[2:]))' \
            "$T/info.json" model rope n_layers n_kv_heads n_q_heads n_tokens head_dim dtype)
        want="synthetic:$dist $rope 2 2 4 24 $d float16"
        check "info $dist d=$d: '$got' = '$want'" [ "$got" = "$want" ]
    done
done
check "no temp files left behind" [ -z "$(ls "$T" | grep -F .tmp.)" ]

# Same seed (and f32, GQA, several layers): identical datasets; another seed: every dataset differs.
for dist in gaussian structured outlier heavy rope; do
    args=(--dist "$dist" --layers 3 --heads 2 --q-heads 8 --tokens 40 --dim 96 --dtype f32)
    expect_ok "$dist a" -- "$TQ" synth "${args[@]}" --seed 42 -o "$T/a.h5"
    expect_ok "$dist b" -- "$TQ" synth "${args[@]}" --seed 42 -o "$T/b.h5"
    expect_ok "$dist c" -- "$TQ" synth "${args[@]}" --seed 43 -o "$T/c.h5"
    res=$(python3 - "$T/a.h5" "$T/b.h5" "$T/c.h5" <<'EOF'
import sys, h5py, numpy as np
a, b, c = (h5py.File(p, "r") for p in sys.argv[1:])
names = [f"layer_{l:03d}/{t}" for l in range(3) for t in ("keys", "values", "queries")]
same = all(a[n].dtype == b[n].dtype and a[n].shape == b[n].shape and a[n][()].tobytes() == b[n][()].tobytes()
           for n in names)
differ = all(not np.array_equal(a[n][()], c[n][()]) for n in names)
shapes = (a["layer_000/keys"].shape, a["layer_000/queries"].shape, str(a["layer_002/values"].dtype))
print(same, differ, shapes == ((2, 40, 96), (8, 40, 96), "float32"))
EOF
)
    check "$dist: same seed identical, other seed different, GQA shapes (got: $res)" [ "$res" = "True True True" ]
done

# Default q-heads = heads; source records every parameter.
expect_ok "default q-heads" -- "$TQ" synth --dist heavy --heads 3 --tokens 8 --dim 16 --seed 9 --dof 5 -o "$T/h.h5"
expect_ok "info h" -- "$TQ" info --json "$T/h.h5"
check "q heads default to heads" [ "$(json_get "$T/out" n_q_heads)" = 3 ]
src=$(json_get "$T/out" source)
check "source lists the parameters: $src" grep -q -- "--dist heavy --layers 1 --heads 3 --q-heads 3 --tokens 8 --dim 16 --seed 9 --dtype f16 --dof 5" <<<"$src"

# Outlier channels are what `tq info` calls outliers: max/median channel RMS is 10..20 (x sampling noise of 256
# samples per channel: a few %), gaussian keys stay near 1 (max of 64 channel RMS over 256 samples: < 1.3).
expect_ok "outlier" -- "$TQ" synth --dist outlier --heads 1 --tokens 256 --dim 64 --seed 1 -o "$T/o.h5"
expect_ok "gauss" -- "$TQ" synth --dist gaussian --heads 1 --tokens 256 --dim 64 --seed 1 -o "$T/g.h5"
ro=$("$TQ" info --json "$T/o.h5" | python3 -c 'import json,sys; print(json.load(sys.stdin)["layers"][0]["key_outlier_ratio"])')
rg=$("$TQ" info --json "$T/g.h5" | python3 -c 'import json,sys; print(json.load(sys.stdin)["layers"][0]["key_outlier_ratio"])')
check "outlier key ratio $ro in [8, 24]" python3 -c "import sys; sys.exit(not 8 <= $ro <= 24)"
check "gaussian key ratio $rg below 1.3" python3 -c "import sys; sys.exit(not $rg < 1.3)"

# --hetero / --layer-scales: per-layer query norms follow the scale (keys unchanged).
expect_ok "scales" -- "$TQ" synth --dist gaussian --layers 3 --tokens 64 --dim 64 --seed 2 --dtype f32 \
    --layer-scales 0.5,1,4 -o "$T/s.h5"
expect_ok "hetero" -- "$TQ" synth --dist structured --layers 4 --tokens 16 --dim 64 --seed 2 --hetero -o "$T/he.h5"
res=$(python3 - "$T/s.h5" <<'EOF'
import sys, h5py, numpy as np
f = h5py.File(sys.argv[1], "r")
n = [np.linalg.norm(f[f"layer_{l:03d}/queries"][()], axis=-1).mean() for l in range(3)]
print(abs(n[1] / n[0] - 2) < 0.1 and abs(n[2] / n[1] - 4) < 0.2)  # independent draws: ratios within ~2%
EOF
)
check "layer-scales scale query norms 0.5:1:4 ($res)" [ "$res" = True ]
expect_ok "pre-rope" -- "$TQ" synth --dist rope --tokens 8 --dim 64 --pre-rope -o "$T/pre.h5"
expect_ok "info pre" -- "$TQ" info --json "$T/pre.h5"
check "pre-rope dump says rope 'pre'" [ "$(json_get "$T/out" rope)" = pre ]

# --help goes to stdout with exit 0.
expect_ok "help" -- "$TQ" synth --help
check "help names the distributions" grep -q "structured" "$T/out"

# Bad options: exit 2, one line, nothing written.
o="$T/bad.h5"
expect_fail "no dist" 2 "missing --dist" -- "$TQ" synth -o "$o"
expect_fail "no output" 2 "missing -o" -- "$TQ" synth --dist gaussian
expect_fail "unknown dist" 2 "unknown distribution 'laplace'" -- "$TQ" synth --dist laplace -o "$o"
expect_fail "gqa" 2 "not a multiple of --heads" -- "$TQ" synth --dist gaussian --heads 3 --q-heads 4 -o "$o"
expect_fail "odd rope dim" 2 "even head dim" -- "$TQ" synth --dist rope --dim 65 -o "$o"
expect_fail "absurd size" 2 "more than 2\^31" -- "$TQ" synth --dist gaussian --heads 64 --tokens 1000000 --dim 128 -o "$o"
expect_fail "overflowing size" 2 "more than 2\^31" -- "$TQ" synth --dist gaussian --heads 1048576 --tokens 1073741824 --dim 1048576 -o "$o"
expect_fail "layers 0" 2 "'--layers' is 0" -- "$TQ" synth --dist gaussian --layers 0 -o "$o"
expect_fail "layers 1001" 2 "'--layers' is 1001" -- "$TQ" synth --dist gaussian --layers 1001 -o "$o"
expect_fail "dim 1" 2 "'--dim' is 1" -- "$TQ" synth --dist gaussian --dim 1 -o "$o"
expect_fail "tokens text" 2 "'--tokens' needs an integer, got 'many'" -- "$TQ" synth --dist gaussian --tokens many -o "$o"
expect_fail "seed negative" 2 "'--seed' needs a non-negative integer" -- "$TQ" synth --dist gaussian --seed -1 -o "$o"
expect_fail "dtype" 2 "'--dtype' is 'f64', expected f16 or f32" -- "$TQ" synth --dist gaussian --dtype f64 -o "$o"
expect_fail "dof range" 2 "'--dof' is 2" -- "$TQ" synth --dist heavy --dof 2 -o "$o"
expect_fail "dof wrong dist" 2 "dof applies to --dist heavy" -- "$TQ" synth --dist gaussian --dof 5 -o "$o"
expect_fail "pre-rope wrong dist" 2 "pre-rope applies to --dist rope" -- "$TQ" synth --dist gaussian --pre-rope -o "$o"
expect_fail "scales count" 2 "3 values for 2 layers" -- "$TQ" synth --dist gaussian --layers 2 --layer-scales 1,2,3 -o "$o"
expect_fail "scales value" 2 "'--layer-scales' is 0" -- "$TQ" synth --dist gaussian --layer-scales 0 -o "$o"
expect_fail "scales empty" 2 "empty entry" -- "$TQ" synth --dist gaussian --layers 2 --layer-scales 1,,2 -o "$o"
expect_fail "scales + hetero" 2 "hetero and layer-scales" -- "$TQ" synth --dist gaussian --hetero --layer-scales 1 -o "$o"
expect_fail "unknown option" 2 "unknown option '--bits'" -- "$TQ" synth --dist gaussian --bits 3 -o "$o"
expect_fail "missing value" 2 "'--tokens' needs a value" -- "$TQ" synth --dist gaussian -o "$o" --tokens
expect_fail "stray argument" 2 "unexpected argument 'x.h5'" -- "$TQ" synth --dist gaussian x.h5
check "nothing written on usage errors" [ ! -e "$o" ]

# Runtime error: an output folder that does not exist is exit 1 and names the file.
expect_fail "no folder" 1 "cannot write '$T/nope/x.h5'" -- "$TQ" synth --dist gaussian -o "$T/nope/x.h5"

finish
