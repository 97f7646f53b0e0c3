#!/usr/bin/env python3
"""make_tiny_models.py: tiny random-weight GGUF models of the `qwen2` and `gemma2` architectures (no public small
GGUF of either ships on PyPI) and their logits from a float64 NumPy forward pass written from the architectures'
definitions (Hugging Face transformers' Qwen2 and Gemma2 models, llama.cpp's GGUF conventions), for
tests/test_model_synth.c. Writes tests/golden/models/tiny_{qwen2,gemma2}.gguf and tiny_{qwen2,gemma2}.txt; the
weights come from numpy's PCG64 with a fixed seed, so a rerun writes the same bytes.

Every feature the architecture uses is switched on and sized to matter: Qwen2's Q/K/V biases and untied output
head; Gemma 2's embedding scale, (1 + w) norms (the GGUF stores 1 + w, as llama.cpp's converter does), sandwich
norms, GeGLU, alternating sliding-window layers (window 6 over 24 tokens), attention and final-logit soft-caps (set
low, 8 and 5, so that tanh bends the scores and logits). The script checks that removing any one feature moves the
logits by at least 1e-2 of their scale — far above the test's tolerance — and records each effect in the golden file.
usage: python3 scripts/make_tiny_models.py [--out tests/golden/models]"""
import argparse
import os

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
T = 24  # tokens per golden sequence


def rope_rotate_half(x, pos, base):
    """HF rotate_half RoPE (llama.cpp's NEOX type, which qwen2 and gemma2 GGUFs use: rows kept in HF order):
    channel i pairs with i + d/2 at angle pos * base^(-2i/d). x [heads, T, d]."""
    d = x.shape[-1]
    inv = base ** (-np.arange(0, d, 2, dtype=np.float64) / d)
    ang = pos[:, None] * inv[None, :]
    c, s = np.cos(ang), np.sin(ang)
    x1, x2 = x[..., : d // 2], x[..., d // 2:]
    return np.concatenate([x1 * c - x2 * s, x2 * c + x1 * s], axis=-1)


def rms(x, w, eps):
    return x / np.sqrt(np.mean(x * x, axis=-1, keepdims=True) + eps) * w


def attention(q, k, v, scale, softcap=0.0, window=0):
    """q [H, T, d], k/v [KV, T, d]: causal (and sliding: query t sees keys (t - W, t]) softmax attention with GQA
    (query head h reads kv head h // (H / KV)); scores = scale q.k, soft-capped c tanh(s / c) when c > 0."""
    H, T_, d = q.shape
    G = H // k.shape[0]
    kk, vv = np.repeat(k, G, axis=0), np.repeat(v, G, axis=0)
    s = scale * q @ kk.transpose(0, 2, 1)
    if softcap > 0:
        s = softcap * np.tanh(s / softcap)
    t, j = np.arange(T_)[:, None], np.arange(T_)[None, :]
    mask = j <= t
    if window:
        mask &= t - j < window
    s = np.where(mask, s, -np.inf)
    p = np.exp(s - s.max(-1, keepdims=True))
    p /= p.sum(-1, keepdims=True)
    return (p @ vv).transpose(1, 0, 2).reshape(T_, H * d)


def gelu_tanh(x):
    return 0.5 * x * (1.0 + np.tanh(np.sqrt(2.0 / np.pi) * (x + 0.044715 * x ** 3)))


def qwen2_forward(W, c, ids, no_bias=False):
    """Qwen2ForCausalLM: RMSNorm (x * w), Q/K/V with biases, RoPE, GQA, SwiGLU MLP, final norm, lm_head."""
    x = W["token_embd.weight"][ids]
    pos = np.arange(len(ids), dtype=np.float64)
    for L in range(c["layers"]):
        p = f"blk.{L}."
        h = rms(x, W[p + "attn_norm.weight"], c["eps"])
        qkv = []
        for n, heads in (("q", c["H"]), ("k", c["KV"]), ("v", c["KV"])):
            y = h @ W[p + f"attn_{n}.weight"].T + (0.0 if no_bias else W[p + f"attn_{n}.bias"])
            qkv.append(y.reshape(len(ids), heads, c["D"]).transpose(1, 0, 2))
        q, k, v = qkv
        q, k = rope_rotate_half(q, pos, c["base"]), rope_rotate_half(k, pos, c["base"])
        x = x + attention(q, k, v, 1.0 / np.sqrt(c["D"])) @ W[p + "attn_output.weight"].T
        h = rms(x, W[p + "ffn_norm.weight"], c["eps"])
        g = h @ W[p + "ffn_gate.weight"].T
        x = x + ((g / (1.0 + np.exp(-g))) * (h @ W[p + "ffn_up.weight"].T)) @ W[p + "ffn_down.weight"].T
    x = rms(x, W["output_norm.weight"], c["eps"])
    return x @ W["output.weight"].T


def gemma2_forward(W, c, ids, window=True, attn_cap=True, final_cap=True, sandwich=True, embd_scale=True):
    """Gemma2ForCausalLM: embeddings * sqrt(hidden); per layer input norm -> attention (scale
    query_pre_attn_scalar^-1/2, soft-capped scores, sliding window on even layers) -> post-attention norm ->
    residual; pre-FFN norm -> GeGLU (tanh GELU) -> post-FFN norm -> residual; final norm, tied head, soft-capped
    logits. Norm weights are the GGUF's stored 1 + w. The flags switch single features off (ablation)."""
    x = W["token_embd.weight"][ids] * (np.sqrt(c["E"]) if embd_scale else 1.0)
    pos = np.arange(len(ids), dtype=np.float64)
    eps = c["eps"]
    for L in range(c["layers"]):
        p = f"blk.{L}."
        h = rms(x, W[p + "attn_norm.weight"], eps)
        q = (h @ W[p + "attn_q.weight"].T).reshape(len(ids), c["H"], c["D"]).transpose(1, 0, 2)
        k = (h @ W[p + "attn_k.weight"].T).reshape(len(ids), c["KV"], c["D"]).transpose(1, 0, 2)
        v = (h @ W[p + "attn_v.weight"].T).reshape(len(ids), c["KV"], c["D"]).transpose(1, 0, 2)
        q, k = rope_rotate_half(q, pos, c["base"]), rope_rotate_half(k, pos, c["base"])
        local = L % 2 == 0  # HF Gemma2: is_sliding = not layer_idx % 2
        o = attention(q, k, v, c["qpas"] ** -0.5, c["attn_cap"] if attn_cap else 0.0,
                      c["window"] if (local and window) else 0) @ W[p + "attn_output.weight"].T
        x = x + (rms(o, W[p + "post_attention_norm.weight"], eps) if sandwich else o)
        h = rms(x, W[p + "ffn_norm.weight"], eps)
        f = (gelu_tanh(h @ W[p + "ffn_gate.weight"].T) * (h @ W[p + "ffn_up.weight"].T)) @ W[p + "ffn_down.weight"].T
        x = x + (rms(f, W[p + "post_ffw_norm.weight"], eps) if sandwich else f)
    x = rms(x, W["output_norm.weight"], eps)
    lg = x @ W["token_embd.weight"].T
    return c["final_cap"] * np.tanh(lg / c["final_cap"]) if final_cap else lg


def build(arch, out_dir, seed):
    import gguf
    from gguf import GGMLQuantizationType as Q
    from gguf.quants import dequantize, quantize

    rng = np.random.Generator(np.random.PCG64(seed))
    if arch == "qwen2":
        c = dict(layers=3, E=32, H=4, KV=2, D=8, F=64, V=96, eps=1e-6, base=10000.0)
    else:
        c = dict(layers=4, E=32, H=4, KV=2, D=16, F=64, V=96, eps=1e-6, base=10000.0, window=6, qpas=16.0,
                 attn_cap=8.0, final_cap=5.0)
    E, H, KV, D, F, V = c["E"], c["H"], c["KV"], c["D"], c["F"], c["V"]
    # (name, rows, cols or 0 for a vector, std, GGUF type). Matrices in F16, the embedding in Q8_0 (rows of 32), so
    # the loader's dequantization runs; the reference uses the gguf package's dequantized values, exactly.
    spec = [("token_embd.weight", V, E, 1.0 if arch == "qwen2" else 0.2, Q.Q8_0), ("output_norm.weight", E, 0, 0.3, Q.F32)]
    if arch == "qwen2":
        spec.append(("output.weight", V, E, 0.5, Q.F16))
    for L in range(c["layers"]):
        p = f"blk.{L}."
        spec += [(p + "attn_norm.weight", E, 0, 0.3, Q.F32),
                 (p + "attn_q.weight", H * D, E, 1.0 / np.sqrt(E), Q.F16),
                 (p + "attn_k.weight", KV * D, E, 1.0 / np.sqrt(E), Q.F16),
                 (p + "attn_v.weight", KV * D, E, 1.0 / np.sqrt(E), Q.F16),
                 (p + "attn_output.weight", E, H * D, 1.0 / np.sqrt(H * D), Q.F16),
                 (p + "ffn_norm.weight", E, 0, 0.3, Q.F32),
                 (p + "ffn_gate.weight", F, E, 1.0 / np.sqrt(E), Q.F16),
                 (p + "ffn_up.weight", F, E, 1.0 / np.sqrt(E), Q.F16),
                 (p + "ffn_down.weight", E, F, 1.0 / np.sqrt(F), Q.F16)]
        if arch == "qwen2":
            spec += [(p + "attn_q.bias", H * D, 0, 0.5, Q.F32), (p + "attn_k.bias", KV * D, 0, 0.5, Q.F32),
                     (p + "attn_v.bias", KV * D, 0, 0.5, Q.F32)]
        else:
            spec += [(p + "post_attention_norm.weight", E, 0, 0.3, Q.F32), (p + "post_ffw_norm.weight", E, 0, 0.3, Q.F32)]
    if arch == "gemma2":
        # larger query/key weights so that scale * q.k spans beyond the soft-cap of 8
        spec = [(n, r, cc, s * (2.5 if n.endswith(("attn_q.weight", "attn_k.weight")) else 1.0), t)
                for n, r, cc, s, t in spec]

    path = os.path.join(out_dir, f"tiny_{arch}.gguf")
    w = gguf.GGUFWriter(path + ".tmp", arch)
    w.add_name(f"tiny-{arch}-random")
    w.add_block_count(c["layers"])
    w.add_context_length(64)
    w.add_embedding_length(E)
    w.add_feed_forward_length(F)
    w.add_head_count(H)
    w.add_head_count_kv(KV)
    w.add_key_length(D)
    w.add_value_length(D)
    w.add_layer_norm_rms_eps(c["eps"])
    w.add_rope_freq_base(c["base"])
    if arch == "gemma2":
        w.add_sliding_window(c["window"])
        w.add_attn_logit_softcapping(c["attn_cap"])
        w.add_final_logit_softcapping(c["final_cap"])
    W = {}
    for name, rows, cols, std, typ in spec:
        if cols:
            a = rng.standard_normal((rows, cols)) * std
        elif name.endswith("norm.weight"):
            # HF stores w (RMSNorm multiplies by w for Qwen2, by 1 + w for Gemma); the GGUF holds the multiplier
            a = 1.0 + rng.standard_normal(rows) * std
        else:
            a = rng.standard_normal(rows) * std
        a = a.astype(np.float32)
        if typ == Q.F32:
            w.add_tensor(name, a)
            W[name] = a.astype(np.float64)
        elif typ == Q.F16:
            h = a.astype(np.float16)
            w.add_tensor(name, h)
            W[name] = h.astype(np.float64)
        else:
            qd = quantize(a, typ)
            w.add_tensor(name, qd, raw_shape=qd.shape, raw_dtype=typ)
            W[name] = np.asarray(dequantize(qd, typ), dtype=np.float64).reshape(a.shape)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    os.replace(path + ".tmp", path)

    ids = rng.integers(0, V, size=T)
    refs, effects = {}, {}
    if arch == "qwen2":
        refs["ref"] = qwen2_forward(W, c, ids)
        ablations = {"qkv biases": qwen2_forward(W, c, ids, no_bias=True)}
    else:
        refs["ref"] = gemma2_forward(W, c, ids)
        refs["ref-global"] = gemma2_forward(W, c, ids, window=False)
        ablations = {"sliding window": refs["ref-global"],
                     "attention soft-cap": gemma2_forward(W, c, ids, attn_cap=False),
                     "final soft-cap": gemma2_forward(W, c, ids, final_cap=False),
                     "sandwich norms": gemma2_forward(W, c, ids, sandwich=False),
                     "embedding scale": gemma2_forward(W, c, ids, embd_scale=False)}
    scale = np.abs(refs["ref"]).max()
    for k, a in ablations.items():
        effects[k] = float(np.abs(a - refs["ref"]).max() / scale)
        if effects[k] < 1e-2:
            raise SystemExit(f"make_tiny_models: {arch}: removing the {k} moves logits by only {effects[k]:.2e}")
    if arch == "gemma2":
        # the window acts only past it: the first `window` rows see every earlier key either way
        W0 = c["window"]
        early = float(np.abs(refs["ref-global"][:W0] - refs["ref"][:W0]).max() / scale)
        if early > 1e-12:
            raise SystemExit(f"make_tiny_models: gemma2 window changed rows before position {W0}")
    gpath = os.path.join(out_dir, f"tiny_{arch}.txt")
    lines = [f"# tests/golden/models/tiny_{arch}.txt: logits of tiny_{arch}.gguf (random weights, seed {seed}) from the "
             "float64 NumPy pass of scripts/make_tiny_models.py (written from the architecture's definition)",
             "# what removing one feature does to the reference logits (max |dlogit| / max |logit|): " +
             ", ".join(f"{k} {v:.3f}" for k, v in effects.items()),
             f"tokens {T} " + " ".join(map(str, ids))]
    for name, lg in refs.items():
        lines.append(f"logits {name} {lg.shape[0]} {lg.shape[1]}")
        lines += [" ".join(f"{x:.9e}" for x in row) for row in lg]
    with open(gpath + ".tmp", "w") as f:
        f.write("\n".join(lines) + "\n")
    os.replace(gpath + ".tmp", gpath)
    print(f"make_tiny_models: wrote {path} ({os.path.getsize(path)} bytes) and {gpath}; effects: " +
          ", ".join(f"{k} {v:.3f}" for k, v in effects.items()))


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=os.path.join(ROOT, "tests", "golden", "models"))
    a = ap.parse_args()
    os.makedirs(a.out, exist_ok=True)
    build("qwen2", a.out, 2)
    build("gemma2", a.out, 3)


if __name__ == "__main__":
    main()
