#!/usr/bin/env bash
# test_info.sh: `tq info` on good dumps (table, --json) and the bad-input matrix: one expect_fail per way a dump can
# be wrong (files made with h5py by tests/py/bad_dumps.py), each checking exit 1, one stderr line and its words.
source "$(dirname "$0")/lib.sh"
HERE=$(cd "$(dirname "$0")/../.." && pwd)

expect_ok "help" -- "$TQ" info --help
check "help names --json" grep -q -- "--json" "$T/out"
expect_fail "bad option" 2 "unknown option '--frobnicate'" -- "$TQ" info --frobnicate x.h5
expect_fail "no file" 2 "no file given" -- "$TQ" info
expect_fail "two files" 2 "more than one file" -- "$TQ" info a.h5 b.h5

if ! python3 -c "import h5py, numpy" 2>/dev/null; then
    skip "h5py/numpy not installed: bad-input matrix not run"
    finish; exit
fi
B="$T/bad"
python3 "$HERE/tests/py/bad_dumps.py" "$B" >"$T/sizes" || { bad "bad_dumps.py failed"; finish; exit; }
full=$(tail -n 1 "$T/sizes")   # size of good.h5 in bytes

F() { echo "cannot read '$B/$1': $2"; }   # the message prefix every failure carries
# not a file / not HDF5
expect_fail "missing file"  1 "$(F nope.h5 "no such file")" -- "$TQ" info "$B/nope.h5"
expect_fail "directory"     1 "$(F a_directory.h5 "is a directory")" -- "$TQ" info "$B/a_directory.h5"
expect_fail "empty file"    1 "$(F empty.h5 "empty file \(0 bytes\)")" -- "$TQ" info "$B/empty.h5"
expect_fail "random bytes"  1 "$(F random.h5 "not an HDF5 file")" -- "$TQ" info "$B/random.h5"
expect_fail "text file"     1 "$(F text.h5 "not an HDF5 file")" -- "$TQ" info "$B/text.h5"
expect_fail "truncated 4"   1 "$(F trunc_4.h5 "not an HDF5 file")" -- "$TQ" info "$B/trunc_4.h5"
# past the signature the superblock states the full size; the message must give both numbers
for cut in 100 1000 $((full / 2)) $((full - 1)); do
    expect_fail "truncated $cut" 1 "$(F trunc_$cut.h5 "file is truncated: $cut bytes, its HDF5 superblock says $full")" \
        -- "$TQ" info "$B/trunc_$cut.h5"
done
expect_fail "bad superblock" 1 "$(F corrupt_superblock.h5 "HDF5 cannot open it \(file truncated or corrupt\?\)")" \
    -- "$TQ" info "$B/corrupt_superblock.h5"
# format attributes
expect_fail "no tq_format"  1 "'tq_format' is missing, expected \"tq-kv\"" -- "$TQ" info "$B/no_format.h5"
expect_fail "wrong format"  1 "'tq_format' is \"llama-kv\", expected \"tq-kv\"" -- "$TQ" info "$B/wrong_format.h5"
expect_fail "newer version" 1 "tq_format_version is 3, newer than the 2 this tq reads \(upgrade tq\)" \
    -- "$TQ" info "$B/newer_version.h5"
expect_fail "no n_layers"   1 "'n_layers' is missing" -- "$TQ" info "$B/no_n_layers.h5"
expect_fail "zero layers"   1 "'n_layers' is 0, expected 1\.\.100000" -- "$TQ" info "$B/zero_layers.h5"
expect_fail "float n_layers" 1 "'n_layers' is a float, expected an integer" -- "$TQ" info "$B/float_layers.h5"
expect_fail "bad rope"      1 "'rope' is \"sideways\", expected \"post\", \"pre\" or \"none\"" -- "$TQ" info "$B/bad_rope.h5"
# groups and datasets (always broken in layer 1, so the checks run past layer 0)
expect_fail "missing group" 1 "group '/layer_002' is missing" -- "$TQ" info "$B/missing_group.h5"
expect_fail "no keys"       1 "dataset '/layer_001/keys' is missing" -- "$TQ" info "$B/no_keys.h5"
expect_fail "keys a group"  1 "'/layer_001/keys' is not a dataset" -- "$TQ" info "$B/keys_group.h5"
expect_fail "rank 2"        1 "$(F rank2.h5 "dataset '/layer_001/keys' has rank 2, expected 3 \[heads, tokens, dim\]")" \
    -- "$TQ" info "$B/rank2.h5"
expect_fail "value tokens"  1 "'/layer_001/values' has shape \[2, 7, 16\], expected the keys' shape \[2, 8, 16\]" \
    -- "$TQ" info "$B/values_tokens.h5"
expect_fail "value dim"     1 "'/layer_001/values' has shape \[2, 8, 32\], expected the keys' shape \[2, 8, 16\]" \
    -- "$TQ" info "$B/values_dim.h5"
expect_fail "query tokens"  1 "'/layer_001/queries' has 6 tokens x head_dim 16, expected the keys' 8 tokens" \
    -- "$TQ" info "$B/queries_tokens.h5"
expect_fail "gqa ratio"     1 "'/layer_001/queries' has 3 heads, expected a multiple of the 2 kv heads" \
    -- "$TQ" info "$B/gqa.h5"
expect_fail "zero dim"      1 "'/layer_001/keys' has shape \[2, 8, 0\], expected every dimension >= 1" \
    -- "$TQ" info "$B/zero_dim.h5"
expect_fail "int32"         1 "'/layer_001/keys' has type int32, expected float16 or float32" -- "$TQ" info "$B/int32.h5"
expect_fail "2^33 elements" 1 "'/layer_001/keys' has shape \[64, 1048576, 128\] \(more than 2\^31 elements\)" \
    -- "$TQ" info "$B/huge.h5"
expect_fail "overflow dims" 1 "'/layer_001/keys' has shape \[1073741824, 1073741824, 1073741824\] \(element count overflows\)" \
    -- "$TQ" info "$B/overflow.h5"
# non-finite values: info reports them; --strict (what every other command does) refuses with the first location
expect_fail "nan strict"    1 "layer 1 has 3 non-finite values \(2 nan, 1 inf\); the first is nan in '/layer_001/keys' at head 1, token 5, channel 3" \
    -- "$TQ" info --strict "$B/nan.h5"
expect_ok "nan counted" -- "$TQ" info --json "$B/nan.h5"
check "nan counts in json" python3 -c "
import json, sys; j = json.load(open('$T/out'))
assert [(l['nan'], l['inf']) for l in j['layers']] == [(0, 0), (2, 1)], j['layers']"

# accepted variants: each loads, with the right shapes and dtype
for v in good fixed_strings vlen_bytes int8_attrs uint16_attrs float64 float16 key_only float16_be float32_be gzip; do
    expect_ok "$v loads" -- "$TQ" info --json "$B/$v.h5"
    want_dtype=float32; [ $v = float64 ] && want_dtype=float64; [ ${v%_be} = float16 ] && want_dtype=float16
    want_values=true; [ $v = key_only ] && want_values=false
    check "$v fields" python3 -c "
import json; j = json.load(open('$T/out'))
got = (j['model'], j['rope'], j['n_layers'], j['n_kv_heads'], j['n_q_heads'], j['n_tokens'], j['head_dim'], j['dtype'], j['has_values'])
want = ('h5py-test', 'post', 2, 2, 4, 8, 16, '$want_dtype', '$want_values' == 'true')
assert got == want, (got, want)"
done
# byte order, compression and dtype do not change what is read: same statistics as numpy's float32/float16 data
check "big-endian f32 = little-endian" python3 -c "
import json, subprocess as sp
a, b = (json.loads(sp.run(['$TQ', 'info', '--json', '$B/' + n], capture_output=True).stdout)['layers'] for n in ('good.h5', 'float32_be.h5'))
c = json.loads(sp.run(['$TQ', 'info', '--json', '$B/gzip.h5'], capture_output=True).stdout)['layers']
assert a == b == c, (a, b, c)"
check "big-endian f16 = little-endian" python3 -c "
import json, subprocess as sp
a, b = (json.loads(sp.run(['$TQ', 'info', '--json', '$B/' + n], capture_output=True).stdout)['layers'] for n in ('float16.h5', 'float16_be.h5'))
assert [dict(x, dtype=0) for x in a] == [dict(x, dtype=0) for x in b], (a, b)"
# float64 beyond float32 range becomes +inf: counted by info, refused by --strict at its exact place
expect_fail "f64 overflow"  1 "layer 1 has 1 non-finite values \(0 nan, 1 inf\); the first is inf in '/layer_001/keys' at head 0, token 1, channel 2" \
    -- "$TQ" info --strict "$B/huge_f64.h5"
# the table: one row per layer, header fields
expect_ok "table" -- "$TQ" info "$B/good.h5"
check "table rows" test "$(grep -cE '^\| +[0-9]+ \|' "$T/out")" = 2
check "table header" grep -qE '^head_dim +16$' "$T/out"
check "no stderr on a pipe" test ! -s "$T/.err"
# format 2: the attention attributes, validated per layer with one message naming the group and the attribute
expect_fail "negative window" 1 "$(F neg_window.h5 "'/layer_001' attribute 'sliding_window' is -4, expected 0 \(global attention\) or a window length")" \
    -- "$TQ" info "$B/neg_window.h5"
expect_fail "float window" 1 "$(F float_window.h5 "'/layer_001' attribute 'sliding_window' is a float, expected an integer")" \
    -- "$TQ" info "$B/float_window.h5"
expect_fail "nan scale" 1 "$(F nan_scale.h5 "'/layer_001' attribute 'attn_scale' is nan, expected a finite number > 0")" \
    -- "$TQ" info "$B/nan_scale.h5"
expect_fail "zero scale" 1 "$(F zero_scale.h5 "'/layer_001' attribute 'attn_scale' is 0, expected a finite number > 0")" \
    -- "$TQ" info "$B/zero_scale.h5"
expect_fail "string scale" 1 "$(F str_scale.h5 "'/layer_001' attribute 'attn_scale' is a string, expected a number")" \
    -- "$TQ" info "$B/str_scale.h5"
expect_fail "negative softcap" 1 "$(F neg_softcap.h5 "'/layer_001' attribute 'attn_softcap' is -30, expected a finite number >= 0")" \
    -- "$TQ" info "$B/neg_softcap.h5"
expect_fail "inf rope base" 1 "$(F inf_rope_base.h5 "'/layer_001' attribute 'rope_base' is inf, expected a finite number >= 0")" \
    -- "$TQ" info "$B/inf_rope_base.h5"
# a v2 dump written with h5py: layer 0 windowed with every attribute, layer 1 none (the v1 defaults: 1/sqrt(16))
expect_ok "v2 table" -- "$TQ" info "$B/v2.h5"
check "v2 architecture" grep -qE '^arch +gemma3$' "$T/out"
check "v2 layer 0 attention" grep -qE '^\| +0 \| +4 \| +0\.0625 \| +50 \| +1e\+04 \|' "$T/out"
check "v2 layer 1 defaults" grep -qE '^\| +1 \| +global \| +0\.25 \| +none \| +- \|' "$T/out"
check "v2 note" grep -q "1 of 2 layers attend a sliding window" "$T/out"
expect_ok "v2 json" -- "$TQ" info --json "$B/v2.h5"
check "v2 json fields" python3 -c "
import json; j = json.load(open('$T/out')); a, b = j['layers']
assert j['architecture'] == 'gemma3' and j['format_version'] == 2, j
assert (a['sliding_window'], a['attn_scale'], a['attn_softcap'], a['rope_base']) == (4, 0.0625, 50, 10000), a
assert (b['sliding_window'], b['attn_scale'], b['attn_softcap'], b['rope_base']) == (0, 0.25, 0, 0), b"
# a v1 file: format_version as the file says, architecture unknown
expect_ok "v1 json" -- "$TQ" info --json "$B/good.h5"
check "v1 json version" python3 -c "
import json; j = json.load(open('$T/out')); assert j['format_version'] == 1 and j['architecture'] == 'unknown', j"
finish
