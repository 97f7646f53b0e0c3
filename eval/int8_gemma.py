#!/usr/bin/env python3
"""int8_gemma.py: why does the int8 KV cache (int8 codes, one fp16 absmax scale per vector) cost Gemma 3 more
perplexity than SmolLM2? The same int8 round trip written here in NumPy (from the format's definition, not tq's code)
runs inside scripts/check_model.py's float64 forward pass (every K/V row quantized before any query reads it, as tq
perplexity's --prefill quantized), beside tq perplexity's own rows on the same tokens: K and V together, keys alone,
values alone, the scale in fp32 instead of fp16, and a plain fp16 cache for scale; plus each layer's crest factor
(max |x| / rms of a row), which sets int8's relative error: an absmax step s = max|x|/127 gives a uniform error of
variance s^2/12 per coordinate, i.e. a relative MSE of crest^2 / (12 * 127^2).
Usage: python3 eval/int8_gemma.py [--model gemma3|smollm2|PATH] [--tokens 256] [-o results/closed_loop/int8_gemma.md]
Needs the gguf package and lib/libtq.a (make); minutes of CPU (float64 passes over a 262k-entry output head)."""
import argparse
import csv
import os
import subprocess
import sys
import tempfile

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "scripts"))
import check_model  # noqa: E402  (NumpyModel, the tokenizer driver)

TEXT = os.path.join(ROOT, "results", "closed_loop", "text.txt")


def half_up(x):
    """Smallest float16 >= x (elementwise, x >= 0): the stored scale covers max|x| / 127 (tq's rule, the format's)."""
    h = x.astype(np.float16)
    low = h.astype(np.float64) < x
    h[low] = np.nextafter(h[low], np.float16(np.inf))
    return h.astype(np.float64)


class Int8Hook:
    """kv_hook: rows of K and/or V through int8 with a per-vector absmax scale (fp16 rounded up, or exact fp32);
    round half to even (numpy's rint, as C's rintf in the default mode). Counts exact .5 ties on the way."""

    def __init__(self, keys=True, values=True, scale="fp16"):
        self.keys, self.values, self.scale, self.ties, self.coords = keys, values, scale, 0, 0

    def q(self, x):
        amax = np.abs(x).max(-1, keepdims=True)
        s = amax / 127.0
        s = half_up(s) if self.scale == "fp16" else s.astype(np.float32).astype(np.float64)
        s = np.where(s > 0, s, 1.0)
        r = x / s
        self.ties += int(np.count_nonzero(np.abs(r - np.trunc(r)) == 0.5))
        self.coords += r.size
        return np.clip(np.rint(r), -127, 127) * s

    def __call__(self, L, k, v):
        return (self.q(k) if self.keys else k), (self.q(v) if self.values else v)


def fp16_hook(L, k, v):
    return k.astype(np.float16).astype(np.float64), v.astype(np.float16).astype(np.float64)


def scores(ref, lq, nxt):
    n = np.arange(len(nxt))
    ppl_ref = float(np.exp(-ref[n, nxt].mean()))
    ppl = float(np.exp(-lq[n, nxt].mean()))
    kl = float((np.exp(ref) * (ref - lq)).sum(-1).mean())
    top1 = float((ref.argmax(-1) == lq.argmax(-1)).mean())
    return ppl_ref, ppl, 100.0 * (ppl / ppl_ref - 1.0), kl, top1


def tq_rows(tq, gguf, tokens, work):
    """tq perplexity on the same tokens: int8 K+V, keys only, values only; plus --per-layer in-loop metrics."""
    base = [tq, "perplexity", gguf, "--text", TEXT, "--tokens", str(tokens), "--threads", "1", "--format", "csv"]
    a, k, b, lay = (os.path.join(work, n) for n in ("a.csv", "k.csv", "b.csv", "layers.csv"))
    subprocess.run(base + ["--methods", "int8", "--per-layer", lay, "-o", a], check=True)
    subprocess.run(base + ["--methods", "int8", "--values", "none", "-o", k], check=True)
    subprocess.run(base + ["--methods", "fp16", "--values", "int8:8", "-o", b], check=True)
    rows = [r for p in (a, k, b) for r in csv.DictReader(open(p))]
    names = {("int8", "int8"): "int8 K+V", ("int8", "none"): "int8 keys only", ("fp16", "int8"): "int8 values only"}
    out = {}
    for r in rows:
        out[names[(r["method"], r["values"].split(",")[0])]] = (float(r["ppl_ref"]), float(r["ppl"]),
                                                               float(r["dppl_pct"]), float(r["kl"]), float(r["top1"]))
    layers = list(csv.DictReader(open(lay)))
    return out, layers


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default="gemma3")
    ap.add_argument("--tokens", type=int, default=256)
    ap.add_argument("--tq", default=os.path.join(ROOT, "tq"))
    ap.add_argument("-o", "--output", default=os.path.join(ROOT, "results", "closed_loop", "int8_gemma.md"))
    a = ap.parse_args()
    gguf = a.model
    if a.model in ("gemma3", "smollm2"):
        gguf = subprocess.run(["bash", os.path.join(ROOT, "scripts", "get_models.sh"), a.model], check=True,
                              capture_output=True, text=True).stdout.strip()
    with tempfile.TemporaryDirectory() as wd:
        exe = check_model.build_driver(wd)
        ids = check_model.tq_tokenize(exe, gguf, open(TEXT, encoding="utf-8").read(), wd)[: a.tokens]
        tq, layers = tq_rows(a.tq, gguf, a.tokens, wd)
    m = check_model.NumpyModel(gguf)
    nxt = np.asarray(ids[1:])

    def logprobs(hook):
        lg, kvs = m.forward(ids, kv_hook=hook)
        lg = lg[:-1]
        mx = lg.max(-1, keepdims=True)
        return lg - mx - np.log(np.exp(lg - mx).sum(-1, keepdims=True)), kvs

    ref, kvs = logprobs(None)
    # crest factor per layer (K and V): mean over rows of max|x| / rms(x), and int8's predicted relative MSE
    crest = [(float(np.mean(np.abs(k).max(-1) / np.sqrt((k * k).mean(-1)))),
              float(np.mean(np.abs(v).max(-1) / np.sqrt((v * v).mean(-1))))) for k, v in kvs]
    variants = [("int8 K+V", Int8Hook()), ("int8 keys only", Int8Hook(values=False)),
                ("int8 values only", Int8Hook(keys=False)), ("int8 K+V, fp32 scale", Int8Hook(scale="fp32")),
                ("fp16 cache (K+V rounded to half)", fp16_hook)]
    res = {}
    for name, h in variants:
        lq, _ = logprobs(h)
        res[name] = scores(ref, lq, nxt)
        print(f"int8_gemma: {name}: dppl {res[name][2]:+.3f}% kl {res[name][3]:.5f}", file=sys.stderr)
    ties = variants[0][1].ties, variants[0][1].coords
    L = [f"# int8 KV cache on {os.path.basename(gguf)}: {len(ids)} tokens of results/closed_loop/text.txt", "",
         "Generated by `python3 eval/int8_gemma.py" + (f" --model {a.model}" if a.model != "gemma3" else "") +
         (f" --tokens {a.tokens}" if a.tokens != 256 else "") + "`. Every K/V row quantized when written (prompt "
         "included), no recent window. NumPy: scripts/check_model.py's float64 forward pass with the int8 round trip "
         "written from the format's definition; tq: `tq perplexity` (float32 model) on the same token ids.", "",
         "| cache | NumPy ΔPPL | NumPy KL | NumPy top1 | tq ΔPPL | tq KL | tq top1 |", "|---|---:|---:|---:|---:|---:|---:|"]
    for name, _ in variants:
        n = res[name]
        t = tq.get(name)
        ts = f"{t[2]:+.3f}% | {t[3]:.5f} | {t[4]:.3f}" if t else "– | – | –"
        L.append(f"| {name} | {n[2]:+.3f}% | {n[3]:.5f} | {n[4]:.3f} | {ts} |")
    L += ["", f"PPL of the exact cache: NumPy {res['int8 K+V'][0]:.4f}, tq {tq['int8 K+V'][0]:.4f}. Exact .5 ties in "
          f"x/s under int8 K+V: {ties[0]} of {ties[1]} coordinates (the rounding mode decides nothing).", "",
          "Per layer: crest factor (mean over rows of max|x| / rms), int8's predicted relative MSE "
          "crest² / (12 · 127²), and tq's in-loop attention KL and output error under int8 K+V (`--per-layer`).", "",
          "| layer | K crest | V crest | K rel. MSE | V rel. MSE | in-loop attn_kl | in-loop out_rel |",
          "|---:|---:|---:|---:|---:|---:|---:|"]
    kv_layers = layers
    for li, (ck, cv) in enumerate(crest):
        r = next((x for x in kv_layers if int(x["layer"]) == li), None)
        lk = f"{float(r['attn_kl']):.2e} | {float(r['out_rel']):.4f}" if r else "– | –"
        L.append(f"| {li} | {ck:.1f} | {cv:.1f} | {ck * ck / (12 * 127 ** 2):.2e} | {cv * cv / (12 * 127 ** 2):.2e} | "
                 f"{lk} |")
    tmp = a.output + ".tmp"
    with open(tmp, "w") as f:
        f.write("\n".join(L) + "\n")
    os.replace(tmp, a.output)
    print("\n".join(L))


if __name__ == "__main__":
    main()
