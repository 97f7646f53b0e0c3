#!/usr/bin/env bash
# gen.sh OUTDIR: every golden output of tq (tests/golden/README.md), written into OUTDIR.
# tests/cli/test_golden.sh runs it into a scratch folder and compares with tests/golden/; regenerate the goldens
# only when a number is meant to change: bash tests/golden/gen.sh tests/golden.
set -eu
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
TQ=$(realpath "${TQ:-$ROOT/tq}")
mkdir -p "$1"
O=$(cd "$1" && pwd)
# everything runs in a scratch folder with relative names, so no absolute path reaches an output
S=$O/.scratch
rm -rf "$S"
mkdir -p "$S"
cd "$S"
ln -s "$ROOT/datasets" datasets
D=datasets/smollm2-135m.h5
ALL=fp16,int8,kivi,turbo-mse,turbo-prod,qjl,polar
# 1. every method x 2-4 bits x both rotations on the bundled dump (2 layers, 1 kv head, 48 tokens), all rows
$TQ sweep $D --methods $ALL --bits 2-4 --rotation dense,hadamard --layers 0,17 --heads 1 --tokens 48 \
    --format csv -o "sweep_dump.csv" 2> "sweep_dump.err"
# the three writers on one smaller product (the Markdown table is what a user reads on stdout)
$TQ sweep $D --methods turbo-prod,kivi --bits 3 --rotation hadamard --layers 3 --tokens 32 --values int8 > "sweep_dump.md"
$TQ sweep $D --methods turbo-mse,polar --bits 2,4 --layers 5 --heads 2 --tokens 32 --codebook beta,gaussian \
    --center off,on --outliers 0,4 --values none --format json > "sweep_dump.json" 2> "sweep_dump_json.err"
# the wide shape (keys and values on one row) at layer level, int8 keys beside kivi values
$TQ sweep $D --methods int8,kivi --bits 2 --layers 3,4 --tokens 32 --values kivi:2 --wide --aggregate layer --format csv \
    > "sweep_wide.csv"
# 2. the same product on a small synthetic dump written by tq synth, and on in-memory synthetic inputs
$TQ synth --dist structured --layers 1 --heads 2 --q-heads 4 --tokens 64 --dim 64 --seed 3 -o "syn.h5"
$TQ sweep "syn.h5" --methods $ALL --bits 2-4 --rotation dense,hadamard --format csv -o "sweep_synth.csv" \
    2> "sweep_synth.err"
$TQ sweep --synthetic gaussian,rope --layers 2 --heads 2 --tokens 64 --dim 32 --methods turbo-mse,qjl,kivi \
    --bits 2,3 --seed 5 --threads 2 --format csv -o "sweep_synthetic.csv"
# 3. sensitivity JSON (+ its summary), mixed-schedule JSON (+ summary), a scheduled sweep
$TQ sensitivity $D --method turbo-mse --bits 2-4 --tokens 48 --threads 2 -o "sens_layer.json" > "sens_layer.md"
$TQ sensitivity $D --method kivi --tensor both --metric nmse --per-head --tokens 32 -o "sens_head.json" \
    > "sens_head.md"
$TQ mixed-schedule "sens_layer.json" --budget 3 -o "sched_opt.json" > "sched_opt.md"
$TQ mixed-schedule "sens_layer.json" --budget 3.1 --policy rank > "sched_rank.json"
$TQ mixed-schedule "sens_head.json" --budget 2.5 --side-info include -o "sched_head.json" > "sched_head.md"
$TQ sweep $D --schedule "sched_opt.json" --values none --tokens 48 --layers 0-3 --format csv -o "sweep_sched.csv"
# 4. entropy: stdout summary and the CSV
$TQ entropy $D --synthetic gaussian,structured --layers 1 --heads 2 --tokens 64 --dim 64 --bits 2,3 \
    -o "entropy.csv" > "entropy.md"
# 5. quantize / dequantize: the files byte for byte (HDF5 here keeps no object times: equal content, equal bytes)
#    and their datasets (h5sum.py: name, dtype, shape, sha256 per dataset and attribute)
$TQ quantize $D --method turbo-prod --bits 3 --layers 0,9 --rotation hadamard -o "codes.h5" > "quantize.txt"
$TQ quantize $D --method polar --bits 3 --values kivi:2 --layers 1 -o "codes2.h5" >> "quantize.txt"
$TQ quantize $D --method turbo-mse --schedule "sched_opt.json" --keys-only --layers 2 -o "codes3.h5" \
    >> "quantize.txt"
$TQ dequantize "codes.h5" -o "recon.h5" >> "quantize.txt"
for f in codes codes2 codes3 recon; do
    python3 "$ROOT/tests/golden/h5sum.py" "$f.h5" > "$f.h5sum"
    sha256sum "$f.h5" >> h5.sha256
done
rm -f ./*.h5 datasets
mv ./* "$O/"
cd "$O"
rm -rf "$S"
