#!/usr/bin/env bash
# test_golden.sh: tq's outputs equal the committed goldens (tests/golden/, written by tests/golden/gen.sh from the
# binary before the engine moved into lib/evaluate): sweep tables of every method x 2-4 bits x both rotations on the
# bundled dump and on a synthetic one, the three report formats, sensitivity and schedule JSON, entropy, and the
# quantize/dequantize files. Exact text equality: a refactor changes no printed digit and no byte of a file.
source "$(dirname "$0")/lib.sh"
G=$(cd "$(dirname "$0")/../golden" && pwd)
if ! python3 -c 'import h5py' 2>/dev/null; then skip "golden: no h5py (scripts/deps.sh installs it)"; finish; exit; fi
if ! TQ="$TQ" bash "$G/gen.sh" "$T/g" >"$T/gen.log" 2>&1; then bad "golden: gen.sh failed: $(tail -n 3 "$T/gen.log")"
else
    for f in "$G"/*; do
        n=$(basename "$f")
        case "$n" in gen.sh|h5sum.py|numeq.py|check_repro.sh|README.md|repro|models|tokens|generate|validate) continue;; esac  # models/, tokens/, generate/, validate/: test_model, test_tokenizer, test_generate, test_validate
        if [ ! -f "$T/g/$n" ]; then bad "golden: $n not produced"; continue; fi
        if cmp -s "$f" "$T/g/$n"; then ok
        elif [ "${n##*.}" != sha256 ] && why=$(python3 "$G/numeq.py" "$f" "$T/g/$n"); then
            ok; echo "NOTE golden: $n equal to 1e-6 relative, not byte for byte (another CPU's float rounding)" >&2
        else bad "golden: $n differs: ${why:-} $(diff "$f" "$T/g/$n" | head -n 4)"; fi
    done
    for n in $(ls "$T/g"); do [ -e "$G/$n" ] || bad "golden: $n produced but not in tests/golden"; done
fi
finish
