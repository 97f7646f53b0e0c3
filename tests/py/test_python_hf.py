#!/usr/bin/env python3
"""test_python_hf.py: tq.hf.QuantizedCache on a tiny randomly initialised Llama (transformers' own config, no
download): with keep_layers = every layer the logits equal the plain DynamicCache's bit for bit (the cache adds
nothing); with turbo-mse 3 bits the cached keys equal tq.roundtrip of the plain cache's keys per (layer, kv head)
exactly (same library call), and int8 moves the logits by less than 4-bit turbo-mse does (8 vs 4 bits: error
variance ~2^-8 of it). Skips cleanly without torch or transformers (not installed on the CI machine)."""
import os
import sys

ROOT = os.path.abspath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))
sys.path.insert(0, os.path.join(ROOT, "python"))
npass = nfail = 0


def check(cond, msg):
    global npass, nfail
    if cond:
        npass += 1
    else:
        nfail += 1
        print("FAIL " + msg, file=sys.stderr)


try:
    import numpy as np
    import torch
    from transformers import DynamicCache, LlamaConfig, LlamaForCausalLM
    import tq
    import tq.hf
except ImportError as e:
    print(f"SKIP tq.hf: {e} (torch and transformers are not installed here)", file=sys.stderr)
    print("0 passed, 0 failed, 1 skipped")
    sys.exit(0)

torch.manual_seed(0)
cfg = LlamaConfig(vocab_size=128, hidden_size=128, intermediate_size=256, num_hidden_layers=2,
                  num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64)
model = LlamaForCausalLM(cfg).eval()
ids = torch.randint(0, 128, (1, 24))
with torch.no_grad():
    plain = DynamicCache()
    ref = model(ids, past_key_values=plain, use_cache=True).logits
    keep = model(ids, past_key_values=tq.hf.QuantizedCache("turbo-mse", 3, keep_layers=(0, 1)),
                 use_cache=True).logits
    check(torch.equal(ref, keep), "keep_layers=all changes the logits")
    qc = tq.hf.QuantizedCache("turbo-mse", 3)
    q3 = model(ids, past_key_values=qc, use_cache=True).logits
    k0 = plain.key_cache[0] if hasattr(plain, "key_cache") else plain.layers[0].keys
    kq = qc.key_cache[0] if hasattr(qc, "key_cache") else qc.layers[0].keys
    for h in range(2):
        want, _ = tq.roundtrip(k0[0, h].numpy(), "turbo-mse", 3, layer=0, head=h, tensor="keys")
        check(np.array_equal(kq[0, h].numpy(), want), f"cached keys head {h} != tq.roundtrip")
    # turbo-mse stores 3 code bits + one fp16 norm per vector of d = 128/4 = 32: 3 + 16/32
    check(abs(qc.bits_total - 3.5) < 1e-9, f"bits_total {qc.bits_total}, want 3.5")
    e8 = (model(ids, past_key_values=tq.hf.QuantizedCache("int8"), use_cache=True).logits - ref).abs().max()
    e4 = (model(ids, past_key_values=tq.hf.QuantizedCache("turbo-mse", 4), use_cache=True).logits - ref).abs().max()
    check(e8 < e4, f"int8 error {e8} not below turbo-mse 4-bit {e4}")
print(f"{npass} passed, {nfail} failed, 0 skipped")
sys.exit(1 if nfail else 0)
