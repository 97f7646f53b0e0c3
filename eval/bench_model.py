#!/usr/bin/env python3
"""bench_model.py: how fast tq runs the bundled real models (make bench), against references run in the same process
tree, alternating, 3 rounds, medians (results/bench/model.md).

dump  `tq dump` of SmolLM2 over 1024 tokens against `scripts/dump_kv.py --gguf` (float64 NumPy) over the same text
      and token count, both end to end (load + forward + write, f16), both with the same BLAS thread count. Validated
      first: the two dumps hold the same token ids and their keys agree within 1e-3 of each layer's largest |key|.
pp    prompt processing, tokens/s: N tokens through the model, logits of the last one only, weights loaded (load
      time apart) and warmed up by an 8-token pass that is then forgotten: tq (eval/bench_model_pp.c, lib/model.h)
      against llama.cpp (llama-cpp-python, its defaults: n_batch 512, float16 KV cache), both models, same thread
      count. The llama.cpp rows are skipped when llama_cpp is not
      importable. tq's time split (tq_model_get_timing): weight matmuls / attention / the rest.

The text: the three bundled public-domain texts concatenated (datasets/text/, ~1150 tokens for either tokenizer).
usage: eval/bench_model.py [--tq ./tq] [--pp build/rel/eval/bench_model_pp] [--tokens 1024] [--threads 2]
                           [--rounds 3] [--out results/bench/model.md]"""
import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time

TEXTS = ["datasets/text/tale-of-two-cities.txt", "datasets/text/pride-and-prejudice.txt",
         "datasets/text/scandal-in-bohemia.txt"]

LLAMA_PP = r"""
import json, sys, time
from llama_cpp import Llama
path, text, n, threads = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
t0 = time.perf_counter()
llm = Llama(model_path=path, n_ctx=n, n_threads=threads, n_threads_batch=threads, verbose=False)
load = time.perf_counter() - t0
ids = llm.tokenize(open(text, "rb").read(), add_bos=True)
if len(ids) < n:
    sys.exit(f"llama.cpp: {len(ids)} tokens, fewer than {n}")
llm.eval(ids[:8])  # warm-up (first-touch of the mapped weights, thread pool), then forgotten
llm.reset()
t0 = time.perf_counter()
llm.eval(ids[:n])
s = time.perf_counter() - t0
print(json.dumps({"tokens": n, "load_s": load, "seconds": s, "tok_per_s": n / s}))
"""


def cpu_children():
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return ru.ru_utime + ru.ru_stime


def run(cmd, env=None, cpu=None):
    """Run cmd; its wall seconds (and, with a list for cpu, append its CPU seconds: user + system)."""
    c0, t0 = cpu_children(), time.perf_counter()
    r = subprocess.run(cmd, capture_output=True, text=True, env=env)
    wall = time.perf_counter() - t0
    if cpu is not None:
        cpu.append(cpu_children() - c0)
    if r.returncode:
        sys.exit(f"bench_model: {' '.join(cmd)} failed ({r.returncode}): {r.stderr.strip()[-2000:]}")
    return r, wall


def model_path(which):
    r, _ = run(["bash", "scripts/get_models.sh", which])
    return r.stdout.strip().splitlines()[-1]


def med(xs):
    return statistics.median(xs)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tq", default="./tq")
    ap.add_argument("--pp", default="build/rel/eval/bench_model_pp")
    ap.add_argument("--tokens", type=int, default=1024)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--only", choices=["all", "dump"], default="all", help="dump: skip prompt processing")
    ap.add_argument("--out", default="results/bench/model.md")
    a = ap.parse_args()
    env = dict(os.environ, OPENBLAS_NUM_THREADS=str(a.threads), OMP_NUM_THREADS=str(a.threads))
    models = {"smollm2": model_path("smollm2"), "gemma3": model_path("gemma3")}
    try:
        import llama_cpp  # noqa: F401
        llama_version = llama_cpp.__version__
    except ImportError:
        llama_version = None

    with tempfile.TemporaryDirectory() as tmp:
        text = os.path.join(tmp, "text.txt")
        with open(text, "wb") as f:
            for t in TEXTS:
                f.write(open(t, "rb").read())
        tq_h5, ref_h5 = os.path.join(tmp, "tq.h5"), os.path.join(tmp, "ref.h5")
        dump_tq = [a.tq, "dump", models["smollm2"], "--text", text, "--tokens", str(a.tokens), "--threads",
                   str(a.threads), "-o", tq_h5]
        dump_ref = [sys.executable, "scripts/dump_kv.py", "--gguf", models["smollm2"], "--text", text, "--tokens",
                    str(a.tokens), "--dtype", "f16", "-o", ref_h5]
        times = {"tq dump": [], "dump_kv.py": []}
        cpus = {"tq dump": [], "dump_kv.py": []}
        pp = {(m, e): [] for m in models for e in ("tq", "llama.cpp")}
        for r in range(a.rounds):
            print(f"bench_model: round {r + 1}/{a.rounds}", file=sys.stderr)
            times["tq dump"].append(run(dump_tq, env, cpus["tq dump"])[1])
            times["dump_kv.py"].append(run(dump_ref, env, cpus["dump_kv.py"])[1])
            if r == 0:
                validate(tq_h5, ref_h5)
            for m, path in (models.items() if a.only == "all" else []):
                out, _ = run([a.pp, path, text, str(a.tokens), str(a.threads)], env)
                pp[(m, "tq")].append(json.loads(out.stdout))
                if llama_version:
                    out, _ = run([sys.executable, "-c", LLAMA_PP, path, text, str(a.tokens), str(a.threads)], env)
                    pp[(m, "llama.cpp")].append(json.loads(out.stdout))
    write(a, times, cpus, pp, llama_version)


def validate(tq_h5, ref_h5):
    import h5py
    import numpy as np
    with h5py.File(tq_h5) as x, h5py.File(ref_h5) as y:
        if list(x.attrs["token_ids"]) != list(y.attrs["token_ids"]):
            sys.exit("bench_model: tq dump and dump_kv.py tokenized the text differently")
        for name in x:
            k, r = x[name]["keys"][...].astype(np.float32), y[name]["keys"][...].astype(np.float32)
            e = np.abs(k - r).max() / np.abs(r).max()
            # float16 storage: one ulp is 2^-11 relative; the two float32/float64 passes differ by ~1e-6 before it
            if e > 1e-3:
                sys.exit(f"bench_model: {name} keys differ by {e:.3g} of the largest |key|")


def write(a, times, cpus, pp, llama_version):
    tq_d, ref_d = med(times["tq dump"]), med(times["dump_kv.py"])
    tq_c, ref_c = med(cpus["tq dump"]), med(cpus["dump_kv.py"])
    fmt = lambda xs: " / ".join(f"{x:.2f}" for x in xs)  # noqa: E731
    L = ["# Model benchmarks (`make bench`, eval/bench_model.py)", "",
         f"Measured on the shared development machine (2 cores shared by ~6 agents running builds and tests at the "
         f"same time): each row ran {a.rounds}x, alternating with its reference, medians reported; expect run-to-run "
         f"variation of tens of percent. BLAS threads: {a.threads} everywhere. Text: the three bundled texts "
         f"concatenated, first {a.tokens} tokens.", "",
         "## `tq dump` against `scripts/dump_kv.py --gguf` (SmolLM2-135M, f16, end to end)", "",
         "| | wall runs (s) | wall median (s) | CPU runs (s) | CPU median (s) |", "|---|---|---:|---|---:|",
         f"| `tq dump --threads {a.threads}` | {fmt(times['tq dump'])} | {tq_d:.2f} | {fmt(cpus['tq dump'])} | "
         f"{tq_c:.2f} |",
         f"| `scripts/dump_kv.py --gguf` (OPENBLAS_NUM_THREADS={a.threads}) | {fmt(times['dump_kv.py'])} | "
         f"{ref_d:.2f} | {fmt(cpus['dump_kv.py'])} | {ref_c:.2f} |", "",
         f"**tq dump is {ref_d / tq_d:.1f}x faster in wall time, {ref_c / tq_c:.1f}x in CPU time** (user + system "
         "of the process and its threads; less sensitive to the other jobs on the machine than wall time; target "
         f">= 10x). Both load the GGUF, dequantize, run {a.tokens} "
         "tokens through 30 layers and write keys, values and queries; tq in float32 without the output head (a dump "
         "needs no logits), dump_kv.py in float64. Validated before timing: same token ids, keys within 1e-3 of each "
         "layer's largest |key|.", "",
         "Why 10x is out of reach on this machine: the float32 forward pass alone needs ~250 GFLOP of sgemm (every "
         "layer's Q/K/V, O and FFN of all but the last, causal attention), and OpenBLAS's measured rate at those shapes "
         "puts its floor at several seconds per thread, above a tenth of dump_kv.py's time — "
         "[model_bound.md](model_bound.md) (eval/bench_model_bound.c, run by `make bench` before this script).", "",
         f"## Prompt processing, {a.tokens} tokens (tokens/s, logits of the last token only, after an 8-token "
         "warm-up, load excluded)", ""]
    if a.only == "dump":
        L += ["(not run: --only dump)", ""]
        return finish(a, L)
    if llama_version:
        L += [f"llama.cpp: llama-cpp-python {llama_version} (built from PyPI on this machine), default context "
              "settings (n_batch 512, float16 KV cache), the same GGUF and thread count.", "",
              "| model | tq runs | tq median | llama.cpp runs | llama.cpp median | tq / llama.cpp |",
              "|---|---|---:|---|---:|---:|"]
    else:
        L += ["llama.cpp: skipped (llama_cpp is not importable here).", "",
              "| model | tq runs | tq median |", "|---|---|---:|"]
    split = []
    for m in ("smollm2", "gemma3"):
        t = pp[(m, "tq")]
        tq_r = med([x["tok_per_s"] for x in t])
        row = f"| {t[0]['model']} ({t[0]['arch']}) | {fmt([x['tok_per_s'] for x in t])} | {tq_r:.1f} |"
        if llama_version:
            lr = [x["tok_per_s"] for x in pp[(m, "llama.cpp")]]
            row += f" {fmt(lr)} | {med(lr):.1f} | {tq_r / med(lr):.2f}x |"
        L.append(row)
        mid = sorted(t, key=lambda x: x["tok_per_s"])[len(t) // 2]
        tot = mid["matmul_s"] + mid["attention_s"] + mid["other_s"]
        split.append(f"| {m} | {mid['seconds']:.2f} | {mid['matmul_s']:.2f} ({100 * mid['matmul_s'] / tot:.0f}%) | "
                     f"{mid['attention_s']:.2f} ({100 * mid['attention_s'] / tot:.0f}%) | "
                     f"{mid['other_s']:.2f} ({100 * mid['other_s'] / tot:.0f}%) | {mid['load_s']:.2f} | "
                     f"{mid['weight_bytes'] / 2**20:.0f} MiB |")
    L += ["", "### Where tq's time goes (the median run, lib/model's tq_model_get_timing)", "",
          "| model | forward (s) | weight matmuls | attention | the rest | load (s) | float32 weights |",
          "|---|---:|---:|---:|---:|---:|---:|"] + split
    L += ["", "Weight matmuls: Q/K/V/O, FFN and the output head as OpenBLAS sgemm over float32 weights dequantized at "
          "load (llama.cpp multiplies the 4-bit blocks directly with 8-bit activations: fewer bytes per weight "
          "moved). Attention: QK^T and PV as sgemm per head and 64-query block over the keys the block can see (the "
          "sliding window bounds it on Gemma's local layers), softmax in between. The rest: norms, RoPE, "
          "activations, residual adds.", ""]
    finish(a, L)


def finish(a, L):
    tmp = a.out + ".tmp"
    with open(tmp, "w") as f:
        f.write("\n".join(L))
    os.replace(tmp, a.out)
    print("\n".join(L))


if __name__ == "__main__":
    main()
