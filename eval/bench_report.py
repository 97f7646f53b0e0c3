#!/usr/bin/env python3
"""bench_report.py: merge `tq bench --device cuda` CSV, eval/bench_sdpa.py CSV and an ncu summary into the Markdown
report results/bench/cuda_<gpu>.md: encode throughput, decode attention per (B, L) with speedups of the fused kernel
against PyTorch SDPA (fp16), tq's own fp16 kernel and dequantize-then-attend, bandwidth against the measured copy."""
import csv
import sys


def load(path):
    dev, rows = "", []
    with open(path) as f:
        lines = [l for l in f if l.strip()]
    for l in lines:
        if l.startswith("# device:"):
            dev = l.split(":", 1)[1].strip()
    rows = list(csv.DictReader(l for l in lines if not l.startswith("#")))
    return dev, rows


def shapes_section(path, sdpa, rows):
    """k_attn_mma's other instantiations (eval/gpu_run.sh's cuda_<gpu>_shapes.csv): one row per (bits, query heads)."""
    try:
        with open(path) as f:
            srows = list(csv.DictReader(f))
    except OSError:
        return []
    o = ["## Other widths and query-head groups (B = 16, L = 65536, 8 kv heads)", "",
         "Same run. turbo-prod at b bits = b-1 MSE bits + 1 QJL bit; values turbo-mse at b bits. The 3-bit / 32-head",
         "row repeats the table above.", "",
         "| bits | q heads (G) | SDPA fp16 ms | tq fp16 ms | fused turbo-mse ms | fused turbo-prod ms | fused-mse GB/s (% copy) | "
         "fused-mse vs SDPA | fused-prod vs SDPA |", "|---|---|---|---|---|---|---|---|---|"]
    main16 = [r for r in rows if r["kind"] == "attn" and int(r["batch"]) == 16 and int(r["tokens"]) == 65536]
    shapes = sorted({(int(r["bits"]), int(r["q_heads"])) for r in srows if r["bits"] != "0"} | {(3, 32)},
                    key=lambda x: (x[1] != 32, x[1], x[0]))
    for bits, hq in shapes:
        rs = main16 if (bits, hq) == (3, 32) else [r for r in srows if int(r["bits"]) == bits and int(r["q_heads"]) == hq]
        get = lambda p: next((r for r in rs if r["config"].startswith(p)), None)
        f16, fm, fp = get("fp16"), get("fused-turbo-mse"), get("fused-turbo-prod")
        s = sdpa.get((16, 65536)) if hq == 32 else next(
            (float(r["ms"]) for r in srows if r["bits"] == "0" and int(r["q_heads"]) == hq), None)
        ms = lambda r: float(r["ms"]) if r else float("nan")
        sp = lambda a, b: f"{a / b:.2f}x" if a == a and b == b and b > 0 else "n/a"
        sv = s if s else float("nan")
        o.append(f"| {bits} | {hq} ({hq // 8}) | {sv:.4f} | {ms(f16):.4f} | {ms(fm):.4f} | {ms(fp):.4f} | "
                 f"{float(fm['gbs']) if fm else 0:.0f} ({float(fm['pct_copy']) if fm else 0:.0f}%) | "
                 f"{sp(sv, ms(fm))} | {sp(sv, ms(fp))} |")
    return o + [""]


def models_section(path):
    """The bundled models' shapes (eval/gpu_run.sh's cuda_<gpu>_models.csv): fused 3-bit turbo-mse against SDPA."""
    try:
        with open(path) as f:
            mrows = list(csv.DictReader(f))
    except OSError:
        return []
    o = ["## The bundled models' shapes (3 bits, L = 32768)", "",
         "Same run. SmolLM2-135M: d = 64, 9 query / 3 kv heads (GQA 3:1); Gemma 3 270M: d = 256, 4 query / 1 kv head",
         "(MQA 4:1), its sliding-window layers attend the last 512 tokens. A window reads exactly the rows of a",
         "512-token cache, so the fused row of a window is tq bench at L = 512; SDPA attends a 32k fp16 cache with the",
         "window sliced out or masked, whichever is faster.", "",
         "| shape | B | SDPA fp16 ms | tq fp16 ms | fused turbo-mse ms | fused GB/s (% copy) | fused vs SDPA | check |",
         "|---|---|---|---|---|---|---|---|"]
    for name in dict.fromkeys(r["shape"] for r in mrows):
        for B in sorted({int(r["batch"]) for r in mrows if r["shape"] == name}):
            rs = [r for r in mrows if r["shape"] == name and int(r["batch"]) == B]
            get = lambda p: next((r for r in rs if r["config"].startswith(p)), None)
            s, f16, fm = get("sdpa"), get("fp16"), get("fused-turbo-mse")
            ms = lambda r: float(r["ms"]) if r else float("nan")
            sp = f"{ms(s) / ms(fm):.2f}x" if s and fm else "n/a"
            o.append(f"| {name} | {B} | {ms(s):.4f} | {ms(f16):.4f} | {ms(fm):.4f} | "
                     f"{float(fm['gbs']) if fm else 0:.0f} ({float(fm['pct_copy']) if fm else 0:.0f}%) | {sp} | "
                     f"{fm['check'] if fm else ''} |")
    return o + [""]


def main():
    tq_csv, sdpa_csv, ncu_txt, out = sys.argv[1:5]
    dev, rows = load(tq_csv)
    try:
        _, srows = load(sdpa_csv)
    except OSError:
        srows = []
    sdpa = {(int(r["batch"]), int(r["tokens"])): float(r["ms"]) for r in srows}
    copy = next(float(r["gbs"]) for r in rows if r["kind"] == "copy")
    o = [f"# CUDA benchmark: {dev}", "",
         "Written by eval/gpu_run.sh (tq bench --device cuda, eval/bench_sdpa.py, ncu) in one run on one GPU.",
         "Shapes: 32 query heads, 8 kv heads, d = 128, one query token per (batch, query head), fp16 cache for the",
         "baselines, 3-bit codes (turbo-mse: 3 MSE bits; turbo-prod: 2 MSE bits + 1 QJL bit), Hadamard rotation,",
         "fp16 norms. ms = mean of 20 timed calls after 3 warm-ups (CUDA events). GB/s = bytes of the cache read",
         f"per second; the roofline is the measured device-to-device copy: {copy:.0f} GB/s (read + write).", "",
         "## Encode throughput (fp16 vectors in, packed codes + norms out)", "",
         "| config | vectors | ms | GB/s (fp16 in + codes out) | % of copy |", "|---|---|---|---|---|"]
    for r in rows:
        if r["kind"] == "encode":
            o.append(f"| {r['config']} | {r['tokens']} | {float(r['ms']):.3f} | {float(r['gbs']):.0f} | {float(r['pct_copy']):.0f}% |")
    o += ["", "## Decode attention", "",
          "| B | L | SDPA fp16 ms | tq fp16 ms | dequant+attend ms | fused turbo-mse ms | fused turbo-prod ms | "
          "fused-mse GB/s (% copy) | fused-mse vs SDPA | fused-mse vs dequant | fused-prod GB/s (% copy) | "
          "fused-prod vs SDPA |",
          "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    keys = sorted({(int(r["batch"]), int(r["tokens"])) for r in rows if r["kind"] == "attn"})
    for B, L in keys:
        def get(prefix):
            for r in rows:
                if r["kind"] == "attn" and int(r["batch"]) == B and int(r["tokens"]) == L and r["config"].startswith(prefix):
                    return r
            return None
        f16, dq, fm, fp = get("fp16"), get("dequant+fp16 mse"), get("fused-turbo-mse"), get("fused-turbo-prod")
        s = sdpa.get((B, L))
        ms = lambda r: float(r["ms"]) if r else float("nan")
        sp = lambda a, b: f"{a / b:.2f}x" if a == a and b == b and b > 0 else "n/a"
        o.append(f"| {B} | {L} | {s if s else float('nan'):.4f} | {ms(f16):.4f} | {ms(dq):.4f} | {ms(fm):.4f} | {ms(fp):.4f} | "
                 f"{float(fm['gbs']) if fm else 0:.0f} ({float(fm['pct_copy']) if fm else 0:.0f}%) | "
                 f"{sp(s or float('nan'), ms(fm))} | {sp(ms(dq), ms(fm))} | "
                 f"{float(fp['gbs']) if fp else 0:.0f} ({float(fp['pct_copy']) if fp else 0:.0f}%) | "
                 f"{sp(s or float('nan'), ms(fp))} |")
    o += ["", "Each fused row was validated before timing: its output equals dequantize-then-attend on the same codes",
          "within 2e-3 relative (fp16 rounding of the dequantized cache); tests/test_cuda.c checks it against a",
          "double-precision reference within 1e-3.", ""]
    o += shapes_section(tq_csv[:-4] + "_shapes.csv", sdpa, rows)
    o += models_section(tq_csv[:-4] + "_models.csv")
    o += ["## Nsight Compute (B = 16, L = 65536)", "", "```"]
    try:
        with open(ncu_txt) as f:
            txt = f.read()
        lines = [l.rstrip() for l in txt.splitlines() if l.strip() and not l.startswith("==")]
        first = next((i for i, l in enumerate(lines) if l.startswith("  void ") or l.startswith("  k_")), 0)
        keep = ("void ", "  k_", "Duration", "Throughput", "Occupancy", "Block Limit Registers", "Elapsed Cycles",
                "Issue", "Pipe", "IPC")  # "  k_": kernels that are no templates print without "void"
        o += [l for l in lines[first:] if any(k in l for k in keep)][:120]
    except OSError:
        o.append("(no ncu output)")
    o += ["```", ""]
    if len(sys.argv) > 5:  # hand-written reading of the numbers (eval/cuda_notes.md)
        try:
            with open(sys.argv[5]) as f:
                o += [f.read()]
        except OSError:
            pass
    with open(out + ".tmp", "w") as f:
        f.write("\n".join(o))
    import os
    os.replace(out + ".tmp", out)


if __name__ == "__main__":
    main()
