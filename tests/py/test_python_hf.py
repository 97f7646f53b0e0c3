#!/usr/bin/env python3
"""test_python_hf.py: tq.hf.QuantizedCache, the transformers cache with tq perplexity's streaming semantics, on a tiny
Llama whose weights come from NumPy's PCG64 (the same bytes on every machine; no download) run in float64 on the CPU:
  - keep_layers = every layer: logits equal the plain DynamicCache's bit for bit (the cache adds nothing), and
    tq.hf.generate's greedy tokens the plain generate's; a quantized generate counts every written row in bits_total;
  - layer 0's cached keys and values equal tq.roundtrip of the plain pass's rows one row at a time (turbo-mse, polar,
    int8: per-row methods) — the same library call; layer 0's inputs are untouched by any quantization;
  - the semantics driven directly through update() with fixed rows: chunked writes equal one-row writes bit for bit
    for every method; KIVI keys in blocks of `group` tokens, the newest 1..G rows exact; recent=N; prefill="fp16"
    leaves the first write exact; center freezes the first write's mean; bits_total counts exact rows at 16;
  - next-token KL against the exact cache falls with bits: turbo-mse 3 > 4 > int8 > 0 (each bit quarters the error
    variance);
  - the exact cache's NLL equals the committed golden tests/golden/models/hf_tiny_llama.json within 1e-6 nats, and
    ΔNLL and KL of each method within 2e-5 nats: the same weights and a float64 forward, except that transformers
    computes the RoPE cos/sin tables in float32, where another CPU's vector path may round 1 ulp (1e-7 relative)
    apart: that moves logits and the NLL (~5 nats) by ~1e-7 relative, a few 1e-7 nats, and a quantizer code
    (spacing ~0.1 of a row's scale) or a QJL sign flips with probability ~1e-6 per value; one flip moves a method's
    ΔNLL and KL by up to ~1e-5 (measured: turbo-prod 3 on the GPU machine's CPU, 5.9e-6 from the golden, every
    other method within 1e-6). A changed quantizer moves them by 1e-3 or more. The differences are printed
    (eval/gpu_py.sh run on the GPU machine). --golden rewrites the file;
  - where CUDA is available: the model on the GPU in float32, layer 0's cached keys equal tq.roundtrip of the plain
    GPU pass's rows (the cache works on device tensors, same bytes as on the host).
Skips cleanly without torch or transformers (not installed on the CI machine)."""
import json
import os
import sys

ROOT = os.path.abspath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))
sys.path.insert(0, os.path.join(ROOT, "python"))
GOLDEN = os.path.join(ROOT, "tests", "golden", "models", "hf_tiny_llama.json")
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

V, T, D = 96, 40, 32  # vocab, tokens, head_dim (hidden 128 = 4 query heads x 32; 2 kv heads: GQA 2:1)


def tiny_llama():
    cfg = LlamaConfig(vocab_size=V, hidden_size=128, intermediate_size=256, num_hidden_layers=2, num_attention_heads=4,
                      num_key_value_heads=2, max_position_embeddings=128, rms_norm_eps=1e-5,
                      tie_word_embeddings=False)
    cfg._attn_implementation = "eager"
    model = LlamaForCausalLM(cfg)
    rng = np.random.default_rng(20261207)
    sd = {}
    for k, v in model.state_dict().items():
        if "rotary" in k:  # RoPE's inverse frequencies, where a version keeps them in the state dict
            continue
        if "norm" in k:  # RMSNorm gains near 1
            a = 1.0 + 0.1 * rng.standard_normal(v.shape)
        elif "embed" in k:
            a = rng.standard_normal(v.shape)
        else:  # fan-in scaled, q/k larger so that attention is peaked enough to feel the quantization
            a = rng.standard_normal(v.shape) * (2.0 if ("q_proj" in k or "k_proj" in k) else 1.0) / np.sqrt(v.shape[-1])
        sd[k] = torch.from_numpy(a)
    model = model.double()
    model.load_state_dict(sd, strict=False)
    return model.eval()


def layer_kv(cache, layer):
    if hasattr(cache, "layers"):
        return cache.layers[layer].keys, cache.layers[layer].values
    return cache.key_cache[layer], cache.value_cache[layer]


def kl(ref, lg):
    """Mean KL(p_ref || p) of the next-token distributions, nats."""
    a, b = torch.log_softmax(ref[0, :-1].double(), -1), torch.log_softmax(lg[0, :-1].double(), -1)
    return float((a.exp() * (a - b)).sum(-1).mean())


def nll(logits, ids):
    lp = torch.log_softmax(logits[0, :-1].double(), dim=-1)
    return float(-lp[torch.arange(ids.shape[1] - 1), ids[0, 1:]].mean())


def per_row(x, method, bits, layer, head, tensor):
    """tq.roundtrip of each row alone: what the stream does for per-row methods."""
    x = np.asarray(x, dtype=np.float32)
    return np.concatenate([tq.roundtrip(x[r:r + 1], method, bits, layer=layer, head=head, tensor=tensor)[0]
                           for r in range(x.shape[0])])


torch.manual_seed(0)
model = tiny_llama()
ids = torch.from_numpy(np.random.default_rng(7).integers(0, V, size=(1, T)))
with torch.no_grad():
    plain = DynamicCache()
    ref = tq.hf.forward(model, ids, plain).logits
    keep = tq.hf.forward(model, ids, tq.hf.QuantizedCache("turbo-mse", 3, keep_layers=(0, 1))).logits
    check(torch.equal(ref, keep), "keep_layers=all changes the logits")
    k0, v0 = (t[0].numpy() for t in layer_kv(plain, 0))
    dnll, kls = {}, {}
    for m, b in (("turbo-mse", 3), ("turbo-mse", 4), ("polar", 3), ("int8", None), ("kivi", 3), ("turbo-prod", 3)):
        qc = tq.hf.QuantizedCache(m, b)
        lg = tq.hf.forward(model, ids, qc).logits
        dnll[f"{m} {b}" if b else m] = nll(lg, ids) - nll(ref, ids)
        kls[f"{m} {b}" if b else m] = kl(ref, lg)
        if m == "kivi":  # keys in blocks of 32: rows 0..31 quantized as one block (row 32..39 follow it), 32.. exact
            kq = layer_kv(qc, 0)[0][0].numpy()
            for h in range(2):
                want = tq.roundtrip(k0[h, :32].astype(np.float32), "kivi", 3, layer=0, head=h, tensor="keys",
                                    residual=0)[0]
                check(np.array_equal(kq[h, :32], want.astype(np.float64)), f"kivi keys block 0 head {h}")
                check(np.array_equal(kq[h, 32:], k0[h, 32:]), f"kivi keys tail head {h} not exact")
            continue
        if m in ("turbo-mse", "polar", "int8") and b != 4:
            kq, vq = (t[0].numpy() for t in layer_kv(qc, 0))
            for h in range(2):
                for name, got, x in (("keys", kq, k0), ("values", vq, v0)):
                    want = per_row(x[h], m, b, 0, h, name).astype(np.float64)
                    check(np.array_equal(got[h], want), f"{m} {b}: cached {name} head {h} != tq.roundtrip per row")
        if m == "turbo-mse" and b == 3:  # 3 code bits + one fp16 norm per vector of d = 32: 3 + 16/32
            check(abs(qc.bits_total - 3.5) < 1e-12, f"bits_total {qc.bits_total}, want 3.5")
    # generate(): every layer exact gives the plain cache's greedy tokens; 8 prompt + 5 decoded rows written
    g0 = model.generate(ids[:, :8], max_new_tokens=6, do_sample=False, pad_token_id=0)
    gc = tq.hf.QuantizedCache("turbo-mse", 2, keep_layers=(0, 1))
    check(torch.equal(tq.hf.generate(model, ids[:, :8], gc, max_new_tokens=6, do_sample=False, pad_token_id=0), g0),
          "generate with keep_layers=all != plain generate")
    gc = tq.hf.QuantizedCache("turbo-mse", 2)
    tq.hf.generate(model, ids[:, :8], gc, max_new_tokens=6, do_sample=False, pad_token_id=0)
    check(gc._vals == 2 * 2 * 13 * D * 2 and abs(gc.bits_total - 2.5) < 1e-12,
          f"generate: {gc._vals} values written, bits_total {gc.bits_total} (want 3328, 2 + 16/32)")
    # KL, not ΔNLL: on random weights ΔNLL's sign is noise, KL is what quantization error does on average
    check(kls["turbo-mse 3"] > kls["turbo-mse 4"] > kls["int8"] > 0, f"KL not decreasing with bits: {kls}")

# ---- the streaming semantics through update() alone, on fixed rows -------------------------------------------------
rng = np.random.default_rng(3)
rows = torch.from_numpy(rng.standard_normal((1, 2, 50, D)).astype(np.float32))
vrows = torch.from_numpy(rng.standard_normal((1, 2, 50, D)).astype(np.float32))


def feed(cache, bounds):
    for a, b in zip(bounds[:-1], bounds[1:]):
        cache.update(rows[:, :, a:b].clone(), vrows[:, :, a:b].clone(), 0)
    return layer_kv(cache, 0)


for kw in ({"method": "turbo-mse", "bits": 2}, {"method": "kivi", "bits": 2, "group": 8},
           {"method": "turbo-prod", "bits": 3, "recent": 16}, {"method": "polar", "bits": 3, "prefill": "fp16"},
           {"method": "turbo-mse", "bits": 3, "center": True}, {"method": "qjl", "bits": 1},
           {"method": "int8", "bits": None, "values": ("kivi", 2)}):
    m, b = kw.pop("method"), kw.pop("bits")
    # the prompt (16 rows) then chunks of 8 against the prompt then one row at a time: equal when every block
    # boundary is a chunk boundary (tq_kvq_grid's rule; blocks here: 8 or 16)
    ka, va = feed(tq.hf.QuantizedCache(m, b, **kw), [0, 16, 24, 32, 40, 48, 50])
    cb = tq.hf.QuantizedCache(m, b, **kw)
    kb, vb = feed(cb, [0, 16] + list(range(17, 51)))
    check(torch.equal(ka, kb) and torch.equal(va, vb), f"{m} {kw}: chunked writes != one-row writes")
    x, k = rows[0].numpy(), kb[0].numpy()
    if m == "kivi":  # blocks of 8 from 0; the newest 1..8 rows (42..49: the row after 41 has not come... 48, 49) exact
        last = (50 - 1) // 8 * 8  # 48: block [40, 48) is final once row 48 is written
        for h in range(2):
            want = np.concatenate([tq.roundtrip(x[h, s:s + 8], "kivi", 2, layer=0, head=h, tensor="keys", group=8,
                                                residual=0)[0] for s in range(0, last, 8)])
            check(np.array_equal(k[h, :last], want) and np.array_equal(k[h, last:], x[h, last:]),
                  f"kivi keys: blocks of 8 up to {last}, exact after")
        # values: per-row KIVI, every row; bits: keys 40 rows at kivi's 2 + side bits, 10 exact rows at 16
    if "recent" in kw:  # blocks of 16: [0, 48) final, 48, 49 exact
        check(np.array_equal(k[:, 48:], x[:, 48:]) and not np.array_equal(k[:, :48], x[:, :48]),
              "recent 16: rows 48, 49 exact, the rest quantized")
        want = per_row(x[1, :48], "turbo-prod", 3, 0, 1, "keys")
        check(np.array_equal(k[1, :48], want), "recent 16: quantized rows != tq.roundtrip per row")
        bq = tq.quantize(x[0, :1], "turbo-prod", 3).bits_total  # one row's stored bits (3 + two fp16 norms / d)
        check(abs(cb.bits_total - (48 * bq + 2 * 16) / 50) < 1e-12, f"recent 16 bits_total {cb.bits_total}")
    if kw.get("prefill") == "fp16":  # the first write (16 rows) exact, every later row quantized
        check(np.array_equal(k[:, :16], x[:, :16]), "prefill fp16: prompt rows not exact")
        want = per_row(x[0, 16:], "polar", 3, 0, 0, "keys")
        check(np.array_equal(k[0, 16:], want), "prefill fp16: later rows != tq.roundtrip per row")
    if kw.get("center"):  # mean of the first write (16 rows), frozen
        mu = x[:, :16].astype(np.float64).mean(axis=1).astype(np.float32)
        for h in range(2):
            want = per_row(x[h] - mu[h], "turbo-mse", 3, 0, h, "keys") + mu[h]
            check(np.array_equal(k[h], want), f"center: head {h} != tq.roundtrip(x - frozen mean) + mean")
    if "values" in kw:
        vb0 = vb[0].numpy()
        want = per_row(vrows[0, 1].numpy(), "kivi", 2, 0, 1, "values")
        check(np.array_equal(vb0[1], want), "values ('kivi', 2): per-row KIVI values")
        check(np.array_equal(k[0], per_row(x[0], "int8", None, 0, 0, "keys")), "int8 keys per row")
for bad, msg in (({"outliers": 4}, "outliers"), ({"codebook": "empirical"}, "empirical"),
                 ({"recent": 12, "method": "kivi"}, "recent 12 with kivi")):
    kw = dict({"method": "turbo-mse", "bits": 3}, **bad)
    try:
        tq.hf.QuantizedCache(kw.pop("method"), kw.pop("bits"), **kw)
        check(False, f"{msg} accepted")
    except ValueError:
        check(True, "")

# ---- the same numbers on every machine: ΔNLL against the committed golden -------------------------------------------
if "--golden" in sys.argv:
    os.makedirs(os.path.dirname(GOLDEN), exist_ok=True)
    with open(GOLDEN + ".tmp", "w") as f:
        json.dump({"what": "ΔNLL and next-token KL (nats/token) of tq.hf.QuantizedCache against the exact cache on "
                           "tests/py/test_python_hf.py's tiny Llama, float64, %d tokens" % T, "nll_ref": nll(ref, ids),
                   "dnll": dnll, "kl": kls}, f, indent=1, ensure_ascii=False)
    os.replace(GOLDEN + ".tmp", GOLDEN)
    print("wrote " + GOLDEN, file=sys.stderr)
else:
    g = json.load(open(GOLDEN))
    worst = abs(nll(ref, ids) - g["nll_ref"])
    check(worst <= 1e-6, f"nll_ref {nll(ref, ids)!r} != {g['nll_ref']!r}")
    for what, got in (("dnll", dnll), ("kl", kls)):
        for k, want in g[what].items():
            check(abs(got[k] - want) <= 2e-5, f"{what} {k}: {got[k]!r}, golden {want!r}")
            worst = max(worst, abs(got[k] - want))
    print(f"golden: largest difference {worst:.3g} nats (NLL, ΔNLL, KL)", file=sys.stderr)
    print("ΔNLL " + ", ".join(f"{k} {v:.6g}" for k, v in dnll.items()), file=sys.stderr)

# ---- on the GPU: the cache on device tensors ------------------------------------------------------------------------
if torch.cuda.is_available():
    gm = model.float().cuda()
    gids = ids.cuda()
    with torch.no_grad():
        plain = DynamicCache()
        tq.hf.forward(gm, gids, plain)
        qc = tq.hf.QuantizedCache("turbo-mse", 3)
        tq.hf.forward(gm, gids, qc)
    kp, kq = layer_kv(plain, 0)[0][0].cpu().numpy(), layer_kv(qc, 0)[0][0]
    check(kq.is_cuda, "the cache left the GPU")
    for h in range(2):
        check(np.array_equal(kq[h].cpu().numpy(), per_row(kp[h], "turbo-mse", 3, 0, h, "keys")),
              f"cuda: cached keys head {h} != tq.roundtrip per row")
    print("cuda: " + torch.cuda.get_device_name(0), file=sys.stderr)
print(f"{npass} passed, {nfail} failed, 0 skipped")
sys.exit(1 if nfail else 0)
