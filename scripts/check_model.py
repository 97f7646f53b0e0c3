#!/usr/bin/env python3
"""check_model.py: tq's C forward pass (lib/model.c) against independent implementations on real weights.
References: llama.cpp through llama-cpp-python (its tokenization, its logits), and a float64 NumPy forward pass
(written here from the architectures' published definitions; weights dequantized by the `gguf` package) for the
float32-vs-float64 check and K/V. Writes results/models/<model>.md and, with --golden, tests/golden/models/model_<name>.txt.
usage: check_model.py MODEL.gguf --name NAME [--texts FILE...] [--tokens N] [--threads N] [--golden]"""
import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# The C driver: tq's forward pass over token ids from a file; logits and the K/V cache to files; timings as JSON.
DRIVER = r"""
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include "model.h"
#include "tq.h"
static double now(void) { struct timespec t; clock_gettime(CLOCK_MONOTONIC, &t); return t.tv_sec + 1e-9 * t.tv_nsec; }
int main(int argc, char **argv)
{
    if (argc < 7) { fprintf(stderr, "usage: model_run MODEL TOKENS.i32 LOGITS.f32|- CHUNK KV.f32|- THREADS\n"); return 2; }
    int chunk = atoi(argv[4]);
    tq_model_set_threads(atoi(argv[6]));
    FILE *f = fopen(argv[2], "rb");
    if (!f) { perror(argv[2]); return 1; }
    static int32_t tok[1 << 16];
    int n = (int)fread(tok, 4, 1 << 16, f);
    fclose(f);
    tq_model *m;
    double t0 = now();
    if (tq_model_load(argv[1], &m) < 0) { fprintf(stderr, "model_run: %s\n", tq_error_msg()); return 1; }
    const tq_model_config *c = tq_model_get_config(m);
    double tl = now() - t0;
    tq_kv_cache *kc;
    if (tq_kv_cache_create(m, n, &kc) < 0) { fprintf(stderr, "model_run: %s\n", tq_error_msg()); return 1; }
    int step = chunk < 1 ? n : chunk;
    int want = strcmp(argv[3], "-") != 0;
    float *lg = want ? malloc((size_t)step * c->n_vocab * sizeof(float)) : NULL;
    FILE *out = want ? fopen(argv[3], "wb") : NULL;
    tq_model_reset_timing(m);
    double tf = now();
    for (int t = 0; t < n; t += step) {
        int k = n - t < step ? n - t : step;
        if (tq_model_forward(m, kc, tok + t, k, lg) < 0) { fprintf(stderr, "model_run: %s\n", tq_error_msg()); return 1; }
        if (out) fwrite(lg, sizeof(float), (size_t)k * c->n_vocab, out);
    }
    tf = now() - tf;
    if (out) fclose(out);
    const tq_model_timing *tm = tq_model_get_timing(m);
    printf("{\"arch\": \"%s\", \"weight_bytes\": %zu, \"load_s\": %.3f, \"tokens\": %d, \"forward_s\": %.4f, "
           "\"matmul_s\": %.4f, \"attention_s\": %.4f, \"other_s\": %.4f}\n", c->arch_name, c->weight_bytes, tl, n, tf,
           tm->matmul_s, tm->attention_s, tm->other_s);
    if (strcmp(argv[5], "-")) {
        FILE *kv = fopen(argv[5], "wb");
        for (int l = 0; l < c->n_layers; l++)
            for (int h = 0; h < c->n_kv_head; h++) {
                fwrite(tq_kv_cache_keys(kc, l, h), sizeof(float), (size_t)n * c->head_dim, kv);
                fwrite(tq_kv_cache_values(kc, l, h), sizeof(float), (size_t)n * c->head_dim, kv);
            }
        fclose(kv);
    }
    free(lg);
    tq_kv_cache_free(kc);
    tq_model_free(m);
    return 0;
}
"""


TOK_DRIVER = r"""
#include <stdio.h>
#include <stdlib.h>
#include "gguf.h"
#include "tokenizer.h"
#include "tq.h"
int main(int argc, char **argv)
{
    tq_gguf *g;
    tq_tokenizer *t;
    if (argc < 3 || tq_gguf_open(argv[1], &g) < 0 || tq_tokenizer_from_gguf(g, &t) < 0) {
        fprintf(stderr, "tok: %s\n", tq_error_msg());
        return 1;
    }
    FILE *f = fopen(argv[2], "rb");
    static char buf[1 << 20];
    size_t n = f ? fread(buf, 1, sizeof buf, f) : 0;
    if (f) fclose(f);
    int32_t *ids;
    int k;
    if (tq_tokenize(t, buf, n, TQ_TOKENIZE_ADD_SPECIAL, &ids, &k) < 0) { fprintf(stderr, "tok: %s\n", tq_error_msg()); return 1; }
    for (int i = 0; i < k; i++) printf("%d ", ids[i]);
    printf("\n");
    return 0;
}
"""


def build_driver(workdir):
    """Compile the driver against lib/libtq.a (make builds it first)."""
    subprocess.run(["make", "-s", "-C", ROOT, "lib/libtq.a"], check=True, stdout=subprocess.DEVNULL)
    src = os.path.join(workdir, "model_run.c")
    exe = os.path.join(workdir, "model_run")
    with open(src, "w") as f:
        f.write(DRIVER)
    libs = subprocess.run(["pkg-config", "--libs", "hdf5", "openblas", "lapacke"], capture_output=True, text=True,
                          check=True).stdout.split()
    subprocess.run(["cc", "-O2", "-std=c11", "-D_DEFAULT_SOURCE", "-I" + os.path.join(ROOT, "lib"), src,
                    os.path.join(ROOT, "lib", "libtq.a")] + libs + ["-fopenmp", "-lm", "-o", exe], check=True)
    with open(src, "w") as f:
        f.write(TOK_DRIVER)
    subprocess.run(["cc", "-O2", "-std=c11", "-D_DEFAULT_SOURCE", "-I" + os.path.join(ROOT, "lib"), src,
                    os.path.join(ROOT, "lib", "libtq.a")] + libs + ["-fopenmp", "-lm", "-o", exe + "_tok"], check=True)
    return exe


def tq_tokenize(exe, model, text, workdir):
    """Token ids of text by tq's tokenizer (lib/tokenizer.c), the model's BOS convention included."""
    p = os.path.join(workdir, "text.txt")
    with open(p, "w", encoding="utf-8") as f:
        f.write(text)
    r = subprocess.run([exe + "_tok", model, p], capture_output=True, text=True)
    if r.returncode:
        raise SystemExit(f"check_model: tq tokenizer failed: {r.stderr.strip()}")
    return [int(t) for t in r.stdout.split()]


def read_text(spec):
    """FILE, or FILE#A-B: paragraphs A..B (1-based, separated by blank lines) of FILE."""
    path, _, rng = spec.partition("#")
    text = open(path, encoding="utf-8").read()
    if not rng:
        return os.path.basename(path), text
    a, _, b = rng.partition("-")
    paras = [p for p in text.split("\n\n") if p.strip()]
    return f"{os.path.basename(path)} ¶{rng}", "\n\n".join(paras[int(a) - 1: int(b or a)])


def run_tq(exe, model, ids, workdir, chunk=0, kv=False, threads=1, logits=True):
    """tq's logits [T, vocab] (float32), K/V [layers, kv_heads, 2, T, d] or None, and the driver's timing JSON."""
    tok = os.path.join(workdir, "tok.i32")
    np.asarray(ids, dtype=np.int32).tofile(tok)
    lg = os.path.join(workdir, "logits.f32")
    kvp = os.path.join(workdir, "kv.f32")
    r = subprocess.run([exe, model, tok, lg if logits else "-", str(chunk), kvp if kv else "-", str(threads)],
                       capture_output=True, text=True)
    if r.returncode:
        raise SystemExit(f"check_model: tq driver failed: {r.stderr.strip()}")
    info = json.loads(r.stdout)
    out = np.fromfile(lg, dtype=np.float32).reshape(len(ids), -1) if logits else None
    kvs = np.fromfile(kvp, dtype=np.float32) if kv else None
    for p in (lg, kvp):
        if os.path.exists(p):
            os.remove(p)
    return out, kvs, info


# ---------------------------------------------------------------------------------------------------------------
# float64 NumPy reference (llama and gemma3), weights dequantized by the gguf package.

class NumpyModel:
    def __init__(self, path):
        from gguf import GGUFReader
        from gguf.quants import dequantize
        r = GGUFReader(path)
        self.meta = {}
        for k, f in r.fields.items():
            if k.startswith("tokenizer.ggml.") and k.split(".")[-1] in ("tokens", "scores", "token_type", "merges"):
                continue
            try:
                self.meta[k] = f.contents()
            except Exception:
                pass
        self.arch = self.meta["general.architecture"]
        if self.arch not in ("llama", "gemma3"):
            raise SystemExit(f"check_model: the NumPy reference covers llama and gemma3, not '{self.arch}'")
        g = lambda k, d=None: self.meta.get(f"{self.arch}.{k}", d)
        self.n_layers = int(g("block_count"))
        self.E = int(g("embedding_length"))
        self.H = int(g("attention.head_count"))
        self.KV = int(g("attention.head_count_kv", self.H))
        self.D = int(g("attention.key_length", self.E // self.H))
        self.eps = float(g("attention.layer_norm_rms_epsilon", 1e-5))
        self.base = float(g("rope.freq_base", 10000.0))
        self.window = int(g("attention.sliding_window", 0)) if self.arch == "gemma3" else 0
        self.t = {t.name: t for t in r.tensors}
        self._deq = dequantize
        self._w = {}

    def w(self, name):
        if name not in self._w:
            t = self.t[name]
            a = np.asarray(self._deq(t.data, t.tensor_type), dtype=np.float64)
            a = a.reshape([int(s) for s in reversed(t.shape)])
            if self.arch == "llama" and (name.endswith("attn_q.weight") or name.endswith("attn_k.weight")):
                # GGUF interleaves each head's rows for adjacent-pair RoPE; back to HF order for rotate-half RoPE
                nh = self.H if name.endswith("attn_q.weight") else self.KV
                a = a.reshape(nh, self.D // 2, 2, -1).swapaxes(1, 2).reshape(a.shape)
            self._w[name] = a
        return self._w[name]

    def has(self, name):
        return name in self.t

    def forward(self, ids, last=None, window=True, rows=None, kv_hook=None):
        """Logits [T, vocab] (only the last `last` rows, or the positions in `rows`, when given) and K/V per layer
        ([KV, T, D] each) of one full causal pass; window=False ignores the sliding windows (every layer global).
        kv_hook(layer, k, v) -> (k, v) replaces the post-RoPE rows before any query reads them (a quantized cache
        with every row quantized when written: tq perplexity's --prefill quantized, no recent window)."""
        def rms(x, w):
            return x / np.sqrt(np.mean(x * x, axis=-1, keepdims=True) + self.eps) * w

        def rope(x, pos, theta):
            d = x.shape[-1]
            inv = theta ** (-np.arange(0, d, 2, dtype=np.float64) / d)
            ang = pos[:, None] * inv[None, :]
            c, s = np.cos(ang), np.sin(ang)
            x1, x2 = x[..., : d // 2], x[..., d // 2:]
            return np.concatenate([x1 * c - x2 * s, x2 * c + x1 * s], axis=-1)

        ids = np.asarray(ids)
        T, H, KV, D = len(ids), self.H, self.KV, self.D
        gem = self.arch == "gemma3"
        pos = np.arange(T, dtype=np.float64)
        x = self.w("token_embd.weight")[ids] * (np.sqrt(self.E) if gem else 1.0)
        kvs = []
        for L in range(self.n_layers):
            p = f"blk.{L}."
            local = gem and L % 6 < 5
            theta = 10000.0 if local else self.base
            h = rms(x, self.w(p + "attn_norm.weight"))  # Gemma's GGUF stores 1 + w already
            q = (h @ self.w(p + "attn_q.weight").T).reshape(T, H, D).transpose(1, 0, 2)
            k = (h @ self.w(p + "attn_k.weight").T).reshape(T, KV, D).transpose(1, 0, 2)
            v = (h @ self.w(p + "attn_v.weight").T).reshape(T, KV, D).transpose(1, 0, 2)
            if gem:
                q, k = rms(q, self.w(p + "attn_q_norm.weight")), rms(k, self.w(p + "attn_k_norm.weight"))
            q, k = rope(q, pos, theta), rope(k, pos, theta)
            if kv_hook is not None:
                k, v = kv_hook(L, k, v)
            kvs.append((k, v))
            G = H // KV
            s = np.einsum("gqtd,gsd->gqts", q.reshape(KV, G, T, D), k) / np.sqrt(D)
            tt, ss = np.arange(T)[:, None], np.arange(T)[None, :]
            mask = ss <= tt
            if local and window:
                mask &= tt - ss < self.window  # key s visible to query t iff t - W < s <= t (llama.cpp, HF)
            s = np.where(mask, s, -np.inf)
            s = np.exp(s - s.max(-1, keepdims=True))
            s /= s.sum(-1, keepdims=True)
            o = np.einsum("gqts,gsd->gqtd", s, v).reshape(H, T, D).transpose(1, 0, 2).reshape(T, H * D)
            o = o @ self.w(p + "attn_output.weight").T
            if gem:
                o = rms(o, self.w(p + "post_attention_norm.weight"))
            x = x + o
            h = rms(x, self.w(p + "ffn_norm.weight"))
            gt, up = h @ self.w(p + "ffn_gate.weight").T, h @ self.w(p + "ffn_up.weight").T
            if gem:
                act = 0.5 * gt * (1 + np.tanh(np.sqrt(2 / np.pi) * (gt + 0.044715 * gt ** 3)))
            else:
                act = gt / (1 + np.exp(-gt))
            f = (act * up) @ self.w(p + "ffn_down.weight").T
            if gem:
                f = rms(f, self.w(p + "post_ffw_norm.weight"))
            x = x + f
        if last is not None:
            x = x[-last:]
        elif rows is not None:
            x = x[np.asarray(rows)]
        x = rms(x, self.w("output_norm.weight"))
        out = self.w("output.weight" if self.has("output.weight") else "token_embd.weight")
        return x @ out.T, kvs


# ---------------------------------------------------------------------------------------------------------------
# Golden files for tests/test_model.c: token ids and, per reference, each row's log-sum-exp and top-8 logits.

TOPK = 8


def golden_rows(logits, first_row=0):
    """Lines 't lse id logit ...' for each row: enough to check logits at the reference's top ids and log-probs."""
    out = []
    for r, row in enumerate(np.asarray(logits, dtype=np.float64)):
        m = row.max()
        lse = m + np.log(np.exp(row - m).sum())
        top = np.argsort(-row, kind="stable")[:TOPK]
        out.append(f"{first_row + r} {lse:.6f} " + " ".join(f"{i} {row[i]:.6f}" for i in top))
    return out


# ---------------------------------------------------------------------------------------------------------------
# Comparison metrics over next-token distributions.

def log_softmax(x):
    x = np.asarray(x, dtype=np.float64)
    m = x.max(-1, keepdims=True)
    return x - m - np.log(np.exp(x - m).sum(-1, keepdims=True))


def compare(ref_logits, tq_logits, ids):
    """Perplexities (of ids[1:]), mean KL(ref || tq), top-1 agreement, max |logit diff| relative to max |logit|."""
    lr, lt = log_softmax(ref_logits[:-1]), log_softmax(tq_logits[:-1])
    nxt = np.asarray(ids[1:])
    rows = np.arange(len(nxt))
    ppl_r, ppl_t = np.exp(-lr[rows, nxt].mean()), np.exp(-lt[rows, nxt].mean())
    kl = (np.exp(lr) * (lr - lt)).sum(-1)
    top1 = (lr.argmax(-1) == lt.argmax(-1)).mean()
    rel = np.abs(ref_logits - tq_logits).max() / np.abs(ref_logits).max()
    return {"ppl_ref": ppl_r, "ppl_tq": ppl_t, "dppl_pct": 100 * (ppl_t / ppl_r - 1), "kl": kl.mean(),
            "kl_max": kl.max(), "top1": top1, "max_rel": rel}


def llama_cpp_model(path, n_ctx):
    try:
        from llama_cpp import Llama
    except ImportError:
        raise SystemExit("check_model: llama-cpp-python is not installed (pip install llama-cpp-python)")
    return Llama(model_path=path, logits_all=True, n_ctx=n_ctx, n_threads=1, n_threads_batch=1, n_batch=n_ctx,
                 verbose=False)


def llama_cpp_run(llm, ids):
    """llama.cpp's logits [T, vocab] for ids (a fresh sequence) and the wall time of its eval."""
    llm.reset()
    t0 = time.perf_counter()
    llm.eval(ids)
    dt = time.perf_counter() - t0
    return np.array(llm.scores[: len(ids)], dtype=np.float32), dt


def write_f32_gguf(src, dst):
    """A copy of src with every tensor dequantized to F32 by the gguf package (metadata and vocabulary kept): the
    weights tq computes with, so llama.cpp run on it isolates its arithmetic from the quantization."""
    from gguf import GGUFReader, GGUFWriter, GGUFValueType
    from gguf.quants import dequantize
    r = GGUFReader(src)
    w = GGUFWriter(dst, r.fields["general.architecture"].contents())
    for k, f in r.fields.items():
        if k.startswith("GGUF.") or k == "general.architecture":
            continue
        if f.types[0] == GGUFValueType.ARRAY:
            w.add_array(k, f.contents())
        else:
            w.add_key_value(k, f.contents(), f.types[0])
    for t in r.tensors:
        a = np.asarray(dequantize(t.data, t.tensor_type), dtype=np.float32)
        w.add_tensor(t.name, a.reshape([int(x) for x in reversed(t.shape)]))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("model")
    ap.add_argument("--name", required=True, help="short name: results/models/<name>.md, tests/golden/models/model_<name>.txt")
    txt = os.path.join(ROOT, "datasets", "text")
    ap.add_argument("--texts", nargs="+", default=[os.path.join(txt, "tale-of-two-cities.txt#1-3"),
                                                     os.path.join(txt, "tale-of-two-cities.txt#4"),
                                                     os.path.join(txt, "scandal-in-bohemia.txt")],
                    help="FILE or FILE#A-B (paragraphs A..B)")
    ap.add_argument("--tokens", type=int, default=256, help="tokens per text (fewer if the text is shorter)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--golden", action="store_true", help="write tests/golden/models/model_<name>.txt")
    ap.add_argument("--golden-only", action="store_true", help="only the golden file (no llama.cpp comparison)")
    ap.add_argument("--numpy", action="store_true", help="also compare with the float64 NumPy pass (and its K/V)")
    ap.add_argument("--f32", action="store_true", help="also run llama.cpp on an F32 copy of the weights with an F32 "
                    "KV cache (its arithmetic without activation quantization)")
    ap.add_argument("--speed", type=int, default=0, metavar="N", help="time prompt processing of the first text N "
                    "times each, tq and llama.cpp alternating, and report the best of each (--speed-only: just that)")
    ap.add_argument("--speed-only", action="store_true")
    ap.add_argument("--window-tokens", type=int, default=768, help="sliding-window check length (gemma)")
    a = ap.parse_args()

    wd = tempfile.mkdtemp(prefix="check_model.")
    exe = build_driver(wd)
    try:
        import llama_cpp
        llm = llama_cpp_model(a.model, max(a.tokens, a.window_tokens) + 8)
        version = llama_cpp.__version__
    except ImportError:
        if not a.golden_only:
            raise SystemExit("check_model: llama-cpp-python is not installed (pip install llama-cpp-python); "
                             "--golden-only writes the float64 golden file without it")
        llm, version = None, None
    # llama.cpp's tokenization when it is here (BOS only where the model adds one), tq's otherwise
    tokenize = (lambda t: llm.tokenize(t.encode("utf-8"), add_bos=True)) if llm else \
        (lambda t: tq_tokenize(exe, a.model, t, wd))
    npm = NumpyModel(a.model) if a.numpy or a.golden or a.golden_only else None
    llm32 = None
    if a.f32:
        from llama_cpp import Llama
        f32 = os.path.join(wd, "f32.gguf")
        write_f32_gguf(a.model, f32)
        nc = max(a.tokens, a.window_tokens) + 8
        llm32 = Llama(model_path=f32, logits_all=True, n_ctx=nc, n_threads=1, n_threads_batch=1,
                      n_batch=nc, type_k=0, type_v=0, verbose=False)  # 0 = GGML_TYPE_F32 cache
    if a.speed_only:
        _, text = read_text(a.texts[0])
        ids = tokenize(text)[: a.tokens]
        best_tq, best_ref, brk = 1e9, 1e9, None
        for _ in range(max(a.speed, 1)):
            _, _, info = run_tq(exe, a.model, ids, wd, threads=a.threads)
            if info["forward_s"] < best_tq:
                best_tq, brk = info["forward_s"], info
            best_ref = min(best_ref, llama_cpp_run(llm, ids)[1])
        sp = {"tokens": len(ids), "runs": max(a.speed, 1), "tq_tps": len(ids) / best_tq,
              "ref_tps": len(ids) / best_ref, "ratio": best_ref / best_tq, "info": brk}
        print(json.dumps(sp))
        out = os.path.join(ROOT, "results", "models", f"{a.name}.md")
        with open(out) as f:
            rep = f.read().split("\n## Speed")[0].rstrip("\n")
        i = brk
        tot = i["matmul_s"] + i["attention_s"] + i["other_s"]
        rep += (f"\n\n## Speed\n\nPrompt processing of {len(ids)} tokens (logits of every position), {a.threads} "
                f"thread(s), tq and llama.cpp alternating, best of {sp['runs']} each (`check_model.py ... --speed-only "
                f"--speed {sp['runs']}`; the 2-core machine was shared with other jobs): tq {sp['tq_tps']:.1f} tok/s, "
                f"llama.cpp {sp['ref_tps']:.1f} tok/s, ratio {sp['ratio']:.2f}. tq's time: weight matmuls "
                f"{100 * i['matmul_s'] / tot:.0f}%, attention {100 * i['attention_s'] / tot:.0f}%, other "
                f"{100 * i['other_s'] / tot:.0f}%.\n")
        with open(out + ".tmp", "w") as f:
            f.write(rep)
        os.replace(out + ".tmp", out)
        return
    rows = []
    for spec in ([] if a.golden_only else a.texts):
        name, text = read_text(spec)
        ids = tokenize(text)[: a.tokens]
        if len(ids) < 200:
            print(f"check_model: warning: '{name}' gives {len(ids)} tokens (< 200)", file=sys.stderr)
        r = {"text": name, "n": len(ids)}
        if tq_tokenize(exe, a.model, text, wd)[: a.tokens] != ids:
            r["tok_mismatch"] = True
        ref, t_ref = llama_cpp_run(llm, ids)
        tq, _, info = run_tq(exe, a.model, ids, wd, threads=a.threads)
        r.update(compare(ref, tq, ids))
        r.update(tq_tps=len(ids) / info["forward_s"], ref_tps=len(ids) / t_ref, info=info)
        if llm32:
            ref32, _ = llama_cpp_run(llm32, ids)
            r["f32"] = compare(ref32, tq, ids)
        if not rows:  # decoding one token at a time over the first 64 positions (a decode step reads every weight)
            step, _, _ = run_tq(exe, a.model, ids[:64], wd, threads=a.threads, chunk=1)
            r["step_rel"] = float(np.abs(step - tq[:64]).max() / np.abs(tq[:64]).max())
        if a.numpy:
            nref, kvs = npm.forward(ids)
            _, kv, _ = run_tq(exe, a.model, ids, wd, threads=a.threads, kv=True, logits=False)
            kv = kv.reshape(npm.n_layers, npm.KV, 2, len(ids), npm.D)
            r["np_rel"] = float(np.abs(nref - tq).max() / np.abs(nref).max())
            r["np"] = compare(nref, tq, ids)
            r["np_llama"] = compare(nref, ref, ids)
            r["k_rel"] = max(float(np.abs(kv[L, :, 0] - kvs[L][0]).max() / np.abs(kvs[L][0]).max())
                             for L in range(npm.n_layers))
            r["v_rel"] = max(float(np.abs(kv[L, :, 1] - kvs[L][1]).max() / np.abs(kvs[L][1]).max())
                             for L in range(npm.n_layers))
        if a.numpy and npm.arch == "llama" and len(rows) == 0:
            # scripts/dump_kv.py's own float64 pass (the dumper tq dump must agree with): its K/V and logits
            sys.path.insert(0, os.path.join(ROOT, "scripts"))
            import dump_kv
            dm = dump_kv.GGUFModel(a.model)
            cache = [None] * dm.n_layers
            dref = dm.forward(ids, cache=cache)
            r["dkv_k_rel"] = max(float(np.abs(kv[L, :, 0] - cache[L][0]).max() / np.abs(cache[L][0]).max())
                                 for L in range(dm.n_layers))
            r["dkv_v_rel"] = max(float(np.abs(kv[L, :, 1] - cache[L][1]).max() / np.abs(cache[L][1]).max())
                                 for L in range(dm.n_layers))
            r["dkv_rel"] = float(np.abs(dref - tq).max() / np.abs(dref).max())
        rows.append(r)
        print(json.dumps({k: (float(v) if isinstance(v, (np.floating, float)) else v) for k, v in r.items()
                          if k not in ("info", "np", "np_llama", "f32")}), flush=True)

    win = None
    if a.golden or a.golden_only:
        lines = []
        _, text = read_text(a.texts[0])
        ids = tokenize(text)[:24]
        nref, _ = npm.forward(ids)
        lines += [f"tokens {len(ids)} " + " ".join(map(str, ids)), f"ref numpy64 {len(ids)} 0"] + golden_rows(nref)
        if llm:
            ref, _ = llama_cpp_run(llm, ids)
            lines += [f"ref llamacpp {len(ids)} 0"] + golden_rows(ref)
        if npm.window:
            # The window test: > 512 tokens so the local layers' windows cut (>= 700: 256 and more positions past the
            # window's length). Two sets of 8 rows: positions 504..511, whose windows (t - 512, t] still hold every
            # earlier key (ignoring the windows must change nothing there), and the last 8, where a local layer sees
            # only its last 512 keys. Float64 pass with the windows and with every layer global, and llama.cpp's.
            alltext = "".join(read_text(os.path.join(txt, f))[1] for f in
                              ("tale-of-two-cities.txt", "scandal-in-bohemia.txt", "pride-and-prejudice.txt"))
            wids = tokenize(alltext)[: a.window_tokens]
            if len(wids) < a.window_tokens:
                raise SystemExit(f"check_model: the texts give {len(wids)} tokens, fewer than {a.window_tokens}")
            T, k = len(wids), 8
            e0 = npm.window - k  # the early rows: positions e0 .. npm.window - 1
            both = list(range(e0, e0 + k)) + list(range(T - k, T))
            lwb = npm.forward(wids, rows=both)[0]
            lgb = npm.forward(wids, rows=both, window=False)[0]
            lw, lg, lwe, lge = lwb[k:], lgb[k:], lwb[:k], lgb[:k]
            tqw, _, _ = run_tq(exe, a.model, wids, wd, threads=a.threads)
            win = {"T": T, "e0": e0, "tq_vs_np_rel": float(np.abs(tqw[-k:] - lw).max() / np.abs(lw).max()),
                   "tq_vs_np_rel_early": float(np.abs(tqw[e0:e0 + k] - lwe).max() / np.abs(lwe).max()),
                   "window_effect_rel": float(np.abs(lg - lw).max() / np.abs(lw).max()),
                   "window_effect_rel_early": float(np.abs(lge - lwe).max() / np.abs(lwe).max())}
            lines += [f"wtokens {T} " + " ".join(map(str, wids)), f"wref numpy64 {k} {T - k}"] + golden_rows(lw, T - k)
            lines += [f"wref numpy64-global {k} {T - k}"] + golden_rows(lg, T - k)
            lines += [f"wref numpy64-early {k} {e0}"] + golden_rows(lwe, e0)
            if llm:
                lall, _ = llama_cpp_run(llm, wids)
                lref, lrefe = lall[-k:], lall[e0:e0 + k]
                win.update(np_vs_llama=compare(lref, lw, wids[-k:]), global_vs_llama=compare(lref, lg, wids[-k:]),
                           tq_vs_llama=compare(lref, tqw[-k:], wids[-k:]),
                           np_vs_llama_early=compare(lrefe, lwe, wids[e0:e0 + k]),
                           global_vs_llama_early=compare(lrefe, lge, wids[e0:e0 + k]))
                # the statistic tests/test_model.c bounds: mean |log p_tq - log p_llama.cpp| over llama.cpp's top-8
                def mad(ref, x):
                    lr, lx = log_softmax(ref), log_softmax(x)
                    top = np.argsort(-ref, axis=-1, kind="stable")[:, :TOPK]
                    return float(np.abs(np.take_along_axis(lr, top, -1) - np.take_along_axis(lx, top, -1)).mean())
                win.update(mad_np=mad(lref, lw), mad_global=mad(lref, lg), mad_tq=mad(lref, tqw[-k:]),
                           mad_np_early=mad(lrefe, lwe), mad_global_early=mad(lrefe, lge))
                lines += [f"wref llamacpp {k} {T - k}"] + golden_rows(lref, T - k)
                lines += [f"wref llamacpp-early {k} {e0}"] + golden_rows(lrefe, e0)
            if llm32:
                # the window's exact length: W keys (t - W, t] against W - 1 and W + 1, on llama.cpp's F32 arithmetic
                l32, _ = llama_cpp_run(llm32, wids)
                l32 = l32[-k:]
                W0 = npm.window
                for W in (W0 - 1, W0, W0 + 1):
                    npm.window = W
                    lwx = lw if W == W0 else npm.forward(wids, last=k)[0]
                    win[f"f32_W{W}"] = compare(l32, lwx, wids[-k:])
                npm.window = W0
            print(json.dumps(win, default=float), flush=True)
        gpath = os.path.join(ROOT, "tests", "golden", "models", f"model_{a.name}.txt")
        os.makedirs(os.path.dirname(gpath), exist_ok=True)
        src = f"llama-cpp-python {version} (tokens and llamacpp rows)" if llm else "tq's tokenizer (tokens)"
        head = [f"# tests/golden/models/model_{a.name}.txt: reference logits for tests/test_model.c, written by "
                f"scripts/check_model.py --golden", f"# model {os.path.basename(a.model)}; {src}; numpy64 = the "
                f"float64 NumPy pass of scripts/check_model.py (weights dequantized by the gguf package)",
                "# row lines: position, log-sum-exp of the row, then the reference's top-8 (token id, logit)"]
        tmp = gpath + ".tmp"
        with open(tmp, "w") as f:
            f.write("\n".join(head + lines) + "\n")
        os.replace(tmp, gpath)
        print(f"check_model: wrote {gpath}")
    if rows:
        write_report(a, rows, win, version)
    elif win and "np_vs_llama" in win:
        update_window_paragraph(a.name, win)


def window_paragraph(win):
    """The report's sliding-window paragraph (one line of Markdown)."""
    e0 = win["e0"]
    return (f"Sliding windows ({win['T']} tokens; local layers see their last 512 keys). Last 8 positions "
              f"({win['T'] - 8}..{win['T'] - 1}): mean KL(llama.cpp ‖ float64 pass with the windows) "
              f"{win['np_vs_llama']['kl']:.4f}, top-1 {win['np_vs_llama']['top1']:.2f}; KL(llama.cpp ‖ float64 "
              f"pass with every layer global) {win['global_vs_llama']['kl']:.4f}, top-1 "
              f"{win['global_vs_llama']['top1']:.2f}; KL(llama.cpp ‖ tq) {win['tq_vs_llama']['kl']:.4f}; tq vs the "
              f"windowed float64 pass: max |Δlogit| / max |logit| {win['tq_vs_np_rel']:.2e}; ignoring the windows "
              f"moves the logits by {win['window_effect_rel']:.2e} of their scale. Mean |log p - log p_llama.cpp| over "
              f"llama.cpp's top-8 (the statistic tests/test_model.c bounds by 0.25 nats): tq {win['mad_tq']:.3f}, "
              f"float64 windowed {win['mad_np']:.3f}, float64 global {win['mad_global']:.3f}. Positions {e0}..{e0 + 7} "
              f"(windows still hold every earlier key): ignoring the windows moves the float64 logits by "
              f"{win['window_effect_rel_early']:.1e} of their scale; KL(llama.cpp ‖ float64) "
              f"{win['np_vs_llama_early']['kl']:.4f} windowed, {win['global_vs_llama_early']['kl']:.4f} global; mean "
              f"|Δ log p| {win['mad_np_early']:.3f} and {win['mad_global_early']:.3f}; tq vs float64 "
              f"{win['tq_vs_np_rel_early']:.2e}.")


def update_window_paragraph(name, win):
    """--golden-only: replace the sliding-window paragraph of an existing results/models/<name>.md in place."""
    out = os.path.join(ROOT, "results", "models", f"{name}.md")
    if not os.path.exists(out):
        return
    with open(out) as f:
        lines = f.read().split("\n")
    lines = [window_paragraph(win) if ln.startswith("Sliding windows (") else ln for ln in lines]
    with open(out + ".tmp", "w") as f:
        f.write("\n".join(lines))
    os.replace(out + ".tmp", out)
    print(f"check_model: updated the window paragraph of {out}")


def write_report(a, rows, win, llama_version):
    info = rows[0]["info"]
    out = os.path.join(ROOT, "results", "models", f"{a.name}.md")
    L = [f"# {a.name}: tq's forward pass against llama.cpp" + (" and a float64 NumPy pass" if "np" in rows[0] else ""),
         "", f"Model `{os.path.basename(a.model)}` ({info['arch']}); weights dequantized to float32 at load: "
         f"{info['weight_bytes'] / 2**20:.0f} MiB. Reference: llama.cpp through llama-cpp-python {llama_version} "
         f"(its default f16 KV cache; matmuls with quantized activations), its tokenization. Both at "
         f"{a.threads} thread(s) on the same machine (2 cores shared with other jobs: speeds are indicative). "
         f"Generated by `python3 scripts/check_model.py {os.path.basename(a.model)} --name {a.name}"
         f"{' --numpy' if a.numpy else ''}{' --golden' if a.golden else ''}{' --f32' if a.f32 else ''}`.", "",
         "| text | tokens | PPL llama.cpp | PPL tq | ΔPPL | mean KL(llama.cpp ‖ tq) | max KL | top-1 agree | "
         "tq tok/s | llama.cpp tok/s | ratio |", "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        L.append(f"| {r['text']} | {r['n']} | {r['ppl_ref']:.4f} | {r['ppl_tq']:.4f} | {r['dppl_pct']:+.2f}% | "
                 f"{r['kl']:.5f} | {r['kl_max']:.4f} | {r['top1']:.3f} | {r['tq_tps']:.1f} | {r['ref_tps']:.1f} | "
                 f"{r['tq_tps'] / r['ref_tps']:.2f} |")
    i = rows[0]["info"]
    tot = i["matmul_s"] + i["attention_s"] + i["other_s"]
    L += ["", f"Where tq's time goes ({rows[0]['text']}, {rows[0]['n']} tokens, logits of every position): weight "
          f"matmuls {100 * i['matmul_s'] / tot:.0f}%, attention {100 * i['attention_s'] / tot:.0f}%, other (norms, "
          f"RoPE, activations) {100 * i['other_s'] / tot:.0f}%."]
    if "step_rel" in rows[0]:
        L += ["", f"One token at a time against the whole-sequence pass ({rows[0]['text']}, first 64 positions): max |Δlogit| / max |logit| "
              f"= {rows[0]['step_rel']:.2e}."]
    if "np" in rows[0]:
        L += ["", "Against the float64 NumPy pass (same tokens; weights dequantized by the `gguf` package):", "",
              "| text | max \\|Δlogit\\| / max \\|logit\\| | K max rel | V max rel | mean KL(numpy ‖ tq) | "
              "mean KL(numpy ‖ llama.cpp) | ΔPPL llama.cpp vs numpy |", "|---|---|---|---|---|---|---|"]
        for r in rows:
            L.append(f"| {r['text']} | {r['np_rel']:.2e} | {r['k_rel']:.2e} | {r['v_rel']:.2e} | {r['np']['kl']:.2e} | "
                     f"{r['np_llama']['kl']:.5f} | {r['np_llama']['dppl_pct']:+.2f}% |")
    if "f32" in rows[0]:
        L += ["", "llama.cpp on an F32 copy of the same weights (dequantized by the `gguf` package) with an F32 KV cache: "
              "its own arithmetic without quantized activations, against tq:", "",
              "| text | PPL llama.cpp F32 | PPL tq | ΔPPL | mean KL | max KL | top-1 agree | max \\|Δlogit\\| / max \\|logit\\| |",
              "|---|---|---|---|---|---|---|---|"]
        for r in rows:
            f = r["f32"]
            L.append(f"| {r['text']} | {f['ppl_ref']:.4f} | {f['ppl_tq']:.4f} | {f['dppl_pct']:+.3f}% | {f['kl']:.2e} | "
                     f"{f['kl_max']:.2e} | {f['top1']:.3f} | {f['max_rel']:.2e} |")
    if "dkv_k_rel" in rows[0]:
        L += ["", f"Against `scripts/dump_kv.py --gguf`'s float64 pass ({rows[0]['text']}): K max rel "
              f"{rows[0]['dkv_k_rel']:.2e}, V max rel {rows[0]['dkv_v_rel']:.2e} (every layer and head; relative to "
              f"the layer's largest |entry|), logits {rows[0]['dkv_rel']:.2e}."]
    if win and "np_vs_llama" in win:
        L += ["", window_paragraph(win)]
    if win and any(k.startswith("f32_W") for k in win):
        ws = sorted(int(k[5:]) for k in win if k.startswith("f32_W"))
        L += ["", "The window's exact length, against llama.cpp on the F32 weights with an F32 cache (last 8 of "
              f"{win['T']} positions; float64 pass with a window of W keys): " +
              "; ".join(f"W = {W}: mean KL {win[f'f32_W{W}']['kl']:.2e}, max |Δlogit| / max |logit| "
                        f"{win[f'f32_W{W}']['max_rel']:.2e}" for W in ws) + "."]
    if any(r.get("tok_mismatch") for r in rows):
        L += ["", "tq's tokenizer gives different ids than llama.cpp on: " +
              ", ".join(r["text"] for r in rows if r.get("tok_mismatch")) + " (the comparison uses llama.cpp's)."]
    else:
        L += ["", "tq's tokenizer (lib/tokenizer.c) gives the same ids as llama.cpp on every text."]
    tmp = out + ".tmp"
    with open(tmp, "w") as f:
        f.write("\n".join(L) + "\n")
    os.replace(tmp, out)
    print(f"check_model: wrote {out}")


if __name__ == "__main__":
    main()
