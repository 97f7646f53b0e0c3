"""tq.hf: a Hugging Face transformers cache whose keys and values go through tq's quantizer, with the streaming
semantics of `tq perplexity`'s closed loop (lib/kvquant.h), so the same model gives the same ΔPPL in either.

    from transformers import AutoModelForCausalLM
    import tq.hf
    cache = tq.hf.QuantizedCache(method="turbo-mse", bits=3)           # values: the same, or values=("kivi", 2)
    out = tq.hf.forward(model, input_ids, cache)                       # model(input_ids, <cache kwarg>=cache, ...)
    ids = tq.hf.generate(model, input_ids, cache, max_new_tokens=32)   # model.generate, the same way

Semantics (README "Closed loop", lib/kvquant.h), per (layer, kv head, tensor) slice of each batch row:
  - per-row methods (int8, turbo-mse, turbo-prod, qjl, polar, KIVI values): a row is quantized once, in place, in the
    update() call that writes it, before attention reads it, each row on its own — alone or in a chunk, the same
    bytes. Turbo and polar rows go through the slice's kept quantizer (lib/turbo.h tq_turbo_rows, lib/polar.h
    tq_polar_rows: the bytes of a one-row round trip); the others through tq.roundtrip one row at a time.
  - blocks: KIVI keys (groups of `group` tokens per channel) and recent=N are quantized a block at a time: block k
    is quantized when the first token after it is written, so the newest 1..B rows stay exact (KIVI's residual).
  - prefill="fp16": the rows of the first update() call (the prompt; or the first `prompt` positions) stay exact and
    blocks count from there; "quantized" (the default) quantizes them too.
  - center=True: the per-channel mean of a slice is calibrated on its first write and frozen.
  - keep_layers: layers left exact. outliers and the empirical codebook have no streaming definition: refused.
The rotation and projection seeds of a slice derive from (seed, layer, kv head, tensor), as in every tq command, so
a pass fed in the same chunks as `tq perplexity --prompt P --chunk C` quantizes the same rows with the same
quantizers. Works on any device and dtype (rows go to the host in float32 and come back). Needs torch and
transformers (imported only here)."""
import ctypes as C

import numpy as np

from . import _lib as L
from ._lib import check, lib
from .core import V_METHOD, V_TENSOR, _slice, _to_struct, _vocab
from .core import params as _params
from .core import roundtrip as _roundtrip

try:
    import torch
    from transformers import DynamicCache
except ImportError as e:  # pragma: no cover - depends on the machine
    raise ImportError("tq.hf needs torch and transformers (pip install torch transformers)") from e

for _name, _args in (("tq_turbo_rows_make", [C.POINTER(C.c_void_p), C.POINTER(L.QParams), C.c_int, L.SliceId]),
                     ("tq_polar_rows_make", [C.POINTER(C.c_void_p), C.POINTER(L.QParams), C.c_int, L.SliceId])):
    getattr(lib, _name).restype, getattr(lib, _name).argtypes = C.c_int, _args
for _kind in ("turbo", "polar"):
    _f = getattr(lib, "tq_%s_rows_roundtrip" % _kind)
    _f.restype, _f.argtypes = C.c_int, [C.c_void_p, L.c_float_p, C.c_int, L.c_float_p, C.POINTER(C.c_double)]
    _f = getattr(lib, "tq_%s_rows_free" % _kind)
    _f.restype, _f.argtypes = None, [C.c_void_p]

_ROW_KIND = {"turbo-mse": "turbo", "turbo-prod": "turbo", "qjl": "turbo", "polar": "polar"}


class _Rows:
    """One slice's quantizer, kept for the cache's life: rt(x [m, d]) -> (xhat, bits per value), each row on its
    own (KIVI keys: the m rows, one block, together)."""

    def __init__(self, p, d, layer, head, tensor):
        self.p, self.d, self.id = p, d, (layer, head, tensor)
        self.kind = _ROW_KIND.get(p["method"])
        self.h = C.c_void_p()
        self.block = p["method"] == "kivi" and tensor == "keys"
        if self.kind:
            check(getattr(lib, "tq_%s_rows_make" % self.kind)(C.byref(self.h), C.byref(_to_struct(p)), d,
                                                              _slice(layer, head, tensor)))

    def rt(self, x):
        x = np.ascontiguousarray(x, dtype=np.float32)
        if self.kind:
            y, b = np.empty_like(x), C.c_double()
            check(getattr(lib, "tq_%s_rows_roundtrip" % self.kind)(self.h, x.ctypes.data_as(L.c_float_p), x.shape[0],
                                                                   y.ctypes.data_as(L.c_float_p), C.byref(b)))
            return y, b.value
        layer, head, tensor = self.id
        if self.block:
            return _roundtrip(x, params=self.p, layer=layer, head=head, tensor=tensor)
        y, bs = np.empty_like(x), 0.0
        for r in range(x.shape[0]):
            y[r:r + 1], b = _roundtrip(x[r:r + 1], params=self.p, layer=layer, head=head, tensor=tensor)
            bs += b
        return y, bs / x.shape[0]

    def __del__(self):
        if self.kind and self.h:
            getattr(lib, "tq_%s_rows_free" % self.kind)(self.h)
            self.h = C.c_void_p()


def _stream_params(p, what):
    """A tq.params dict as the stream uses it (lib/kvquant.c slice_params / check_params), or None when exact."""
    if p is None or p["method"] == "fp16":
        return None
    if p["outliers"] > 0:
        raise ValueError("%s: outliers have no streaming definition in the closed loop yet (the channels are a whole "
                         "slice's statistic); drop them" % what)
    if p["codebook"] == "empirical" and lib.tq_format_of(_vocab(V_METHOD, p["method"], "method")).contents.uses_rotation:
        raise ValueError("%s: codebook 'empirical' is fitted on a whole slice and has no streaming definition in the "
                         "closed loop yet; use beta or gaussian" % what)
    p = dict(p)
    p["residual"] = 0  # the stream keeps its own exact tail (blocks)
    return p


def cache_kwarg(model):
    """The name under which model.forward takes a cache: "cache" from transformers 5.x on (where "past_key_values" is
    deprecated), "past_key_values" before."""
    import inspect
    return "cache" if "cache" in inspect.signature(model.forward).parameters else "past_key_values"


def forward(model, input_ids, cache, **kw):
    """model(input_ids, use_cache=True, **kw) with the cache passed under the name this transformers version takes."""
    return model(input_ids, use_cache=True, **{cache_kwarg(model): cache}, **kw)


def generate(model, input_ids, cache, **kw):
    """model.generate(input_ids, **kw) with the cache passed under the name this transformers version takes."""
    return model.generate(input_ids, **{cache_kwarg(model): cache}, **kw)


class QuantizedCache(DynamicCache):
    """A transformers DynamicCache whose rows are replaced in place by their tq round trip as `tq perplexity`'s
    closed loop does (module docstring).

    method, bits and options (those of tq.params: rotation, codebook, center, norm_fp32, group, qjl_m, polar_bits,
    seed) describe the keys' quantizer; values=None uses the same, values=(method, bits) or a tq.params dict another
    one (with the keys' seed), values=False leaves values exact. keep_layers: layer indices kept exact. recent: N > 0
    quantizes every tensor in blocks of N (the newest 1..N rows exact). prefill: "quantized" or "fp16"; prompt: the
    exact prefix length with "fp16" (None: the first update's length). bits_total: stored bits per K/V value of the
    cache so far, exact rows at 16, as tq perplexity's column counts them."""

    def __init__(self, method="turbo-mse", bits=3, values=None, keep_layers=(), recent=0, prefill="quantized",
                 prompt=None, **opts):
        super().__init__()
        seed = opts.get("seed", 0)
        center = bool(opts.pop("center", False))
        self.kparams = _params(method, bits, **opts)
        if values is None:
            vp = self.kparams
        elif values is False:
            vp = None
        elif isinstance(values, dict):
            vp = values
        else:
            vp = _params(values[0], values[1], seed=seed)
        self.vparams = vp
        if prefill not in ("quantized", "fp16"):
            raise ValueError("prefill must be 'quantized' or 'fp16', got '%s'" % prefill)
        if int(recent) < 0:
            raise ValueError("recent must be >= 0")
        self.recent, self.prefill_fp16, self.prompt = int(recent), prefill == "fp16", prompt
        self.center = center
        self.keep_layers = set(keep_layers)
        self._p = {"keys": _stream_params(self.kparams, "keys"), "values": _stream_params(vp, "values")}
        kp = self._p["keys"]
        if kp and kp["method"] == "kivi" and self.recent and self.recent % kp["group"]:
            raise ValueError("recent %d must be a multiple of kivi's key group %d (keys are quantized a group of "
                             "tokens at a time)" % (self.recent, kp["group"]))
        self._state = {}  # (layer, tensor) -> [done, S, mean or None]
        self._rows = {}  # (layer, head, tensor) -> _Rows
        self._qbits = 0.0  # sum of bits over quantized values
        self._qvals = 0  # their count
        self._vals = 0  # every K/V value written

    def block(self, tensor):
        """Block size of a tensor's stream: 0 = each row when written (lib/kvquant.c block_of)."""
        p = self._p[tensor]
        if p and p["method"] == "kivi" and tensor == "keys":
            return self.recent if self.recent > 0 else p["group"]
        return self.recent

    @property
    def bits_total(self):
        return (self._qbits + 16.0 * (self._vals - self._qvals)) / self._vals if self._vals else float("nan")

    def _quantize(self, full, layer, tensor, n):
        """full [batch, kv_heads, S_total, d]: the layer's stored rows, the last n just written. Rewrite in place the
        rows the semantics make final (lib/kvquant.c on_slice)."""
        p = self._p[tensor]
        if p is None or layer in self.keep_layers:
            return
        B, H, end, d = full.shape
        st = self._state.get((layer, tensor))
        if st is None:
            S = (n if self.prompt is None else int(self.prompt)) if self.prefill_fp16 else 0
            st = self._state[(layer, tensor)] = [0, S, None]
        pos0 = end - n
        if self.center and st[2] is None:  # calibrated on the first write, then frozen
            st[2] = full[:, :, pos0:end].detach().to("cpu", torch.float64).mean(dim=2).to(torch.float32).numpy()
        S, blk = st[1], self.block(tensor)
        st[0] = max(st[0], S)
        if end <= S:
            return
        target = end if blk == 0 else S + (end - 1 - S) // blk * blk
        lo, m = st[0], target - st[0]
        if m <= 0:
            return
        x = full[:, :, lo:target].detach().to("cpu", torch.float32).numpy()
        mu = st[2]
        out = np.empty_like(x)
        for h in range(H):
            key = (layer, h, tensor)
            if key not in self._rows:
                self._rows[key] = _Rows(p, d, layer, h, tensor)
            for b in range(B):
                xb = x[b, h] - mu[b, h] if self.center else x[b, h]
                y, bits = self._rows[key].rt(xb)
                out[b, h] = y + mu[b, h] if self.center else y
                self._qbits += bits * m * d
                self._qvals += m * d
        with torch.no_grad():
            full[:, :, lo:target] = torch.from_numpy(out).to(device=full.device, dtype=full.dtype)
        st[0] = target

    def update(self, key_states, value_states, layer_idx, *args, **kwargs):
        n = key_states.shape[-2]
        keys, values = super().update(key_states, value_states, layer_idx, *args, **kwargs)
        self._vals += 2 * key_states.numel()
        # the returned tensors are the stored ones (DynamicCache concatenates into them): rewritten in place, the
        # cache and this call's attention both read the quantized rows, as lib/model's attention reads its cache
        self._quantize(keys, layer_idx, "keys", n)
        self._quantize(values, layer_idx, "values", n)
        return keys, values
