"""Quantizer and metrics on arrays: tq.params, tq.quantize / tq.dequantize / tq.roundtrip, tq.metrics."""
import ctypes as C
from dataclasses import dataclass, field

import numpy as np

from . import _lib as L
from ._lib import check, lib

# lib/vocab.h's vocabularies (tq_vocab)
V_METHOD, V_ROTATION, V_CODEBOOK, V_METRIC, V_TENSOR, V_DEVICE, V_SYNTH = range(7)
SEC_DTYPES = {1: np.uint8, 2: np.uint16, 3: np.float32, 4: np.int32}  # TQ_SEC_* (F16 sections hold half bit patterns)

metric_names = list(L.metric_names)


def _names(v):
    return [lib.tq_vocab_name(v, i).decode() for i in range(lib.tq_vocab_count(v))]


def methods():
    """The methods' names, in the library's order: fp16, int8, kivi, turbo-mse, turbo-prod, qjl, polar."""
    return _names(V_METHOD)


def _vocab(v, name, what):
    if isinstance(name, int):
        return name
    i = lib.tq_vocab_find(v, str(name).encode())
    if i < 0:
        raise ValueError("unknown %s '%s' (%s)" % (what, name, ", ".join(_names(v))))
    return i


def available_devices():
    """Devices this build of libtq can use now ("cpu", and "cuda" in a CUDA build with a GPU)."""
    return [n for i, n in enumerate(_names(V_DEVICE)) if lib.tq_device_available(i) == 0]


def _as_array(x, ndim=None, name="x"):
    """A C-contiguous float32 NumPy array from an array-like or a torch tensor (copied to the host)."""
    if hasattr(x, "detach") and hasattr(x, "cpu"):  # torch.Tensor, without importing torch
        x = x.detach().cpu().float().numpy()
    a = np.ascontiguousarray(np.asarray(x, dtype=np.float32))
    if ndim is not None and a.ndim != ndim:
        raise ValueError("'%s' must have %d dimensions, got shape %s" % (name, ndim, a.shape))
    return a


def _fp(a):
    return a.ctypes.data_as(L.c_float_p) if a is not None else None


def params(method, bits=None, *, rotation=None, codebook=None, outliers=None, center=None, norm_fp32=None,
           group=None, residual=None, qjl_m=None, polar_bits=None, seed=0):
    """The quantizer settings (lib/quant.h tq_qparams) with the library's defaults for what is not given.

    method: a name of tq.methods(); bits: code bits per coordinate (fp16 16, int8 8 when None; required otherwise);
    rotation: dense|hadamard|none; codebook: beta|gaussian|empirical; outliers: channels at bits+1; center: subtract
    the per-channel mean; norm_fp32: norms/scales in fp32; group, residual: KIVI's group size and fp16 recent window;
    qjl_m: QJL projections (0 = d); polar_bits: PolarQuant bits per level, level 1 first (e.g. (4, 2, 2, 2));
    seed: the quantizer seed. Returns a dict accepted wherever params are taken (and by tq.describe)."""
    m = _vocab(V_METHOD, method, "method")
    f = lib.tq_format_of(m).contents
    if bits is None:
        if f.min_bits != f.max_bits:
            raise ValueError("method '%s' needs bits (%d..%d)" % (f.name.decode(), f.min_bits, f.max_bits))
        bits = f.min_bits
    p = L.QParams()
    lib.tq_qparams_default(C.byref(p), m, int(bits))
    if rotation is not None:
        p.rotation = _vocab(V_ROTATION, rotation, "rotation")
    if codebook is not None:
        p.codebook = _vocab(V_CODEBOOK, codebook, "codebook")
    for k, v in (("outliers", outliers), ("center", center), ("norm_fp32", norm_fp32), ("group", group),
                 ("residual", residual), ("qjl_m", qjl_m)):
        if v is not None:
            setattr(p, k, int(v))
    if polar_bits is not None:
        pb = [int(b) for b in polar_bits]
        if not 1 <= len(pb) <= L.TQ_POLAR_MAX_LEVELS:
            raise ValueError("polar_bits: 1..%d levels, got %d" % (L.TQ_POLAR_MAX_LEVELS, len(pb)))
        p.polar_levels = len(pb)
        for i in range(L.TQ_POLAR_MAX_LEVELS):
            p.polar_bits[i] = pb[i] if i < len(pb) else 0
    p.seed = int(seed)
    return _to_dict(p)


def _to_dict(p):
    return {"method": lib.tq_vocab_name(V_METHOD, p.method).decode(), "bits": p.bits,
            "rotation": lib.tq_vocab_name(V_ROTATION, p.rotation).decode(),
            "codebook": lib.tq_vocab_name(V_CODEBOOK, p.codebook).decode(), "outliers": p.outliers,
            "center": bool(p.center), "norm_fp32": bool(p.norm_fp32), "group": p.group, "residual": p.residual,
            "qjl_m": p.qjl_m, "polar_bits": tuple(p.polar_bits[i] for i in range(p.polar_levels)), "seed": p.seed}


def _to_struct(d):
    if isinstance(d, L.QParams):
        return d
    p = L.QParams()
    p.method = _vocab(V_METHOD, d["method"], "method")
    p.bits = int(d["bits"])
    p.rotation = _vocab(V_ROTATION, d["rotation"], "rotation")
    p.codebook = _vocab(V_CODEBOOK, d["codebook"], "codebook")
    for k in ("outliers", "center", "norm_fp32", "group", "residual", "qjl_m", "seed"):
        setattr(p, k, int(d[k]))
    pb = d["polar_bits"]
    p.polar_levels = len(pb)
    for i, b in enumerate(pb):
        p.polar_bits[i] = int(b)
    return p


def _params_of(p, method, bits, opts):
    if p is not None:
        if method is not None or bits is not None or opts:
            raise ValueError("give params=... or method/bits/options, not both")
        return _to_struct(p)
    if method is None:
        raise ValueError("no method: give a method name (tq.methods()) or params=tq.params(...)")
    return _to_struct(params(method, bits, **opts))


def describe(p):
    """The library's description of params, as reports print it: "turbo-mse,bits=3,rot=dense,cb=beta,seed=0"."""
    buf = C.create_string_buffer(192)
    return lib.tq_qparams_describe(C.byref(_to_struct(p)), buf, 192).decode()


@dataclass
class Codes:
    """The codes of one slice of n vectors of d coordinates (lib/quant.h tq_codes): params (a tq.params dict),
    where the slice sits (layer, head, tensor: the seeds of its rotations derive from them), and the packed sections
    in order, name -> NumPy array (uint8 codes, uint16 half bit patterns, float32, int32). bytes() of a section is
    what a tq-codes file stores."""
    params: dict
    n: int
    d: int
    layer: int = 0
    head: int = 0
    tensor: str = "keys"
    sections: dict = field(default_factory=dict)

    @property
    def payload_bytes(self):
        """Stored bytes, side information included."""
        return sum(a.nbytes for a in self.sections.values())

    @property
    def bits_total(self):
        """Stored bits per coordinate, side information included: 8 * payload / (n * d)."""
        return 8.0 * self.payload_bytes / (self.n * self.d)

    def section_bytes(self):
        """name -> bytes of every section."""
        return {k: a.tobytes() for k, a in self.sections.items()}


def _codes_from_c(c):
    secs = {}
    for i in range(c.nsec):
        s = c.sec[i]
        dt = SEC_DTYPES[s.type]
        n = int(s.count)
        buf = (C.c_char * (n * np.dtype(dt).itemsize)).from_address(s.data) if n else b""
        secs[s.name.decode()] = np.frombuffer(bytes(buf), dtype=dt).copy()
    return Codes(params=_to_dict(c.p), n=c.n, d=c.d, layer=c.id.layer, head=c.id.head,
                 tensor=lib.tq_vocab_name(V_TENSOR, c.id.tensor).decode(), sections=secs)


def _slice(layer, head, tensor):
    return L.SliceId(int(layer), int(head), _vocab(V_TENSOR, tensor, "tensor"))


def quantize(x, method=None, bits=None, *, params=None, layer=0, head=0, tensor="keys", device="cpu", **opts):
    """Quantize x [n, d] (NumPy or torch, converted to float32) -> tq.Codes.

    Either method/bits and options (those of tq.params) or params=tq.params(...). layer/head/tensor say where the
    slice sits: the per-slice rotation and projection seeds derive from them, so codes equal tq quantize's for the
    same dump slice. device: "cpu" or "cuda"."""
    a = _as_array(x, 2)
    p = _params_of(params, method, bits, opts)
    c = L.Codes()
    dev = _vocab(V_DEVICE, device, "device")
    try:
        check(lib.tq_device_quantize(dev, C.byref(p), _slice(layer, head, tensor), _fp(a), a.shape[0], a.shape[1],
                                     C.byref(c)))
        return _codes_from_c(c)
    finally:
        lib.tq_codes_free(C.byref(c))


def _codes_to_c(codes):
    c = L.Codes()
    c.p = _to_struct(codes.params)
    c.id = _slice(codes.layer, codes.head, codes.tensor)
    c.n, c.d = int(codes.n), int(codes.d)
    inv = {np.dtype(v): k for k, v in SEC_DTYPES.items()}
    for name, arr in codes.sections.items():
        arr = np.ascontiguousarray(arr)
        t = inv.get(arr.dtype)
        if t is None:
            raise ValueError("section '%s' has dtype %s (uint8, uint16, float32, int32)" % (name, arr.dtype))
        ptr = lib.tq_codes_add(C.byref(c), name.encode(), t, arr.size)
        if not ptr:
            lib.tq_codes_free(C.byref(c))
            check(-1)
        C.memmove(ptr, arr.ctypes.data, arr.nbytes)
    return c


def dequantize(codes):
    """Reconstruct the float32 [n, d] array from tq.Codes (only what the codes hold: the decoder regenerates the
    rotations from the seed and the slice's position)."""
    c = _codes_to_c(codes)
    out = np.empty((codes.n, codes.d), dtype=np.float32)
    try:
        check(lib.tq_dequantize(C.byref(c), _fp(out)))
    finally:
        lib.tq_codes_free(C.byref(c))
    return out


def roundtrip(x, method=None, bits=None, *, params=None, layer=0, head=0, tensor="keys", device="cpu", **opts):
    """Quantize and reconstruct x [n, d] on a device as sweeps do -> (xhat float32 [n, d], bits_total)."""
    a = _as_array(x, 2)
    p = _params_of(params, method, bits, opts)
    out = np.empty_like(a)
    bt = C.c_double()
    dev = _vocab(V_DEVICE, device, "device")
    check(lib.tq_roundtrip(dev, C.byref(p), _slice(layer, head, tensor), _fp(a), a.shape[0], a.shape[1], _fp(out),
                           C.byref(bt)))
    return out, bt.value


def _metrics_dict(m):
    return {n: m.v[i] for i, n in enumerate(metric_names)}


def metrics(k, khat, q=None, v=None, vhat=None, *, layer=0, head=0, seed=0, attention=True, window=0, scale=0.0,
            softcap=0.0, max_pairs=0):
    """tq's metrics of one kv head (README "Metrics"; lib/metrics.h tq_metrics_head).

    k, khat: keys and their reconstruction [T, d]; q: the group's query heads [G, T, d] (or [T, d]) or None;
    v, vhat: values [T, d] or None. layer/head/seed pick the inner-product sample stream (used beyond max_pairs
    pairs, 0 = the library's 2^20); attention False skips the O(T^2) metrics; window/scale/softcap describe the
    layer's attention (0: causal global, 1/sqrt(d), none). Returns {"keys": {metric: value}, "values": {...} or
    None}; NaN = absent (no queries, no values)."""
    k = _as_array(k, 2, "k")
    khat = _as_array(khat, 2, "khat")
    T, d = k.shape
    if khat.shape != k.shape:
        raise ValueError("'khat' has shape %s, 'k' %s" % (khat.shape, k.shape))
    G = 0
    if q is not None:
        q = _as_array(q)
        if q.ndim == 2:
            q = q[None]
        if q.ndim != 3 or q.shape[1:] != (T, d):
            raise ValueError("'q' must be [G, %d, %d], got %s" % (T, d, q.shape))
        G = q.shape[0]
    if (v is None) != (vhat is None):
        raise ValueError("give both 'v' and 'vhat' or neither")
    if v is not None:
        v, vhat = _as_array(v, 2, "v"), _as_array(vhat, 2, "vhat")
        if v.shape != k.shape or vhat.shape != k.shape:
            raise ValueError("'v' and 'vhat' must have the keys' shape %s" % (k.shape,))
    o = L.MetricsOpts(seed=int(seed), layer=int(layer), head=int(head), max_pairs=int(max_pairs),
                      attention=1 if attention else 0,
                      attn=L.AttnSpec(int(window), float(scale), float(softcap), 0.0))
    mk, mv = L.Metrics(), L.Metrics()
    check(lib.tq_metrics_head(C.byref(o), _fp(q), G, _fp(k), _fp(khat), _fp(v), _fp(vhat), T, d, C.byref(mk),
                              C.byref(mv) if v is not None else None))
    return {"keys": _metrics_dict(mk), "values": _metrics_dict(mv) if v is not None else None}
