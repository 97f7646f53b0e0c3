#!/usr/bin/env python3
"""dump_kv.py: dump a real model's post-RoPE queries, keys and values into a tq-kv HDF5 file (datasets/FORMAT.md).
--gguf runs a LLaMA-family GGUF model with a float64 NumPy forward pass (weights dequantized by the gguf package,
tokenizer rebuilt from the GGUF metadata); --hf captures them from a Hugging Face model through its own attention.
Format 2 (the default) also records the architecture and each layer's attention (sliding window, scale, soft-cap,
RoPE base); --format-version 1 writes the older layout byte for byte as format-1 dumps were made."""
import argparse
import hashlib
import os
import sys

import numpy as np

DUMPER_VERSION = 1
F16_MAX = 65504.0


class DumpError(Exception):
    """A runtime error with a one-line message; main() prints it as 'dump_kv: ...' and exits 1."""


# ---------------------------------------------------------------------------------------------------------------
# Byte-level BPE tokenizer (GPT-2 style) from tokenizer.ggml.* metadata.

def bytes_to_unicode():
    """GPT-2's reversible map from the 256 byte values to printable unicode characters (space -> 'Ġ')."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + \
        list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, (chr(c) for c in cs)))


GPT2_SPLIT = r"""'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"""
LLAMA3_SPLIT = (r"""(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*"""
                r"""|\s*[\r\n]+|\s+(?!\S)|\s+""")
# tokenizer.ggml.pre -> (split digits one by one first, main regex); the names are llama.cpp's.
PRE_TOKENIZERS = {
    "default": (False, GPT2_SPLIT), "gpt2": (False, GPT2_SPLIT),
    # HF: Sequence[Digits(individual_digits=True), ByteLevel] — StarCoder's scheme, shared by SmolLM.
    "smollm": (True, GPT2_SPLIT), "starcoder": (True, GPT2_SPLIT), "refact": (True, GPT2_SPLIT),
    "codeshell": (True, GPT2_SPLIT),
    "llama-bpe": (False, LLAMA3_SPLIT), "llama3": (False, LLAMA3_SPLIT), "smaug-bpe": (False, LLAMA3_SPLIT),
}


class ByteBPE:
    def __init__(self, tokens, merges, pre="default"):
        import regex  # \p{L}/\p{N} classes; the stdlib re has none
        if pre not in PRE_TOKENIZERS:
            raise DumpError(f"tokenizer.ggml.pre '{pre}' is not supported (known: {', '.join(sorted(PRE_TOKENIZERS))});"
                            " use --hf with the model's own tokenizer")
        split_digits, pattern = PRE_TOKENIZERS[pre]
        self.split_digits = split_digits
        self.pat = regex.compile(pattern)
        self.digits = regex.compile(r"(\p{N})")
        self.tokens = list(tokens)
        self.vocab = {t: i for i, t in enumerate(self.tokens)}
        self.ranks = {}
        for i, m in enumerate(merges):
            a, b = m.split(" ", 1)
            self.ranks[(a, b)] = i
        self.b2u = bytes_to_unicode()
        self.u2b = {u: b for b, u in self.b2u.items()}
        self.cache = {}

    def _bpe(self, word):
        if word in self.cache:
            return self.cache[word]
        parts = list(word)
        while len(parts) > 1:
            best, best_rank = None, None
            for i in range(len(parts) - 1):
                r = self.ranks.get((parts[i], parts[i + 1]))
                if r is not None and (best_rank is None or r < best_rank):
                    best, best_rank = (parts[i], parts[i + 1]), r
            if best is None:
                break
            merged, i = [], 0
            while i < len(parts):  # merge every occurrence of the best pair, left to right (as HF does)
                if i < len(parts) - 1 and (parts[i], parts[i + 1]) == best:
                    merged.append(parts[i] + parts[i + 1])
                    i += 2
                else:
                    merged.append(parts[i])
                    i += 1
            parts = merged
        self.cache[word] = parts
        return parts

    def pretokenize(self, text):
        chunks = [c for c in self.digits.split(text) if c] if self.split_digits else [text]
        out = []
        for c in chunks:
            out.extend(self.pat.findall(c))
        return out

    def encode(self, text):
        ids = []
        for piece in self.pretokenize(text):
            word = "".join(self.b2u[b] for b in piece.encode("utf-8"))
            for p in self._bpe(word):
                if p not in self.vocab:
                    raise DumpError(f"tokenizer: piece '{p}' is not in the vocabulary (is this a byte-level BPE model?)")
                ids.append(self.vocab[p])
        return ids

    def decode(self, ids):
        s = "".join(self.tokens[i] for i in ids)
        return bytes(self.u2b.get(ch, ord("?")) for ch in s).decode("utf-8", errors="replace")


# ---------------------------------------------------------------------------------------------------------------
# LLaMA-family GGUF model, float64 NumPy forward pass.

def rms_norm(x, w, eps):
    return x / np.sqrt(np.mean(x * x, axis=-1, keepdims=True) + eps) * w


def rope_half(x, pos, theta):
    """Rotary embedding in the Hugging Face layout (rotate_half): channel i pairs with channel i + d/2, angle
    pos * theta^(-2i/d). x: [heads, T, d]; pos: [T]."""
    d = x.shape[-1]
    inv = theta ** (-np.arange(0, d, 2, dtype=np.float64) / d)
    ang = pos[:, None].astype(np.float64) * inv[None, :]
    cos, sin = np.cos(ang), np.sin(ang)
    x1, x2 = x[..., : d // 2], x[..., d // 2:]
    return np.concatenate([x1 * cos - x2 * sin, x2 * cos + x1 * sin], axis=-1)


def unpermute_qk(w, n_head):
    """Undo convert_hf_to_gguf.py's permute() of Q/K rows. GGUF stores each head's rows interleaved (row 2i+j holds
    HF row j*d/2+i) so that llama.cpp's 'normal' RoPE rotates adjacent pairs (2i, 2i+1); back in HF order the
    rotate_half RoPE above is the same rotation. Dumped keys/queries are therefore in HF channel order."""
    out, n_in = w.shape
    d = out // n_head
    return w.reshape(n_head, d // 2, 2, n_in).swapaxes(1, 2).reshape(out, n_in)


def gguf_meta(reader):
    meta = {}
    for k, f in reader.fields.items():
        try:
            meta[k] = f.contents()
        except Exception:  # fields this gguf version cannot decode are not ones we use
            pass
    return meta


def sha256_file(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for blk in iter(lambda: f.read(1 << 20), b""):
            h.update(blk)
    return h.hexdigest()


class GGUFModel:
    def __init__(self, path):
        try:
            from gguf import GGUFReader
            from gguf.quants import dequantize
        except ImportError:
            raise DumpError("the --gguf path needs the gguf package (pip install gguf; scripts/deps.sh does it)")
        self._dequantize = dequantize
        try:
            r = GGUFReader(path)
        except FileNotFoundError:
            raise DumpError(f"cannot open '{path}': no such file")
        except Exception as e:
            raise DumpError(f"cannot read '{path}' as GGUF: {e}")
        self.path = path
        m = self.meta = gguf_meta(r)
        arch = m.get("general.architecture")
        if arch != "llama":  # Mistral, SmolLM, TinyLlama, Llama 2/3 GGUFs all say 'llama'
            raise DumpError(f"'{path}': architecture '{arch}' is not supported by the NumPy forward pass "
                            "(only 'llama'); use --hf for other families")
        g = lambda k, d=None: m.get(f"llama.{k}", d)
        self.n_layers = int(g("block_count"))
        self.n_embd = int(g("embedding_length"))
        self.n_head = int(g("attention.head_count"))
        self.n_kv = int(g("attention.head_count_kv", self.n_head))
        self.head_dim = int(g("attention.key_length", self.n_embd // self.n_head))
        self.eps = float(g("attention.layer_norm_rms_epsilon", 1e-5))
        self.theta = float(g("rope.freq_base", 10000.0))
        rope_dim = int(g("rope.dimension_count", self.head_dim))
        if rope_dim != self.head_dim:
            raise DumpError(f"'{path}': partial rotary (rope.dimension_count {rope_dim} < head_dim {self.head_dim}) "
                            "is not supported")
        scaling = g("rope.scaling.type", "none")
        if scaling not in ("none", None) and float(g("rope.scaling.factor", 1.0)) != 1.0:
            raise DumpError(f"'{path}': rope scaling '{scaling}' is not supported by the NumPy forward pass")
        if self.n_head % self.n_kv:
            raise DumpError(f"'{path}': head_count {self.n_head} is not a multiple of head_count_kv {self.n_kv}")
        self.tensors = {t.name: t for t in r.tensors}
        if any(n.endswith(".bias") for n in self.tensors):
            raise DumpError(f"'{path}': bias tensors present (not a plain LLaMA); use --hf")
        self._w = {}
        tm = m.get("tokenizer.ggml.model")
        if tm != "gpt2":
            raise DumpError(f"'{path}': tokenizer '{tm}' is not supported (only byte-level BPE, 'gpt2'); use --hf")
        self.tok = ByteBPE(m["tokenizer.ggml.tokens"], m["tokenizer.ggml.merges"],
                           m.get("tokenizer.ggml.pre", "default"))
        self.add_bos = bool(m.get("tokenizer.ggml.add_bos_token", False))
        self.bos = m.get("tokenizer.ggml.bos_token_id")

    def w(self, name):
        """Dequantized weight as float64 [rows=out, cols=in] (GGUF shape [ne0=in, ne1=out]); cached."""
        if name not in self._w:
            if name not in self.tensors:
                raise DumpError(f"'{self.path}': tensor '{name}' missing")
            t = self.tensors[name]
            a = np.asarray(self._dequantize(t.data, t.tensor_type), dtype=np.float64)
            a = a.reshape([int(s) for s in reversed(t.shape)])
            if name.endswith("attn_q.weight"):
                a = unpermute_qk(a, self.n_head)
            elif name.endswith("attn_k.weight"):
                a = unpermute_qk(a, self.n_kv)
            self._w[name] = a
        return self._w[name]

    def encode(self, text):
        ids = self.tok.encode(text)
        return ([int(self.bos)] if self.add_bos and self.bos is not None else []) + ids

    def forward(self, ids, cache=None, capture=None, last_layer=None, logits=True, kv_hook=None):
        """Run tokens `ids` after the cache's tokens. cache: list of [K, V] per layer ([n_kv, S, d]), grown in place.
        capture: dict filled with layer -> (q [n_head,T,d], k [n_kv,T,d], v) of these tokens, post-RoPE.
        kv_hook(layer, k, v) -> (k, v): replaces these tokens' post-RoPE rows before they enter the cache and before
        any query reads them (a quantized KV cache). Stops after `last_layer` (no logits then). Returns logits
        [T, vocab] or None."""
        ids = np.asarray(ids, dtype=np.int64)
        T, d, H, KV = len(ids), self.head_dim, self.n_head, self.n_kv
        if cache is None:
            cache = [None] * self.n_layers
        past = 0 if cache[0] is None else cache[0][0].shape[1]
        pos = np.arange(past, past + T)
        x = self.w("token_embd.weight")[ids]
        stop = self.n_layers - 1 if last_layer is None else last_layer
        tty = sys.stderr.isatty()  # progress on a terminal only, like tq's progress bars
        for L in range(stop + 1):
            if tty:
                print(f"\rdump_kv: layer {L + 1}/{stop + 1}", end="" if L < stop else "\n", file=sys.stderr, flush=True)
            p = f"blk.{L}."
            h = rms_norm(x, self.w(p + "attn_norm.weight"), self.eps)
            q = (h @ self.w(p + "attn_q.weight").T).reshape(T, H, d).transpose(1, 0, 2)
            k = (h @ self.w(p + "attn_k.weight").T).reshape(T, KV, d).transpose(1, 0, 2)
            v = (h @ self.w(p + "attn_v.weight").T).reshape(T, KV, d).transpose(1, 0, 2)
            q, k = rope_half(q, pos, self.theta), rope_half(k, pos, self.theta)
            if capture is not None:
                capture[L] = (q, k, v)
            if kv_hook is not None:
                k, v = kv_hook(L, k, v)
            if cache[L] is None:
                cache[L] = [k, v]
            else:
                cache[L] = [np.concatenate([cache[L][0], k], axis=1), np.concatenate([cache[L][1], v], axis=1)]
            K, V = cache[L]
            S, G = K.shape[1], H // KV
            # GQA: query head h uses kv head h // G; group the G query heads of a kv head into one matmul.
            s = (q.reshape(KV, G * T, d) @ K.transpose(0, 2, 1)).reshape(KV, G, T, S) / np.sqrt(d)
            s = np.where(np.arange(S)[None, :] <= pos[:, None], s, -np.inf)  # causal: key s visible to t if s <= t
            s = np.exp(s - s.max(axis=-1, keepdims=True))
            s /= s.sum(axis=-1, keepdims=True)
            o = (s.reshape(KV, G * T, S) @ V).reshape(H, T, d).transpose(1, 0, 2).reshape(T, H * d)
            x = x + o @ self.w(p + "attn_output.weight").T
            h = rms_norm(x, self.w(p + "ffn_norm.weight"), self.eps)
            gt = h @ self.w(p + "ffn_gate.weight").T
            x = x + ((gt / (1.0 + np.exp(-gt))) * (h @ self.w(p + "ffn_up.weight").T)) @ self.w(p + "ffn_down.weight").T
        if not logits or stop < self.n_layers - 1:
            return None
        x = rms_norm(x, self.w("output_norm.weight"), self.eps)
        out = "output.weight" if "output.weight" in self.tensors else "token_embd.weight"  # tied embeddings
        return x @ self.w(out).T


def dump_gguf(path, text, n_tokens, layers):
    """Returns (model, meta dict, token ids, {layer: (q, k, v)})."""
    model = GGUFModel(path)
    ids = take_tokens(model.encode(text), n_tokens)
    layers = layers if layers is not None else list(range(model.n_layers))
    check_layers(layers, model.n_layers)
    cap = {}
    model.forward(ids, capture=cap, last_layer=max(layers), logits=False)
    base = os.path.basename(path)
    info = {
        "model": os.path.splitext(base)[0],
        "source": f"gguf {base} sha256:{sha256_file(path)}; numpy float64 forward pass",
        "n_model_layers": model.n_layers, "rope_theta": model.theta, "architecture": "llama",
        # the NumPy pass is llama-only: causal global attention, scores q.k / sqrt(head_dim), no soft-cap
        "attn": {L: (0, 1.0 / np.sqrt(model.head_dim), 0.0, model.theta) for L in layers},
    }
    return info, ids, {L: cap[L] for L in layers}


# ---------------------------------------------------------------------------------------------------------------
# Closed loop: the model run with its KV cache quantized by TurboQuant-mse (paper Algorithm 1), written from the
# algorithm's definition — an independent check of `tq perplexity` (lib/kvquant, lib/turbo), sharing no code with it.

def beta_lloyd_max(d, bits, grid=400001, tol=1e-13, max_iter=5000):
    """The b-bit Lloyd-Max codebook (ascending centroids) for one coordinate of a uniformly random unit vector in
    R^d: density f(t) ∝ (1 - t^2)^((d-3)/2) on [-1, 1]. Lloyd's iteration on a fine grid: thresholds at midpoints
    of neighbouring centroids, each centroid the conditional mean of its cell."""
    t = np.linspace(-1.0, 1.0, grid)
    w = np.clip(1.0 - t * t, 0.0, None) ** ((d - 3) / 2.0)
    w /= w.sum()
    n = 1 << bits
    cdf = np.cumsum(w)
    c = np.interp((np.arange(n) + 0.5) / n, cdf, t)  # start from the distribution's quantiles
    cw, cwt = np.concatenate([[0.0], np.cumsum(w)]), np.concatenate([[0.0], np.cumsum(w * t)])
    for _ in range(max_iter):
        edges = np.searchsorted(t, (c[1:] + c[:-1]) / 2.0)
        lo, hi = np.concatenate([[0], edges]), np.concatenate([edges, [grid]])
        new = (cwt[hi] - cwt[lo]) / (cw[hi] - cw[lo])
        if np.abs(new - c).max() < tol:
            c = new
            break
        c = new
    return c


def beta_mse(d, c, grid=400001):
    """d * E[(y - Q(y))^2] for one coordinate y: the expected ||u - û||^2 of a unit vector (D_mse)."""
    t = np.linspace(-1.0, 1.0, grid)
    w = np.clip(1.0 - t * t, 0.0, None) ** ((d - 3) / 2.0)
    w /= w.sum()
    q = c[np.clip(np.searchsorted((c[1:] + c[:-1]) / 2.0, t), 0, len(c) - 1)]
    return float(d * (w * (t - q) ** 2).sum())


class TurboMSECache:
    """kv_hook for GGUFModel.forward: every K and V row (per layer, kv head) goes through TurboQuant-mse at `bits`:
    norm stored in float16, direction rotated by a Haar-random orthogonal matrix (QR of a Gaussian matrix, columns
    sign-fixed by diag(R)), each rotated coordinate replaced by its nearest Beta Lloyd-Max centroid, then rotated
    back and scaled. One rotation per (layer, kv head, K or V), drawn from numpy's PCG64 seeded with `seed`."""

    def __init__(self, n_layers, n_kv, d, bits, seed):
        self.c = beta_lloyd_max(d, bits)
        self.thr = (self.c[1:] + self.c[:-1]) / 2.0
        rng = np.random.Generator(np.random.PCG64(seed))
        self.rot = {}
        for L in range(n_layers):
            for h in range(n_kv):
                for kind in (0, 1):
                    g = rng.standard_normal((d, d))
                    qm, r = np.linalg.qr(g)
                    self.rot[L, h, kind] = qm * np.sign(np.diag(r))[None, :]

    def quantize(self, x, rot):
        """Rows x [n, d] -> their reconstructions."""
        nrm = np.linalg.norm(x, axis=-1, keepdims=True)
        u = x / np.where(nrm > 0, nrm, 1.0)
        y = u @ rot.T  # y = Π u
        yq = self.c[np.searchsorted(self.thr, y)]
        return (yq @ rot) * nrm.astype(np.float16).astype(np.float64)  # x̂ = ‖x‖ Πᵀ c[idx]

    def __call__(self, L, k, v):
        k = np.stack([self.quantize(k[h], self.rot[L, h, 0]) for h in range(k.shape[0])])
        v = np.stack([self.quantize(v[h], self.rot[L, h, 1]) for h in range(v.shape[0])])
        return k, v


def closed_loop(path, text, n_tokens, bits, seeds):
    """Teacher-forced perplexity of the text's first n_tokens (predictions of tokens 1..T-1) with the exact cache and
    with TurboQuant-mse caches (keys and values, every row, the prompt's included) for each seed. Returns a dict."""
    model = GGUFModel(path)
    ids = take_tokens(model.encode(text), n_tokens)
    nxt = np.asarray(ids[1:])

    def logprobs(hook):
        lg = model.forward(ids, kv_hook=hook)[:-1]
        m = lg.max(-1, keepdims=True)
        return lg - m - np.log(np.exp(lg - m).sum(-1, keepdims=True))

    ref = logprobs(None)
    ppl_ref = float(np.exp(-ref[np.arange(len(nxt)), nxt].mean()))
    runs = []
    for seed in seeds:
        lq = logprobs(TurboMSECache(model.n_layers, model.n_kv, model.head_dim, bits, seed))
        ppl = float(np.exp(-lq[np.arange(len(nxt)), nxt].mean()))
        kl = float((np.exp(ref) * (ref - lq)).sum(-1).mean())
        top1 = float((ref.argmax(-1) == lq.argmax(-1)).mean())
        runs.append({"seed": seed, "ppl": ppl, "dppl_pct": 100.0 * (ppl / ppl_ref - 1.0), "kl": kl, "top1": top1})
    return {"model": os.path.basename(path), "tokens": len(ids), "method": "turbo-mse", "bits": bits,
            "rotation": "dense (Haar)", "codebook": "beta", "ppl_ref": ppl_ref, "runs": runs}


# ---------------------------------------------------------------------------------------------------------------
# Hugging Face path: the model's own attention code hands us post-RoPE q/k through the attention interface.

def dump_hf(name, text, n_tokens, layers):
    try:
        import torch
        import transformers
    except ImportError:
        raise DumpError("the --hf path needs torch and transformers (pip install torch transformers)")
    try:
        from transformers import AttentionInterface
        register = AttentionInterface.register
    except ImportError:
        try:
            from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS
            register = ALL_ATTENTION_FUNCTIONS.__setitem__
        except ImportError:
            raise DumpError(f"transformers {transformers.__version__} has no attention interface; "
                            "need transformers >= 4.48")
    from transformers.integrations.sdpa_attention import sdpa_attention_forward
    from transformers import AutoModelForCausalLM, AutoTokenizer

    captured = {}

    def capture(module, query, key, value, attention_mask, **kw):
        # query [B, Hq, T, d] and key/value [B, Hkv, T, d], RoPE already applied by the model's attention forward.
        captured[module.layer_idx] = tuple(a[0].detach().to(torch.float64).cpu().numpy() for a in (query, key, value))
        return sdpa_attention_forward(module, query, key, value, attention_mask, **kw)

    register("tq_capture", capture)
    try:
        tok = AutoTokenizer.from_pretrained(name)
        # float32 weights: transformers 5 renamed torch_dtype to dtype (and defaults to the checkpoint's dtype).
        dt = {"dtype" if int(transformers.__version__.split(".")[0]) >= 5 else "torch_dtype": torch.float32}
        model = AutoModelForCausalLM.from_pretrained(name, attn_implementation="tq_capture", **dt)
    except Exception as e:
        raise DumpError(f"cannot load '{name}' with transformers: {str(e).splitlines()[0] if str(e) else e}")
    model.eval()
    ids = take_tokens(tok(text)["input_ids"], n_tokens)
    n_layers = model.config.num_hidden_layers
    layers = layers if layers is not None else list(range(n_layers))
    check_layers(layers, n_layers)
    with torch.no_grad():
        model(torch.tensor([ids]), use_cache=False)
    missing = [L for L in layers if L not in captured]
    if missing:
        raise DumpError(f"'{name}': attention of layers {missing} did not go through the attention interface")
    theta = getattr(model.config, "rope_theta", None)
    info = {"model": os.path.basename(name.rstrip("/")), "source": f"hf {name}; transformers {transformers.__version__}"
            " attention interface, float32", "n_model_layers": n_layers}
    if theta is not None:
        info["rope_theta"] = float(theta)
    info["architecture"] = str(getattr(model.config, "model_type", "unknown"))
    info["attn"] = {L: hf_layer_attn(model.config, L, captured[L][1].shape[-1]) for L in layers}
    return info, ids, {L: captured[L] for L in layers}


def hf_layer_attn(cfg, layer, head_dim):
    """(sliding_window, attn_scale, attn_softcap, rope_base) of one layer from a transformers config: sliding layers
    from `layer_types` (Gemma 2/3, recent configs) or a config-wide `sliding_window` when `use_sliding_window` says so
    (Mistral, Qwen2), the scale from `query_pre_attn_scalar` (Gemma), the soft-cap from `attn_logit_softcapping`."""
    types = getattr(cfg, "layer_types", None)
    sw = getattr(cfg, "sliding_window", None) or 0
    if types is not None:
        local = types[layer] == "sliding_attention"
    else:
        local = bool(sw) and getattr(cfg, "use_sliding_window", True)
    window = int(sw) if local else 0
    qs = getattr(cfg, "query_pre_attn_scalar", None)
    scale = float(qs) ** -0.5 if qs else 1.0 / np.sqrt(head_dim)
    cap = float(getattr(cfg, "attn_logit_softcapping", None) or 0.0)
    base = getattr(cfg, "rope_local_base_freq", None) if local else None
    base = float(base or getattr(cfg, "rope_theta", 0.0) or 0.0)
    return window, scale, cap, base


# ---------------------------------------------------------------------------------------------------------------
# Writer: the tq-kv layout of datasets/FORMAT.md, byte-stable (no timestamps), temp file renamed when complete.

def write_dump(out, info, text_name, text_sha, ids, caps, dtype, version=2):
    import h5py
    np_dtype = np.float16 if dtype == "f16" else np.float32
    layers = sorted(caps)
    tmp = f"{out}.tmp.{os.getpid()}"
    try:
        fcpl = h5py.h5p.create(h5py.h5p.FILE_CREATE)
        fcpl.set_obj_track_times(False)  # root group header without a timestamp: same inputs -> same bytes
        fid = h5py.h5f.create(tmp.encode(), h5py.h5f.ACC_TRUNC, fcpl=fcpl)
        with h5py.File(fid) as f:
            a = f.attrs
            a["tq_format"] = "tq-kv"
            a["tq_format_version"] = np.int64(version)
            a["model"] = info["model"]
            a["source"] = f"{info['source']}; text {text_name} sha256:{text_sha}; {len(ids)} tokens; " \
                          f"scripts/dump_kv.py v{DUMPER_VERSION}"
            a["rope"] = "post"
            a["n_layers"] = np.int64(len(layers))
            # Provenance beyond the required attributes.
            a["model_layers"] = np.asarray(layers, dtype=np.int64)  # model layer of each /layer_NNN, in order
            a["model_n_layers"] = np.int64(info["n_model_layers"])
            a["token_ids"] = np.asarray(ids, dtype=np.int64)
            a["channel_order"] = "rotate_half"  # RoPE pairs channel i with i + d/2 (HF order), see unpermute_qk
            if "rope_theta" in info:
                a["rope_theta"] = np.float64(info["rope_theta"])
            if version >= 2:
                a["architecture"] = info.get("architecture", "unknown")
            gcpl = h5py.h5p.create(h5py.h5p.GROUP_CREATE)
            gcpl.set_obj_track_times(False)
            for i, L in enumerate(layers):
                q, k, v = caps[L]
                name = f"layer_{i:03d}"
                h5py.h5g.create(f.id, name.encode(), gcpl=gcpl)
                g = f[name]
                for dname, arr in (("keys", k), ("values", v), ("queries", q)):
                    arr = np.ascontiguousarray(arr)
                    if not np.all(np.isfinite(arr)):
                        raise DumpError(f"model layer {L} {dname}: non-finite values")
                    if np_dtype is np.float16 and np.abs(arr).max() > F16_MAX:
                        raise DumpError(f"model layer {L} {dname}: |x| up to {np.abs(arr).max():.4g} overflows float16;"
                                        " use --dtype f32")
                    g.create_dataset(dname, data=arr.astype(np_dtype), track_times=False)
                if version >= 2 and L in info.get("attn", {}):
                    window, scale, cap, base = info["attn"][L]
                    g.attrs["sliding_window"] = np.int64(window)  # 0: global; W: query t sees keys t-W+1..t
                    g.attrs["attn_scale"] = np.float64(scale)
                    g.attrs["attn_softcap"] = np.float64(cap)
                    g.attrs["rope_base"] = np.float64(base)
        os.replace(tmp, out)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


# ---------------------------------------------------------------------------------------------------------------

def take_tokens(ids, n):
    if n is None:
        return list(ids)
    if len(ids) < n:
        raise DumpError(f"the text has only {len(ids)} tokens, fewer than --tokens {n}; give a longer --text")
    return list(ids[:n])


def check_layers(layers, n):
    bad = [L for L in layers if L >= n]
    if bad:
        raise DumpError(f"--layers: layer {bad[0]} out of range, the model has {n} layers (0-{n - 1})")


def parse_layers(spec):
    """'0-3,7' -> [0, 1, 2, 3, 7] (sorted, unique)."""
    out = set()
    try:
        for part in spec.split(","):
            if "-" in part:
                a, b = part.split("-", 1)
                a, b = int(a), int(b)
                if a > b or a < 0:
                    raise ValueError
                out.update(range(a, b + 1))
            else:
                a = int(part)
                if a < 0:
                    raise ValueError
                out.add(a)
    except ValueError:
        raise argparse.ArgumentTypeError(f"bad layer list '{spec}' (expected e.g. 0-3,7)")
    return sorted(out)


def positive(s):
    try:
        v = int(s)
    except ValueError:
        v = 0
    if v <= 0:
        raise argparse.ArgumentTypeError(f"'{s}' is not a positive integer")
    return v


def main(argv=None):
    ap = argparse.ArgumentParser(
        prog="dump_kv.py",
        description="Dump a model's post-RoPE keys, values and queries for one text into a tq-kv HDF5 file.")
    src = ap.add_mutually_exclusive_group(required=True)
    src.add_argument("--gguf", metavar="FILE", help="LLaMA-family GGUF model (NumPy forward pass)")
    src.add_argument("--hf", metavar="MODEL", help="Hugging Face causal LM name or path (needs transformers)")
    ap.add_argument("--text", metavar="FILE", required=True, help="UTF-8 text to run through the model")
    ap.add_argument("--tokens", type=positive, metavar="N", help="first N tokens of the text (default: all)")
    ap.add_argument("--layers", type=parse_layers, metavar="LIST", help="e.g. 0-3,7 (default: all)")
    ap.add_argument("--dtype", choices=("f16", "f32"), default="f16", help="stored dtype (default f16)")
    ap.add_argument("--model", metavar="NAME", help="the 'model' attribute (default: file or model name)")
    ap.add_argument("--format-version", type=int, choices=(1, 2), default=2,
                    help="tq-kv format version to write (default 2; 1: without the architecture and attention "
                    "attributes, as the bundled dump was made)")
    ap.add_argument("--closed-loop", metavar="BITS", type=positive,
                    help="instead of a dump: perplexity with the KV cache quantized by TurboQuant-mse at BITS "
                    "(dense Haar rotation, Beta codebook, keys and values), against the exact cache; prints JSON "
                    "(--gguf only)")
    ap.add_argument("--seeds", default="0", metavar="LIST", help="--closed-loop rotation seeds, e.g. 0-4 (default 0)")
    ap.add_argument("-o", "--output", metavar="OUT", help="the dump (OUT.h5; required unless --closed-loop, which "
                    "writes its JSON there when given)")
    args = ap.parse_args(argv)
    if args.closed_loop is None and not args.output:
        ap.error("the following arguments are required: -o/--output")
    if args.closed_loop is not None and not args.gguf:
        ap.error("--closed-loop needs --gguf")
    try:
        try:
            with open(args.text, "rb") as f:
                raw = f.read()
            text = raw.decode("utf-8")
        except OSError as e:
            raise DumpError(f"cannot read '{args.text}': {e.strerror}")
        except UnicodeDecodeError:
            raise DumpError(f"'{args.text}' is not UTF-8 text")
        if args.closed_loop is not None:
            import json
            res = closed_loop(args.gguf, text, args.tokens, args.closed_loop, parse_layers(args.seeds))
            res["text"] = os.path.basename(args.text)
            out = json.dumps(res, indent=1)
            if args.output:
                with open(args.output + ".tmp", "w") as f:
                    f.write(out + "\n")
                os.replace(args.output + ".tmp", args.output)
            else:
                print(out)
            return 0
        if args.gguf:
            info, ids, caps = dump_gguf(args.gguf, text, args.tokens, args.layers)
        else:
            info, ids, caps = dump_hf(args.hf, text, args.tokens, args.layers)
        if args.model:
            info["model"] = args.model
        write_dump(args.output, info, os.path.basename(args.text), hashlib.sha256(raw).hexdigest(), ids, caps,
                   args.dtype, args.format_version)
    except DumpError as e:
        print(f"dump_kv: {e}", file=sys.stderr)
        return 1
    q, k, _ = caps[min(caps)]
    print(f"dump_kv: wrote '{args.output}': {len(caps)} layers, {k.shape[0]} kv heads, {q.shape[0]} q heads, "
          f"{len(ids)} tokens, head_dim {k.shape[2]}, {args.dtype}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
