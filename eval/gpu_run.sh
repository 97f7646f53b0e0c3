#!/usr/bin/env bash
# gpu_run.sh: everything tq does on a GPU, in one script for a lent GPU machine. Phase `check`: the CUDA unit test
# (GPU vs CPU references), compute-sanitizer memcheck / racecheck / synccheck on small shapes, a benchmark smoke run.
# Phase `bench`: tq bench --device cuda, PyTorch SDPA on the same shapes (and on the bundled models' shapes), ncu on the
# attention kernels, and the report results/bench/cuda_<gpu>.{md,csv}. Phase `round2`: the round-2 acceptance shapes,
# eager and CUDA-graph timings beside SDPA's (results/bench/cuda_<gpu>_round2.md). Phase `loop`: the model loop on the
# GPU (test_cuda_model, tq perplexity --device cuda against --device cpu on the real models when given). `all` runs
# all four (`profile`, Nsight Compute on the B = 1 decode, only when named). GPU_RUN_SHAPES=0 skips the other-widths sweep, GPU_RUN_NCU=0 the profiler, GPU_RUN_SAN the sanitizer
# tools (GPU_RUN_LOOP_SAN=0: none on the model test), GPU_RUN_TOKENS the main bench's lengths (shorter runs while
# iterating). Binaries: .devbin/ (made here by eval/gpu_pack.sh: static, runs on
# a bare machine) when present, else `make CUDA=1`. Logs and results go to $OUT (default gpu_out/).
set -u -o pipefail
cd "$(dirname "$0")/.."
phase=${1:-all}
OUT=${OUT:-$PWD/gpu_out}
mkdir -p "$OUT" results/bench
if [ -f .devbin/bin.tar.xz ] && [ ! -x .devbin/tq ]; then
    python3 -c "import tarfile; tarfile.open('.devbin/bin.tar.xz').extractall('.devbin')" || exit 1
fi
if [ -x .devbin/tq ] && [ -x .devbin/test_cuda ]; then TQB=.devbin/tq; TEST=.devbin/test_cuda; TESTM=.devbin/test_cuda_model
else make -j8 CUDA=1 build/cuda/tq build/cuda/tests/test_cuda build/cuda/tests/test_cuda_model || exit 1
     TQB=build/cuda/tq; TEST=build/cuda/tests/test_cuda; TESTM=build/cuda/tests/test_cuda_model; fi
export PATH=$PATH:/usr/local/cuda/bin
SAN=$(command -v compute-sanitizer || ls /usr/local/cuda/bin/compute-sanitizer 2>/dev/null)
NCU=$(command -v ncu || ls /usr/local/cuda/bin/ncu /opt/nvidia/nsight-compute/*/ncu 2>/dev/null | head -1)
gpu=$(nvidia-smi --query-gpu=name --format=csv,noheader | head -1)
tag=$(echo "$gpu" | grep -oiE 'h100|h200|a100|l40s|b200' | head -1 | tr A-Z a-z); tag=${tag:-gpu}
rc=0
if [ "$phase" = check ] || [ "$phase" = all ]; then
    {
        nvidia-smi -L
        echo "== test_cuda (full)"; "$TEST" || rc=1 # TQ_CUDA_DIAG=1 adds the fp16-operand error against the score scale
        for tool in ${GPU_RUN_SAN:-memcheck racecheck synccheck}; do
            echo "== compute-sanitizer --tool $tool (TQ_CUDA_QUICK=1)"
            extra=; [ $tool = memcheck ] && extra="--leak-check full"
            TQ_CUDA_QUICK=1 timeout 240 "$SAN" --tool $tool $extra --error-exitcode 9 "$TEST" || { echo "$tool: rc $?"; rc=1; }
        done
        echo "== tq quantize --device cuda against --device cpu (hadamard: identical datasets)"
        tmp=$(mktemp -d)
        "$TQB" synth --dist outlier --layers 2 --heads 4 --tokens 1000 --dim 128 --seed 3 -o "$tmp/s.h5" >/dev/null || rc=1
        for m in "turbo-mse --bits 3 --rotation hadamard" "turbo-prod --bits 3 --rotation hadamard" \
                 "turbo-mse --bits 4 --rotation hadamard --norms fp32" "qjl --bits 1"; do
            "$TQB" quantize "$tmp/s.h5" --method $m --seed 7 -o "$tmp/cpu.h5" >/dev/null &&
            "$TQB" quantize "$tmp/s.h5" --method $m --seed 7 --device cuda -o "$tmp/gpu.h5" >/dev/null &&
            python3 eval/h5_same.py "$tmp/cpu.h5" "$tmp/gpu.h5" "$m" || rc=1
        done
        rm -rf "$tmp"
        echo "== bench smoke"
        "$TQB" bench --device cuda --batch 1 --tokens 5000 --iters 2 --encode-vectors 100000 || rc=1
        exit $rc
    } 2>&1 | tee "$OUT/check.log"
    [ "${PIPESTATUS[0]}" = 0 ] || rc=1
    grep -qE "^[0-9]+ passed, [1-9]" "$OUT/check.log" && rc=1
    echo "check phase: rc $rc" | tee -a "$OUT/check.log"
fi
# Phase `loop` (also in `all`): the model loop on the GPU. test_cuda_model (GPU forward vs the CPU forward on
# synthetic GGUFs it writes, fp32 / fp16 / packed caches), then, for each real model whose GGUF is given
# ($TQ_GGUF_SMOLLM2, $TQ_GGUF_GEMMA3), tq perplexity on the CPU and on the GPU over the same tokens and configurations
# (turbo-mse 3 and 4 bits Hadamard, turbo-prod 3 bits with turbo-mse 3-bit values, dense), the tables side by side in
# loop_<model>.csv and the relative difference of dppl_pct per configuration (acceptance: within 1%).
if [ "$phase" = loop ] || [ "$phase" = all ]; then
    {
        echo "== test_cuda_model"; "$TESTM" || rc=1
        if [ -n "$SAN" ] && [ "${GPU_RUN_LOOP_SAN:-1}" = 1 ]; then
            TQ_CUDA_QUICK=1 timeout 300 "$SAN" --tool memcheck --error-exitcode 9 "$TESTM" >"$OUT/loop_memcheck.log" 2>&1 \
                && echo "test_cuda_model memcheck: clean" || { echo "test_cuda_model memcheck: rc $? (loop_memcheck.log)"; rc=1; }
        fi
        for mdl in smollm2 gemma3; do
            v=TQ_GGUF_$(echo $mdl | tr a-z A-Z); path=${!v:-}
            # a whole model carried in parts by earlier calls (eval/gpu_chunks.py split here): joined once, when all
            # its parts are there
            name=$([ $mdl = smollm2 ] && echo SmolLM2-135M-Instruct.Q4_1.gguf || echo gemma-3-270m-q4_k_m.gguf)
            if [ -z "$path" ] && [ -f ".devcarry/chunks/$name.sha256" ]; then
                [ -f "/tmp/$name" ] || python3 eval/gpu_chunks.py join "$name" "/tmp/$name" || rc=1
                [ -f "/tmp/$name" ] && path=/tmp/$name
            fi
            [ -n "$path" ] && [ -f "$path" ] || { echo "== $mdl: SKIP (set $v to its GGUF)"; continue; }
            # cuda: fp32 weights (the CPU's computation: the acceptance's 1%) and fp16 weights (the speed setting)
            for dev in cpu cuda cuda16 cudafast; do
                # (--values M:B quantizes values with the default dense rotation, so turbo-prod runs dense throughout)
                args=(--text datasets/text/tale-of-two-cities.txt --tokens ${GPU_RUN_PPL_TOKENS:-512} --format csv)
                case $dev in cpu) args+=(--device cpu) ;; cuda) args+=(--device cuda --gpu-weights fp32) ;;
                             cuda16) args+=(--device cuda) ;; cudafast) args+=(--device cuda --cuda-attn fast) ;; esac
                "$TQB" perplexity "$path" "${args[@]}" --methods turbo-mse --bits 3,4 --rotation hadamard \
                    -o "$OUT/loop_${mdl}_${dev}_mse.csv" &&
                "$TQB" perplexity "$path" "${args[@]}" --methods turbo-prod --bits 3 --values turbo-mse:3 \
                    -o "$OUT/loop_${mdl}_${dev}_prod.csv" || rc=1
            done
            python3 - "$OUT" "$mdl" <<'PY' || rc=1
import csv, sys
out, mdl = sys.argv[1], sys.argv[2]
rows = {}
for dev in ("cpu", "cuda", "cuda16", "cudafast"):
    for part in ("mse", "prod"):
        for r in csv.DictReader(open(f"{out}/loop_{mdl}_{dev}_{part}.csv")):
            rows.setdefault((r["method"], r["params"], r["values"]), {})[dev] = r
bad = 0
with open(f"{out}/loop_{mdl}.csv", "w", newline="") as f:
    w = csv.writer(f)
    w.writerow(["method", "params", "values", "ppl_ref_cpu", "ppl_ref_gpu", "dppl_pct_cpu", "dppl_pct_gpu", "rel_diff",
                "kl_cpu", "kl_gpu", "dppl_pct_gpu_fp16w", "kl_gpu_fp16w", "tok_s", "tok_s_fp16", "speedup",
                "dppl_pct_gpu_fast", "tok_s_fast", "speedup_fast"])
    for key, d in rows.items():
        c, g, h, fa = d["cpu"], d["cuda"], d["cuda16"], d["cudafast"]
        dc, dg, dh = float(c["dppl_pct"]), float(g["dppl_pct"]), float(h["dppl_pct"])
        rel = abs(dg - dc) / abs(dc) if dc else float("inf")
        bad += rel > 0.01
        w.writerow([*key, c["ppl_ref"], g["ppl_ref"], dc, dg, f"{rel:.6f}", c["kl"], g["kl"], dh, h["kl"], h["tok_s"],
                    h["tok_s_fp16"], h["speedup"], fa["dppl_pct"], fa["tok_s"], fa["speedup"]])
        print(f"{mdl} {key[0]} {key[1]} values {key[2]}: dppl_pct cpu {dc:.4f} gpu (fp32 weights) {dg:.4f} (rel diff "
              f"{rel:.6f}), gpu fp16 weights {dh:.4f}; kl cpu {c['kl']} gpu {g['kl']} fp16w {h['kl']}; fp16 weights "
              f"{float(h['tok_s']):.0f} tok/s vs fp16-cache {float(h['tok_s_fp16']):.0f} (x{float(h['speedup']):.2f}); "
              f"--cuda-attn fast dppl_pct {float(fa['dppl_pct']):.4f}, {float(fa['tok_s']):.0f} tok/s "
              f"(x{float(fa['speedup']):.2f})")
print(f"{mdl}: {bad} configuration(s) with dppl_pct more than 1% apart")
PY
        done
        exit $rc
    } 2>&1 | tee "$OUT/loop.log"
    [ "${PIPESTATUS[0]}" = 0 ] || rc=1
    grep -qE "^[0-9]+ passed, [1-9]" "$OUT/loop.log" && rc=1
    echo "loop phase: rc $rc" | tee -a "$OUT/loop.log"
fi
if [ "$phase" = bench ] || [ "$phase" = all ]; then
    csv=results/bench/cuda_$tag.csv
    # the round-2 attention selection (fused small-batch path, d = 64 / 256 tensor cores) where tq bench can ask for it
    VAR=; "$TQB" bench --help 2>&1 | grep -q -- --variant && VAR="--variant attn=${GPU_RUN_ATTN:-fast}"
    "$TQB" bench --device cuda $VAR ${GPU_RUN_TOKENS:+--tokens $GPU_RUN_TOKENS} -o "$csv" 2>&1 | tee "$OUT/bench.log" || rc=1
    PYTHONUNBUFFERED=1 python3 eval/bench_sdpa.py ${GPU_RUN_TOKENS:+--tokens $GPU_RUN_TOKENS} \
        -o results/bench/sdpa_$tag.csv 2>&1 | tee -a "$OUT/bench.log"
    # k_attn_mma's other instantiations at B = 16, L = 64k: 2- and 4-bit codes, and 8 kv heads under 8 (MHA), 16
    # (GQA-2) and 64 (GQA-8) query heads at 3 bits with SDPA on the same shapes; merged into cuda_<gpu>_shapes.csv
    # (bits, q_heads, then tq bench's columns; SDPA rows have bits 0)
    # the bundled models' shapes, 3 bits, B = 1 and 16: SmolLM2 (d = 64, 9 q / 3 kv heads) at L = 32k; Gemma 3 (d = 256,
    # 4 q / 1 kv head) at L = 32k with a 512-token sliding window and without. tq bench has no window option: a
    # window reads exactly the rows of an L = 512 cache (the kernels take the window as an offset and a length), so
    # the tq row is L = 512; SDPA runs the real thing (a 32k cache, the window sliced or masked, the faster).
    # Merged into cuda_<gpu>_models.csv: shape, window, then tq bench's columns (SDPA rows: config sdpa-*).
    models=results/bench/cuda_${tag}_models.csv; tmpm=$(mktemp -d)
    echo "shape,window,kind,config,batch,tokens,ms,gbs,pct_copy,speedup_vs_fp16,speedup_vs_dequant,check" > "$tmpm/all"
    for x in "smollm2 64 9 3 32768 0" "gemma3-w512 256 4 1 32768 512" "gemma3 256 4 1 32768 0"; do
        set -- $x
        lt=$5; [ "$6" -gt 0 ] && lt=$6
        "$TQB" bench --device cuda $VAR --only attn --batch 1,16 --tokens $lt --dim $2 --q-heads $3 --kv-heads $4 --bits 3 \
            -o "$tmpm/tq.csv" 2>&1 | tee -a "$OUT/bench.log" || rc=1
        awk -F, -v n=$1 -v w=$6 '$1 == "attn" { print n "," w "," $0 }' "$tmpm/tq.csv" >> "$tmpm/all"
        PYTHONUNBUFFERED=1 python3 eval/bench_sdpa.py --batch 1,16 --tokens $5 --dim $2 --q-heads $3 --kv-heads $4 \
            --window $6 -o "$tmpm/sdpa.csv" 2>&1 | tee -a "$OUT/bench.log"
        awk -F, -v n=$1 -v w=$6 '$1 == "attn" { print n "," w "," $0 ",,,," }' "$tmpm/sdpa.csv" >> "$tmpm/all"
    done
    mv "$tmpm/all" "$models"; rm -rf "$tmpm"
    shapes=results/bench/cuda_${tag}_shapes.csv; tmpx=$(mktemp -d)
    [ "${GPU_RUN_SHAPES:-1}" = 0 ] && shapes=$tmpx/skipped.csv
    echo "bits,q_heads,kind,config,batch,tokens,ms,gbs,pct_copy,speedup_vs_fp16,speedup_vs_dequant,check" > "$tmpx/all"
    for x in $([ "${GPU_RUN_SHAPES:-1}" = 0 ] || echo "2,32 4,32 3,8 3,16 3,64"); do
        x=${x/,/ }
        b=${x% *}; h=${x#* }
        "$TQB" bench --device cuda --only attn --batch 16 --tokens 65536 --bits $b --q-heads $h --kv-heads 8 \
            -o "$tmpx/tq.csv" 2>&1 | tee -a "$OUT/bench.log" || rc=1
        awk -F, -v b=$b -v h=$h '$1 == "attn" { print b "," h "," $0 }' "$tmpx/tq.csv" >> "$tmpx/all"
        if [ $b = 3 ]; then
            PYTHONUNBUFFERED=1 python3 eval/bench_sdpa.py --batch 16 --tokens 65536 --q-heads $h --kv-heads 8 \
                -o "$tmpx/sdpa.csv" 2>&1 | tee -a "$OUT/bench.log"
            awk -F, -v h=$h '$1 == "attn" { print "0," h "," $0 ",,,,," }' "$tmpx/sdpa.csv" >> "$tmpx/all"
        fi
    done
    mv "$tmpx/all" "$shapes"; rm -rf "$tmpx"
    if [ -n "$NCU" ] && [ "${GPU_RUN_NCU:-1}" != 0 ]; then
        timeout 200 "$NCU" --clock-control none -k regex:k_attn -c 30 --section SpeedOfLight --section Occupancy --section ComputeWorkloadAnalysis \
            --print-summary per-kernel "$TQB" bench --device cuda --only attn --batch 16 --tokens 65536 --iters 1 \
            > "$OUT/ncu.txt" 2>&1 || echo "ncu: rc $?" >> "$OUT/ncu.txt"
        timeout 120 "$NCU" --clock-control none -k regex:k_encode -c 1 --section SpeedOfLight --section Occupancy \
            --section ComputeWorkloadAnalysis "$TQB" bench --device cuda --only encode --iters 1 \
            >> "$OUT/ncu.txt" 2>&1 || echo "ncu encode: rc $?" >> "$OUT/ncu.txt"
    fi
    python3 eval/bench_report.py "$csv" results/bench/sdpa_$tag.csv "$OUT/ncu.txt" results/bench/cuda_$tag.md eval/cuda_notes.md
    cp results/bench/cuda_$tag.* results/bench/sdpa_$tag.csv "$shapes" "$models" "$OUT/" 2>/dev/null
fi
# Phase `round2`: the acceptance shapes of the round-2 kernels (fused small-batch decode, d = 64 / 256 tensor-core
# paths, the encoders), each timed twice — eagerly (host launches in the loop, as before) and as CUDA-graph replays
# (device time: what a decode engine that captures its step sees) — beside PyTorch SDPA timed the same two ways, in
# the same call; beside them the variants fast-r2 (the round-2 form of fast as measured on 2026-12-07: k_prep
# in front of the fused split kernel, two pair tables) and encode=mt2 (dense turbo-mse, two m-tiles a warp), and
# the floor of a one-kernel decode over each shape's cache (eval/cuda_dev/b1_floor.cu). Report:
# results/bench/cuda_<gpu>_round2.{md,csv}
# (eval/bench_round2.py).
# Phase `profile`: Nsight Compute on the single-stream decode (B = 1, 32 q / 8 kv heads, d = 128, 3-bit turbo-mse
# Hadamard on the fused path) at L = 32k and 128k: every section for k_prep and the split kernel (duration, DRAM and
# L2 throughput, stall reasons), to see where a B = 1 call's time goes beyond reading the codes ($OUT/ncu_b1_<L>.txt),
# and the encoders' kernels ($OUT/ncu_encode.txt).
if [ "$phase" = profile ]; then
    for L in 32768 131072; do
        timeout 150 "$NCU" --clock-control none -k regex:'k_attn_mma' -c 1 --set full --import-source no \
            "$TQB" bench --device cuda --variant attn=fast --only attn --batch 1 --tokens $L --iters 1 \
            > "$OUT/ncu_b1_$L.txt" 2>&1 || echo "ncu b1 L=$L: rc $?" >> "$OUT/ncu_b1_$L.txt"
    done
    # the tensor-core encoders (turbo-prod Hadamard, dense turbo-mse): throughput, stalls, occupancy
    timeout 150 "$NCU" --clock-control none -k regex:'k_encode' -c 8 --section SpeedOfLight --section Occupancy \
        --section WarpStateStats --section MemoryWorkloadAnalysis --section LaunchStats --section SchedulerStats \
        "$TQB" bench --device cuda --only encode --iters 1 --encode-vectors 1048576 > "$OUT/ncu_encode.txt" 2>&1 ||
        echo "ncu encode: rc $?" >> "$OUT/ncu_encode.txt"
fi
if [ "$phase" = round2 ] || [ "$phase" = all ]; then
    r2=$(mktemp -d)
    for T in eager graph; do
        G=; [ $T = graph ] && G=--graph
        "$TQB" bench --device cuda --variant attn=fast $G --only copy,attn --batch 1 --tokens 32768,131072 \
            -o "$r2/tq-main-b1-$T.csv" 2>&1 | tee -a "$OUT/round2.log" || rc=1
        # the same with k_prep in front of the fused split kernel (the path before the prep was folded into it)
        "$TQB" bench --device cuda --variant attn=fast-r2 $G --only attn --batch 1 --tokens 32768,131072 \
            -o "$r2/tq-main-b1_r2-$T.csv" 2>&1 | tee -a "$OUT/round2.log" || rc=1
        "$TQB" bench --device cuda --variant attn=fast $G --only attn --batch 16 --tokens 65536 \
            -o "$r2/tq-main-b16-$T.csv" 2>&1 | tee -a "$OUT/round2.log" || rc=1
        "$TQB" bench --device cuda --variant attn=fast-r2 $G --only attn --batch 16 --tokens 65536 \
            -o "$r2/tq-main-b16_r2-$T.csv" 2>&1 | tee -a "$OUT/round2.log" || rc=1
        PYTHONUNBUFFERED=1 python3 eval/bench_sdpa.py $G --batch 1 --tokens 32768,131072 -o "$r2/sdpa-main-b1-$T.csv" \
            2>&1 | tee -a "$OUT/round2.log"
        PYTHONUNBUFFERED=1 python3 eval/bench_sdpa.py $G --batch 16 --tokens 65536 -o "$r2/sdpa-main-b16-$T.csv" \
            2>&1 | tee -a "$OUT/round2.log"
        # the bundled models' shapes at B = 1 and 16, L = 32k: SmolLM2 (d 64, 9 q / 3 kv), Gemma 3 (d 256, 4 q / 1 kv)
        # with its 512-token window (tq reads exactly the window's rows: an L = 512 cache) and without
        for x in "smollm2 64 9 3 32768 0" "gemma3-w512 256 4 1 32768 512" "gemma3 256 4 1 32768 0"; do
            set -- $x
            lt=$5; [ "$6" -gt 0 ] && lt=$6
            "$TQB" bench --device cuda --variant attn=fast $G --only attn --batch 1,16 --tokens $lt --dim $2 \
                --q-heads $3 --kv-heads $4 -o "$r2/tq-$1-$T.csv" 2>&1 | tee -a "$OUT/round2.log" || rc=1
            "$TQB" bench --device cuda --variant attn=fast-r2 $G --only attn --batch 1,16 --tokens $lt --dim $2 \
                --q-heads $3 --kv-heads $4 -o "$r2/tq-$1_r2-$T.csv" 2>&1 | tee -a "$OUT/round2.log" || rc=1
            PYTHONUNBUFFERED=1 python3 eval/bench_sdpa.py $G --batch 1,16 --tokens $5 --dim $2 --q-heads $3 \
                --kv-heads $4 --window $6 -o "$r2/sdpa-$1-$T.csv" 2>&1 | tee -a "$OUT/round2.log"
        done
    done
    "$TQB" bench --device cuda --only encode -o "$r2/tq-encode-eager.csv" 2>&1 | tee -a "$OUT/round2.log" || rc=1
    "$TQB" bench --device cuda --variant encode=mt2 --only encode -o "$r2/tq-encode_mt2-eager.csv" 2>&1 |
        tee -a "$OUT/round2.log" || rc=1
    # the floor of a one-kernel decode over each shape's cache (eval/cuda_dev/b1_floor.cu, built by gpu_pack.sh)
    FLOOR=.devbin/b1_floor
    [ -x "$FLOOR" ] ||
        { nvcc -O3 -std=c++17 -arch=sm_90 -o "$r2/b1_floor" eval/cuda_dev/b1_floor.cu && FLOOR=$r2/b1_floor; }
    "$FLOOR" -o "$r2/floor.csv" 2>&1 | tee -a "$OUT/round2.log" || rc=1
    python3 eval/bench_round2.py "$r2" "results/bench/cuda_${tag}_round2" 2>&1 | tee -a "$OUT/round2.log" || rc=1
    cp results/bench/cuda_${tag}_round2.* "$OUT/" 2>/dev/null
    rm -rf "$r2"
fi
exit $rc
