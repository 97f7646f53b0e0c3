"""tq-kv dumps and tq-codes files read through libtq's validating readers (datasets/FORMAT.md)."""
import ctypes as C

import numpy as np

from . import _lib as L
from ._lib import check, lib
from .core import _codes_from_c, _to_dict

DTYPES = {0: "none", 1: "float16", 2: "float32", 3: "float64"}


def _shape(s):
    return {"n_kv_heads": s.n_kv_heads, "n_q_heads": s.n_q_heads, "n_tokens": s.n_tokens, "head_dim": s.head_dim,
            "has_values": bool(s.has_values), "has_queries": bool(s.has_queries), "dtype": DTYPES.get(s.dtype, "?")}


def _arr(ptr, shape):
    if not ptr:
        return None
    n = int(np.prod(shape))
    return np.ctypeslib.as_array(ptr, shape=(n,)).reshape(shape).copy()


class Dump:
    """An open tq-kv dump. meta: model, source, rope, architecture, n_layers, version and layer 0's shape;
    layer(i, tokens=0) reads one layer as float32 arrays {"keys": [kv_heads, T, d], "values": ... or None,
    "queries": [q_heads, T, d] or None, "attn": {window, scale, softcap, rope_base}}. Use as a context manager or
    call close()."""

    def __init__(self, path):
        self.path = str(path)
        h = C.c_void_p()
        check(lib.tq_dump_open(C.byref(h), self.path.encode()))
        self._h = h
        m = lib.tq_dump_get_meta(h).contents
        self.meta = {"model": m.model.decode(), "source": m.source.decode(), "rope": m.rope.decode(),
                     "architecture": m.architecture.decode(), "n_layers": m.n_layers, "version": m.version}
        self.meta.update(_shape(m.shape))

    @property
    def n_layers(self):
        return self.meta["n_layers"]

    def shape(self, layer):
        """One layer's shapes (validated when the file was opened)."""
        return _shape(lib.tq_dump_layer_shape(self._h, int(layer)).contents)

    def attn(self, layer):
        """The layer's attention as recorded: window (0 global), scale (0: 1/sqrt(d)), softcap, rope_base."""
        a = L.AttnSpec()
        check(lib.tq_dump_layer_attn(self._h, int(layer), C.byref(a)))
        return {"window": a.window, "scale": a.scale, "softcap": a.softcap, "rope_base": a.rope_base}

    def layer(self, layer, tokens=0):
        """Layer `layer` (first `tokens` tokens, 0 = all) as float32 arrays."""
        if not 0 <= layer < self.n_layers:
            raise IndexError("'%s' has layers 0..%d, not %d" % (self.path, self.n_layers - 1, layer))
        ly = L.Layer()
        check(lib.tq_dump_read_layer(self._h, int(layer), int(tokens), 0, C.byref(ly)))
        try:
            s = ly.s
            out = {"keys": _arr(ly.keys, (s.n_kv_heads, s.n_tokens, s.head_dim)),
                   "values": _arr(ly.values, (s.n_kv_heads, s.n_tokens, s.head_dim)),
                   "queries": _arr(ly.queries, (s.n_q_heads, s.n_tokens, s.head_dim))}
        finally:
            lib.tq_layer_free(C.byref(ly))
        out["attn"] = self.attn(layer)
        return out

    def close(self):
        if self._h:
            lib.tq_dump_close(self._h)
            self._h = None

    __del__ = close

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def read_dump(path):
    """Open a tq-kv dump (tq.Dump)."""
    return Dump(path)


class CodesFile:
    """An open tq-codes file (tq quantize's output). meta: source, model, rope, src_layers, n_layers, dtype,
    has_values, keys / values (tq.params dicts as asked), schedule (JSON text or None); layer(i) -> {"src_layer",
    "shape", "keys": [tq.Codes per kv head], "values": [...] or None, "queries": float32 [q_heads, T, d] or None}.
    tq.dequantize(codes) of each head gives what tq dequantize writes."""

    def __init__(self, path):
        self.path = str(path)
        h = C.c_void_p()
        check(lib.tq_codes_open(C.byref(h), self.path.encode()))
        self._h = h
        m = lib.tq_codes_get_meta(h).contents
        self.meta = {"source": m.source.decode(), "model": m.model.decode(), "rope": m.rope.decode(),
                     "src_layers": m.src_layers, "n_layers": m.n_layers, "dtype": DTYPES.get(m.dtype, "?"),
                     "has_values": bool(m.has_values), "keys": _to_dict(m.keys),
                     "values": _to_dict(m.values) if m.has_values else None,
                     "schedule": m.schedule.decode() if m.schedule else None}

    def layer(self, i):
        if not 0 <= i < self.meta["n_layers"]:
            raise IndexError("'%s' stores %d layers, not %d" % (self.path, self.meta["n_layers"], i))
        cl = L.CodesLayer()
        check(lib.tq_codes_read_layer(self._h, int(i), C.byref(cl)))
        try:
            s = cl.s
            out = {"src_layer": cl.src_layer, "shape": _shape(s),
                   "keys": [_codes_from_c(cl.keys[h]) for h in range(s.n_kv_heads)],
                   "values": [_codes_from_c(cl.values[h]) for h in range(s.n_kv_heads)] if cl.values else None,
                   "queries": _arr(cl.queries, (s.n_q_heads, s.n_tokens, s.head_dim))}
        finally:
            lib.tq_codes_layer_free(C.byref(cl))
        return out

    def close(self):
        if self._h:
            lib.tq_codes_close(self._h)
            self._h = None

    __del__ = close

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def read_codes(path):
    """Open a tq-codes file (tq.CodesFile)."""
    return CodesFile(path)
