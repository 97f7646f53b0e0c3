#!/usr/bin/env python3
"""test_dumper.py: scripts/dump_kv.py on a tiny random LLaMA-shaped GGUF built here (2 layers, 4 q heads, 2 kv heads,
head_dim 8, byte-level BPE vocab): tokenizer, forward pass against an independent llama.cpp-convention reference,
incremental vs full decoding, the tq-kv layout, byte-stable output, errors. --hf runs only where transformers is."""
import importlib.util
import os
import subprocess
import sys
import tempfile
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "scripts"))
import dump_kv  # noqa: E402

passed = failed = skipped = 0


def check(cond, what):
    global passed, failed
    if cond:
        passed += 1
    else:
        failed += 1
        print(f"FAIL {what}", file=sys.stderr)


def skip(what):
    global skipped
    skipped += 1
    print(f"SKIP {what}", file=sys.stderr)


N_EMBD, N_HEAD, N_KV, HEAD_DIM, N_FF, N_LAYER, THETA, EPS = 32, 4, 2, 8, 48, 2, 10000.0, 1e-5
MERGES = ["Ġ t", "h e", "Ġt he", "Ġ c", "a t", "Ġc at"]


def tiny_vocab():
    b2u = dump_kv.bytes_to_unicode()
    toks = ["<|endoftext|>"] + [b2u[b] for b in range(256)]
    toks += [m.replace(" ", "") for m in MERGES]
    return toks


def tiny_weights(seed=1):
    """GGUF-layout weights [out, in]: Q/K rows in llama.cpp's interleaved order (what convert_hf_to_gguf writes)."""
    rng = np.random.default_rng(seed)
    V = len(tiny_vocab())
    g = lambda o, i: (rng.standard_normal((o, i)) / np.sqrt(i)).astype(np.float32)
    w = {"token_embd.weight": rng.standard_normal((V, N_EMBD)).astype(np.float16),
         "output_norm.weight": (1 + 0.1 * rng.standard_normal(N_EMBD)).astype(np.float32),
         "output.weight": g(V, N_EMBD)}
    for L in range(N_LAYER):
        p = f"blk.{L}."
        w[p + "attn_norm.weight"] = (1 + 0.1 * rng.standard_normal(N_EMBD)).astype(np.float32)
        w[p + "ffn_norm.weight"] = (1 + 0.1 * rng.standard_normal(N_EMBD)).astype(np.float32)
        # Queries and keys scaled up so attention is far from uniform and a wrong RoPE pairing would show.
        w[p + "attn_q.weight"] = 3 * g(N_HEAD * HEAD_DIM, N_EMBD)
        w[p + "attn_k.weight"] = 3 * g(N_KV * HEAD_DIM, N_EMBD)
        w[p + "attn_v.weight"] = g(N_KV * HEAD_DIM, N_EMBD)
        w[p + "attn_output.weight"] = g(N_EMBD, N_HEAD * HEAD_DIM)
        w[p + "ffn_gate.weight"] = g(N_FF, N_EMBD)
        w[p + "ffn_up.weight"] = g(N_FF, N_EMBD)
        w[p + "ffn_down.weight"] = g(N_EMBD, N_FF)
    return w


def write_tiny_gguf(path, w, tokenizer="gpt2", pre="smollm"):
    import gguf
    wr = gguf.GGUFWriter(path, "llama")
    wr.add_block_count(N_LAYER)
    wr.add_context_length(256)
    wr.add_embedding_length(N_EMBD)
    wr.add_feed_forward_length(N_FF)
    wr.add_head_count(N_HEAD)
    wr.add_head_count_kv(N_KV)
    wr.add_rope_freq_base(THETA)
    wr.add_rope_dimension_count(HEAD_DIM)
    wr.add_layer_norm_rms_eps(EPS)
    wr.add_tokenizer_model(tokenizer)
    wr.add_tokenizer_pre(pre)
    wr.add_token_list(tiny_vocab())
    wr.add_token_merges(MERGES)
    wr.add_add_bos_token(False)
    for name, a in w.items():
        wr.add_tensor(name, a)
    wr.write_header_to_file()
    wr.write_kv_data_to_file()
    wr.write_tensors_to_file()
    wr.close()


def reference_forward(w, ids):
    """Independent, deliberately plain reference in llama.cpp's convention: GGUF-layout Q/K, RoPE on adjacent pairs
    (2i, 2i+1) with angle pos * theta^(-2i/d), one token and one head at a time. Returns logits and per-layer K, V,
    Q as [heads, T, d] in GGUF channel order."""
    W = {k: v.astype(np.float64) for k, v in w.items()}
    T, d = len(ids), HEAD_DIM
    x = W["token_embd.weight"][ids]

    def norm(v, g):
        return v / np.sqrt((v * v).mean() + EPS) * g

    def rope(v, pos):
        out = v.copy()
        for i in range(d // 2):
            a = pos * THETA ** (-2.0 * i / d)
            out[2 * i] = v[2 * i] * np.cos(a) - v[2 * i + 1] * np.sin(a)
            out[2 * i + 1] = v[2 * i] * np.sin(a) + v[2 * i + 1] * np.cos(a)
        return out

    caps = []
    for L in range(N_LAYER):
        p = f"blk.{L}."
        Q = np.zeros((N_HEAD, T, d)); K = np.zeros((N_KV, T, d)); Vv = np.zeros((N_KV, T, d))
        for t in range(T):
            h = norm(x[t], W[p + "attn_norm.weight"])
            q, k, v = W[p + "attn_q.weight"] @ h, W[p + "attn_k.weight"] @ h, W[p + "attn_v.weight"] @ h
            for hh in range(N_HEAD):
                Q[hh, t] = rope(q[hh * d:(hh + 1) * d], t)
            for hh in range(N_KV):
                K[hh, t] = rope(k[hh * d:(hh + 1) * d], t)
                Vv[hh, t] = v[hh * d:(hh + 1) * d]
        caps.append((Q, K, Vv))
        nx = x.copy()
        for t in range(T):
            o = np.zeros(N_HEAD * d)
            for hh in range(N_HEAD):
                kv = hh // (N_HEAD // N_KV)
                s = np.array([Q[hh, t] @ K[kv, u] for u in range(t + 1)]) / np.sqrt(d)
                pr = np.exp(s - s.max()); pr /= pr.sum()
                o[hh * d:(hh + 1) * d] = pr @ Vv[kv, :t + 1]
            nx[t] = x[t] + W[p + "attn_output.weight"] @ o
        x = nx
        for t in range(T):
            h = norm(x[t], W[p + "ffn_norm.weight"])
            gt = W[p + "ffn_gate.weight"] @ h
            x[t] = x[t] + W[p + "ffn_down.weight"] @ (gt / (1 + np.exp(-gt)) * (W[p + "ffn_up.weight"] @ h))
    logits = np.array([W["output.weight"] @ norm(x[t], W["output_norm.weight"]) for t in range(T)])
    return logits, caps


# HF channel c of a head holds GGUF channel 2c (c < d/2) or 2(c - d/2) + 1: the inverse of convert's permute.
HF_FROM_GGUF = np.array([2 * c for c in range(HEAD_DIM // 2)] + [2 * c + 1 for c in range(HEAD_DIM // 2)])

TEXT = "the cat sat on the mat. 42 cats — naïve café, the end of the cat story is near; the cat then sat again."


def run_cli(*args):
    return subprocess.run([sys.executable, os.path.join(ROOT, "scripts", "dump_kv.py"), *args],
                          capture_output=True, text=True)


def main():
    import h5py
    tmp = tempfile.mkdtemp(prefix="tq-dumper.")
    gg = os.path.join(tmp, "tiny.gguf")
    w = tiny_weights()
    write_tiny_gguf(gg, w)
    txt = os.path.join(tmp, "text.txt")
    with open(txt, "w", encoding="utf-8") as f:
        f.write(TEXT)

    # --- tokenizer: merges by rank, digits split one by one (smollm pre-tokenizer), exact round trip.
    m = dump_kv.GGUFModel(gg)
    ids = m.encode("the the cat 42")
    pieces = [m.tok.tokens[i] for i in ids]
    # 'the' has no 't he' merge -> t|he; ' the' -> Ġt|h|e -> Ġt|he -> Ġthe; ' 42' -> Ġ|4|2 (digits isolated first).
    check(pieces == ["t", "he", "Ġthe", "Ġcat", "Ġ", "4", "2"], f"BPE pieces {pieces}")
    check(m.tok.decode(m.encode(TEXT)) == TEXT, "decode(encode(text)) round trip (UTF-8 multi-byte included)")

    # --- forward pass against the plain llama.cpp-convention reference. Both are float64 on the same weights and
    # differ only in summation order: relative error ~ n*eps = 48 * 1.1e-16 per dot product over O(1) values, a few
    # layers deep -> far below 1e-9.
    ids = m.encode(TEXT)[:40]
    T = len(ids)
    cap = {}
    logits = m.forward(ids, capture=cap)
    ref_logits, ref_caps = reference_forward(w, ids)
    check(np.abs(logits - ref_logits).max() < 1e-9, f"logits vs reference: {np.abs(logits - ref_logits).max():.3g}")
    for L in range(N_LAYER):
        q, k, v = cap[L]
        rq, rk, rv = ref_caps[L]
        check(q.shape == (N_HEAD, T, HEAD_DIM) and k.shape == (N_KV, T, HEAD_DIM) and v.shape == (N_KV, T, HEAD_DIM),
              f"layer {L} GQA shapes {q.shape} {k.shape} {v.shape}")
        dq = np.abs(q - rq[..., HF_FROM_GGUF]).max()
        dk = np.abs(k - rk[..., HF_FROM_GGUF]).max()
        check(dq < 1e-9 and dk < 1e-9 and np.abs(v - rv).max() < 1e-9, f"layer {L} q/k/v vs reference: {dq:.3g} {dk:.3g}")
    # The same weights read without undoing the Q/K permutation must NOT match: the test can see a wrong RoPE pairing.
    wrong = dump_kv.unpermute_qk
    dump_kv.unpermute_qk = lambda a, n: a
    try:
        bad = dump_kv.GGUFModel(gg).forward(ids)
    finally:
        dump_kv.unpermute_qk = wrong
    check(np.abs(bad - ref_logits).max() > 1e-3, f"wrong RoPE pairing is detected ({np.abs(bad - ref_logits).max():.3g})")

    # --- one token at a time with a KV cache reproduces the full-sequence K/V and logits (same bound as above).
    cache = [None] * N_LAYER
    inc = np.concatenate([m.forward([t], cache=cache) for t in ids])
    dkv = max(max(np.abs(cache[L][0] - cap[L][1]).max(), np.abs(cache[L][1] - cap[L][2]).max()) for L in range(N_LAYER))
    check(dkv < 1e-10, f"incremental vs full K/V max diff {dkv:.3g}")
    check(np.abs(inc - logits).max() < 1e-10, f"incremental vs full logits {np.abs(inc - logits).max():.3g}")

    # --- CLI, dump layout (h5py).
    out = os.path.join(tmp, "d.h5")
    r = run_cli("--gguf", gg, "--text", txt, "--tokens", str(T), "-o", out)
    check(r.returncode == 0, f"dump_kv exit {r.returncode}: {r.stderr.strip()}")
    with h5py.File(out, "r") as f:
        a = f.attrs
        check(a["tq_format"] == "tq-kv" and int(a["tq_format_version"]) == 2 and a["rope"] == "post"
              and int(a["n_layers"]) == N_LAYER and a["model"] == "tiny", f"root attrs {dict(a)}")
        check(list(a["token_ids"]) == ids, "token_ids attribute")
        check(sorted(f.keys()) == ["layer_000", "layer_001"], f"groups {sorted(f.keys())}")
        for L in range(N_LAYER):
            g = f[f"layer_{L:03d}"]
            ok = all(g[n].dtype == np.float16 for n in ("keys", "values", "queries"))
            # float16 storage is exactly the float64 capture rounded once.
            ok = ok and np.array_equal(g["keys"][()], cap[L][1].astype(np.float16)) \
                and np.array_equal(g["values"][()], cap[L][2].astype(np.float16)) \
                and np.array_equal(g["queries"][()], cap[L][0].astype(np.float16))
            check(ok, f"layer_{L:03d} datasets equal the capture rounded to float16")
            # format 2: llama attends globally with scale 1/sqrt(head_dim), no soft-cap, the GGUF's RoPE base
            at = dict(g.attrs)
            check(at.get("sliding_window") == 0 and at.get("attn_scale") == 1 / np.sqrt(HEAD_DIM)
                  and at.get("attn_softcap") == 0 and at.get("rope_base") == THETA, f"layer_{L:03d} attention {at}")
        check(a.get("architecture") == "llama", f"architecture {a.get('architecture')}")
    check(not [p for p in os.listdir(tmp) if ".tmp." in p], "no temp file left behind")
    # --format-version 1: the older layout, without the format-2 attributes (how the bundled dump was made)
    out1 = os.path.join(tmp, "d1.h5")
    r = run_cli("--gguf", gg, "--text", txt, "--tokens", str(T), "--format-version", "1", "-o", out1)
    with h5py.File(out1, "r") as f:
        check(r.returncode == 0 and int(f.attrs["tq_format_version"]) == 1 and "architecture" not in f.attrs
              and not dict(f["layer_000"].attrs), "--format-version 1 writes no format-2 attribute")
    # Byte-stable: a second run more than a second later gives the same bytes (no timestamps in object headers).
    time.sleep(1.1)
    out2 = os.path.join(tmp, "d2.h5")
    run_cli("--gguf", gg, "--text", txt, "--tokens", str(T), "-o", out2)
    check(open(out, "rb").read() == open(out2, "rb").read(), "same inputs -> byte-identical file")

    # Layer subset and float32: groups renumbered, model_layers records which model layer each holds.
    out3 = os.path.join(tmp, "d3.h5")
    r = run_cli("--gguf", gg, "--text", txt, "--tokens", "10", "--layers", "1", "--dtype", "f32", "-o", out3)
    with h5py.File(out3, "r") as f:
        check(r.returncode == 0 and int(f.attrs["n_layers"]) == 1 and list(f.attrs["model_layers"]) == [1]
              and f["layer_000/keys"].dtype == np.float32 and f["layer_000/keys"].shape == (N_KV, 10, HEAD_DIM)
              and np.array_equal(f["layer_000/keys"][()], cap[1][1][:, :10].astype(np.float32)),
              "--layers 1 --dtype f32: layer_000 holds model layer 1 in float32")

    # --- errors: one line 'dump_kv: ...', exit 1 runtime / 2 usage, no output file.
    bad_out = os.path.join(tmp, "bad.h5")
    r = run_cli("--gguf", gg, "--text", txt, "--tokens", "100000", "-o", bad_out)
    check(r.returncode == 1 and r.stderr.startswith("dump_kv: the text has only") and not os.path.exists(bad_out),
          f"too few tokens: rc {r.returncode} {r.stderr.strip()}")
    r = run_cli("--gguf", gg, "--text", txt, "--layers", "0-5", "-o", bad_out)
    check(r.returncode == 1 and "out of range" in r.stderr and not os.path.exists(bad_out), f"layer range: {r.stderr}")
    r = run_cli("--gguf", gg, "--text", txt, "--layers", "3-1", "-o", bad_out)
    check(r.returncode == 2 and "bad layer list" in r.stderr, f"bad --layers syntax: rc {r.returncode}")
    r = run_cli("--gguf", os.path.join(tmp, "nope.gguf"), "--text", txt, "-o", bad_out)
    check(r.returncode == 1 and "nope.gguf" in r.stderr, f"missing gguf: {r.stderr}")
    spm = os.path.join(tmp, "spm.gguf")
    write_tiny_gguf(spm, w, tokenizer="llama")
    r = run_cli("--gguf", spm, "--text", txt, "-o", bad_out)
    check(r.returncode == 1 and "tokenizer 'llama' is not supported" in r.stderr, f"SPM tokenizer: {r.stderr}")

    # --- --hf: the model's own attention code through transformers (only where it is installed).
    if importlib.util.find_spec("transformers") is None or importlib.util.find_spec("torch") is None:
        skip("--hf path: transformers/torch not installed")
    else:
        test_hf(tmp, w, txt, ids)

    for p in sorted(os.listdir(tmp)):
        os.remove(os.path.join(tmp, p))
    os.rmdir(tmp)


def test_hf(tmp, w, txt, ids):
    """A LlamaForCausalLM holding the tiny model's weights (Q/K rows back in HF order) must give the same post-RoPE
    q/k/v through --hf as the GGUF path (float32 there: |x| ~ 10, error ~ 1e-5)."""
    import torch
    from tokenizers import Tokenizer, models, pre_tokenizers, decoders
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast
    cfg = LlamaConfig(vocab_size=len(tiny_vocab()), hidden_size=N_EMBD, intermediate_size=N_FF,
                      num_hidden_layers=N_LAYER, num_attention_heads=N_HEAD, num_key_value_heads=N_KV,
                      rms_norm_eps=EPS, rope_theta=THETA, tie_word_embeddings=False, max_position_embeddings=256)
    model = LlamaForCausalLM(cfg)
    sd = {"model.embed_tokens.weight": w["token_embd.weight"], "model.norm.weight": w["output_norm.weight"],
          "lm_head.weight": w["output.weight"]}
    names = {"attn_norm": "input_layernorm", "ffn_norm": "post_attention_layernorm", "attn_q": "self_attn.q_proj",
             "attn_k": "self_attn.k_proj", "attn_v": "self_attn.v_proj", "attn_output": "self_attn.o_proj",
             "ffn_gate": "mlp.gate_proj", "ffn_up": "mlp.up_proj", "ffn_down": "mlp.down_proj"}
    for L in range(N_LAYER):
        for g, h in names.items():
            a = w[f"blk.{L}.{g}.weight"]
            if g in ("attn_q", "attn_k"):
                a = dump_kv.unpermute_qk(a, N_HEAD if g == "attn_q" else N_KV)
            sd[f"model.layers.{L}.{h}.weight"] = a
    model.load_state_dict({k: torch.tensor(np.asarray(v, dtype=np.float32)) for k, v in sd.items()})
    hf_dir = os.path.join(tmp, "hf")
    model.save_pretrained(hf_dir)
    vocab = {t: i for i, t in enumerate(tiny_vocab())}
    tk = Tokenizer(models.BPE(vocab=vocab, merges=[tuple(m.split(" ")) for m in MERGES]))
    tk.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.Digits(individual_digits=True),
                                               pre_tokenizers.ByteLevel(add_prefix_space=False)])
    tk.decoder = decoders.ByteLevel()
    PreTrainedTokenizerFast(tokenizer_object=tk).save_pretrained(hf_dir)
    out = os.path.join(tmp, "hf.h5")
    r = run_cli("--hf", hf_dir, "--text", txt, "--tokens", str(len(ids)), "--dtype", "f32", "-o", out)
    check(r.returncode == 0, f"--hf exit {r.returncode}: {r.stderr.strip()[-300:]}")
    if r.returncode != 0:
        return
    import h5py
    m = dump_kv.GGUFModel(os.path.join(tmp, "tiny.gguf"))
    cap = {}
    m.forward(ids, capture=cap, logits=False)
    with h5py.File(out, "r") as f:
        check(list(f.attrs["token_ids"]) == ids, "--hf tokens equal the GGUF tokenizer's")
        for L in range(N_LAYER):
            g = f[f"layer_{L:03d}"]
            d = max(np.abs(g["keys"][()] - cap[L][1]).max(), np.abs(g["queries"][()] - cap[L][0]).max(),
                    np.abs(g["values"][()] - cap[L][2]).max())
            check(d < 1e-3, f"--hf layer {L} q/k/v vs GGUF path: {d:.3g}")
    shutil_rm = [os.path.join(hf_dir, p) for p in os.listdir(hf_dir)]
    for p in shutil_rm:
        os.remove(p)
    os.rmdir(hf_dir)


if __name__ == "__main__":
    t0 = time.time()
    main()
    print(f"test_dumper: {time.time() - t0:.1f} s", file=sys.stderr)
    print(f"{passed} passed, {failed} failed, {skipped} skipped")
    sys.exit(1 if failed else 0)
