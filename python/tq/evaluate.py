"""The evaluation engine (lib/evaluate.h) from Python: tq.sweep and tq.sensitivity into pandas DataFrames in the
tidy schema `tq sweep` writes (README "Output schema"): one row per configuration x scope, numeric layer / kv_head
columns (-1 where the scope aggregates them), a scope column, no empty identifying field."""
import ctypes as C

from . import _lib as L
from ._lib import check, lib
from .core import V_CODEBOOK, V_METHOD, V_ROTATION, V_SYNTH, V_TENSOR, _to_struct, _vocab, metric_names, params

# The long schema: column -> dtype (metrics are float64, NaN = absent).
SCHEMA = dict([("dump", "str"), ("scope", "str"), ("layer", "int"), ("window", "int"), ("kv_head", "int"),
               ("tensor", "str"), ("method", "str"), ("params", "str"), ("bits_code", "float"),
               ("bits_total", "float"), ("compression", "float")] + [(m, "float") for m in metric_names])
KEY_METRICS = [m for m in metric_names if m != "out_rel"]
VALUE_METRICS = ["nmse", "dmse", "cos", "out_rel"]
# The wide schema (--wide): keys and values of one configuration x scope on one row.
SCHEMA_WIDE = dict([("dump", "str"), ("scope", "str"), ("layer", "int"), ("window", "int"), ("kv_head", "int"),
                    ("method", "str"), ("params", "str"), ("values_method", "str"), ("values_params", "str"),
                    ("k_bits_code", "float"), ("k_bits_total", "float"), ("v_bits_code", "float"),
                    ("v_bits_total", "float"), ("compression", "float")]
                   + [("k_" + m, "float") for m in KEY_METRICS] + [("v_" + m, "float") for m in VALUE_METRICS])
AGGREGATES = ("none", "layer", "dump")


def _pandas():
    try:
        import pandas
    except ImportError as e:  # pragma: no cover - depends on the machine
        raise ImportError("tq.sweep and tq.sensitivity return pandas DataFrames: pip install pandas") from e
    return pandas


def _ints(v, vocab=None, what=None):
    """"1-4", "2,3", [2, 3] or names -> list of ints."""
    if isinstance(v, (list, tuple)):
        items = list(v)
    else:
        items = []
        for part in str(v).split(","):
            part = part.strip()
            if vocab is None and "-" in part[1:]:
                a, b = part.split("-", 1)
                items += list(range(int(a), int(b) + 1))
            else:
                items.append(part)
    if vocab is not None:
        return [_vocab(vocab, x, what) for x in items]
    return [int(x) for x in items]


def _carr(xs):
    return (C.c_int * max(len(xs), 1))(*xs), len(xs)


def _params_str(desc):
    """"turbo-mse,bits=3,rot=dense" -> "bits=3,rot=dense"; "none" where the method takes no parameters (int8)."""
    rest = desc.split(",", 1)[1] if "," in desc else ""
    return rest or "none"


def _scope(r):
    return "dump" if r.layer < 0 else "layer" if r.head < 0 else "slice"


def _keep(r, aggregate):
    s = _scope(r)
    return aggregate == "none" or s == "dump" or (aggregate == "layer" and s == "layer")


class _Progress:
    def __init__(self, fn):
        self.fn = fn
        self.c = L.PROGRESS_FN(self._call) if fn else L.PROGRESS_FN()

    def _call(self, ctx, label, done, total):
        try:
            self.fn(label.decode() if label else "", done, total)
        except Exception:  # a callback must not unwind through C
            pass


def sweep(dumps=None, *, synthetic=None, methods="turbo-mse,turbo-prod,polar,kivi", bits="1-4", rotation="dense",
          codebook="beta", center="off", outliers="0", values="same", layers=None, heads=None, q_heads=None,
          dim=None, tokens=0, threads=None, seed=0, attention=True, device="cpu", aggregate="none", wide=False,
          progress=None):
    """Run `tq sweep` in process and return its table as a pandas DataFrame (SCHEMA, or SCHEMA_WIDE with wide=True).

    dumps: a path or list of tq-kv dumps, or synthetic="gaussian,structured" (then layers/heads are counts and
    q_heads, dim, tokens the synthetic shapes). The axes take the CLI's spellings ("1-4", "dense,hadamard",
    "off,on", "0,32") or lists. values: "same", "none" or "METHOD:BITS". aggregate: "none" (slice, layer and dump
    rows), "layer" (layer and dump rows) or "dump". threads: heads in parallel (default: the machine's cores; the
    numbers do not depend on it). progress: a callable(label, done, total). Same options -> the numbers
    `tq sweep --format csv` prints."""
    pd = _pandas()
    if aggregate not in AGGREGATES:
        raise ValueError("aggregate: none, layer or dump, got '%s'" % aggregate)
    if (dumps is None) == (synthetic is None):
        raise ValueError("give dump files or synthetic=..., not both or neither")
    if isinstance(dumps, (str, bytes)) or hasattr(dumps, "__fspath__"):
        dumps = [dumps]
    o = L.EvalOpts()
    lib.tq_synth_params_default(C.byref(o.sp))
    keep = []  # ctypes buffers o points into
    if synthetic is not None:
        names = [s.strip() for s in synthetic.split(",")] if isinstance(synthetic, str) else list(synthetic)
        ins = (L.EvalInput * len(names))()
        for i, n in enumerate(names):
            label = ("synthetic:%s" % n).encode()
            keep.append(label)
            ins[i] = L.EvalInput(label, None, _vocab(V_SYNTH, n, "distribution"))
        if layers is not None:
            o.sp.n_layers = int(layers)
        if heads is not None:
            o.sp.n_kv_heads = int(heads)
        o.sp.n_q_heads = int(q_heads) if q_heads is not None else o.sp.n_kv_heads
        if dim is not None:
            o.sp.head_dim = int(dim)
        if tokens:
            o.sp.n_tokens = int(tokens)
        o.sp.seed = int(seed)
        o.sp.dist = ins[0].synth
        check(lib.tq_synth_check(C.byref(o.sp)))
    else:
        paths = [str(p) for p in dumps]
        ins = (L.EvalInput * len(paths))()
        for i, p in enumerate(paths):
            b = p.encode()
            keep.append(b)
            ins[i] = L.EvalInput(b, b, -1)
        o.tokens = int(tokens)
    o.inputs, o.n_inputs = ins, len(ins)
    import os
    o.threads = int(threads) if threads else (os.cpu_count() or 1)
    o.seed = int(seed)
    o.attention = 1 if attention else 0
    o.per_head_rows = 0 if aggregate == "dump" else 1
    o.device = _vocab(5, device, "device")
    nl, nkv, d = C.c_int(), C.c_int(), C.c_int()
    check(lib.tq_eval_input_shape(C.byref(o), 0, C.byref(nl), C.byref(nkv), C.byref(d)))
    if synthetic is None:
        if layers is not None:
            la, n = _carr(_ints(layers))
            keep.append(la)
            o.layers, o.n_layers = C.cast(la, L.c_int_p), n
        if heads is not None:
            ha, n = _carr(_ints(heads))
            keep.append(ha)
            o.heads, o.n_heads = C.cast(ha, L.c_int_p), n
    ax = L.EvalAxes(seed=int(seed))
    lists = [_ints(methods, V_METHOD, "method"), _ints(bits), _ints(rotation, V_ROTATION, "rotation"),
             _ints(codebook, V_CODEBOOK, "codebook"),
             [1 if str(c) in ("on", "1", "True") else 0 for c in
              (center if isinstance(center, (list, tuple)) else str(center).split(","))],
             _ints(outliers)]
    for (ptr, cnt), xs in zip([("methods", "n_methods"), ("bits", "n_bits"), ("rotations", "n_rotations"),
                                ("codebooks", "n_codebooks"), ("centers", "n_centers"), ("outliers", "n_outliers")],
                               lists):
        a, n = _carr(xs)
        keep.append(a)
        setattr(ax, ptr, C.cast(a, L.c_int_p))
        setattr(ax, cnt, n)
    if values == "none":
        ax.values = 2
    elif values != "same":
        name, _, b = str(values).partition(":")
        ax.values = 1
        ax.values_params = _to_struct(params(name, int(b) if b else None, seed=seed))
    cs = L.EvalConfigs()
    rows = L.EvalRows()
    pg = _Progress(progress)
    o.progress = pg.c
    try:
        check(lib.tq_eval_configs_build(C.byref(cs), C.byref(ax), d.value, o.device))
        o.cfg, o.n_cfg = cs.cfg, cs.n
        check(lib.tq_evaluate(C.byref(o), C.byref(rows)))
        data = _rows(o, cs, rows, aggregate, wide)
    finally:
        lib.tq_eval_rows_free(C.byref(rows))
        lib.tq_eval_configs_free(C.byref(cs))
    schema = SCHEMA_WIDE if wide else SCHEMA
    df = pd.DataFrame(data, columns=list(schema))
    return df.astype({c: ("int64" if t == "int" else "float64" if t == "float" else "object")
                      for c, t in schema.items()})


def _rows(o, cs, rows, aggregate, wide):
    out = []
    pending = {}
    for i in range(rows.n):
        r = rows.rows[i]
        if not _keep(r, aggregate):
            continue
        c = cs.cfg[r.cfg]
        keys = r.tensor == 0
        p = c.k if keys else c.v
        desc = (c.kdesc if keys else c.vdesc).decode()
        ident = [o.inputs[r.input].label.decode(), _scope(r), r.layer, r.window, r.head]
        m = {n: r.m.v[j] for j, n in enumerate(metric_names)}
        comp = 16.0 / r.bits_total if r.bits_total > 0 else float("nan")
        if not wide:
            out.append(ident + [lib.tq_vocab_name(V_TENSOR, r.tensor).decode(),
                                lib.tq_vocab_name(V_METHOD, p.method).decode(), _params_str(desc), r.bits_code,
                                r.bits_total, comp] + [m[n] for n in metric_names])
            continue
        # wide: the keys row waits for its values row (the engine writes keys then values of each config x scope)
        if keys:
            has_v = c.v.method >= 0 and c.vdesc.decode() != "none"
            row = ident + [lib.tq_vocab_name(V_METHOD, p.method).decode(), _params_str(desc),
                           lib.tq_vocab_name(V_METHOD, c.v.method).decode() if has_v else "none",
                           _params_str(c.vdesc.decode()) if has_v else "none", r.bits_code, r.bits_total]
            entry = (row, [m[n] for n in KEY_METRICS], r.bits_total)
            if has_v:
                pending[(r.input, r.layer, r.head, r.cfg)] = entry
            else:
                out.append(row + [float("nan"), float("nan"), 16.0 / r.bits_total if r.bits_total > 0 else
                                  float("nan")] + entry[1] + [float("nan")] * len(VALUE_METRICS))
        else:
            row, km, kbt = pending.pop((r.input, r.layer, r.head, r.cfg))
            tot = kbt + r.bits_total
            out.append(row + [r.bits_code, r.bits_total, 32.0 / tot if tot > 0 else float("nan")] + km
                       + [m[n] for n in VALUE_METRICS])
    return out


def sensitivity(dump, method, bits=None, *, metric="attn_kl", tensor="keys", per_head=False, tokens=0, threads=None,
                seed=0, rotation=None, device="cpu", progress=None):
    """`tq sensitivity` in process: every layer's (per_head: every (layer, kv head)'s) distortion curve over the
    bit widths, as a long DataFrame with columns tensor, scope ("layer" or "head"), layer, kv_head (-1 for a layer
    unit), window, coords, bits, metric, value, bits_code, bits_total. bits: "2-4" or a list (default the method's
    widths in 1..4); metric: attn_kl, out_rel, nmse, ip_rmse, entropy_collapse; tensor: keys, values or both."""
    pd = _pandas()
    import os
    m = _vocab(V_METHOD, method, "method")
    f = lib.tq_format_of(m).contents
    bl = _ints(bits) if bits is not None else [b for b in range(1, 5) if f.min_bits <= b <= f.max_bits]
    P = (L.QParams * len(bl))()
    for i, b in enumerate(bl):
        P[i] = _to_struct(params(method, b, rotation=rotation, seed=seed))
    met = lib.tq_sens_metric_find(metric.encode())
    if not met:
        raise ValueError("unknown metric '%s' (attn_kl, out_rel, nmse, ip_rmse, entropy_collapse)" % metric)
    so = L.SensOpts(dump=str(dump).encode(), params=P, n_bits=len(bl), metric=met, per_head=1 if per_head else 0,
                    tokens=int(tokens), threads=int(threads) if threads else (os.cpu_count() or 1), seed=int(seed),
                    device=_vocab(5, device, "device"))
    so.tensors[0] = 1 if tensor != "values" else 0
    so.tensors[1] = 1 if tensor != "keys" else 0
    pg = _Progress(progress)
    so.progress = pg.c
    res = L.SensResult()
    check(lib.tq_sensitivity(C.byref(so), C.byref(res)))
    try:
        out = []
        for i in range(res.n):
            u = res.units[i]
            for j, b in enumerate(bl):
                out.append([lib.tq_vocab_name(V_TENSOR, u.tensor).decode(), "head" if u.head >= 0 else "layer",
                            u.layer, u.head, u.window, u.coords, b, metric, u.metric[j], u.bits_code[j],
                            u.bits_total[j]])
    finally:
        lib.tq_sens_free(C.byref(res))
    return pd.DataFrame(out, columns=["tensor", "scope", "layer", "kv_head", "window", "coords", "bits", "metric",
                                      "value", "bits_code", "bits_total"])


def _axes(methods, bits, rotation, codebook, center, outliers, values, seed, keep):
    """tq_eval_axes from the CLI spellings (keep: ctypes buffers the axes point into)."""
    ax = L.EvalAxes(seed=int(seed))
    lists = [_ints(methods, V_METHOD, "method"), _ints(bits), _ints(rotation, V_ROTATION, "rotation"),
             _ints(codebook, V_CODEBOOK, "codebook"),
             [1 if str(c) in ("on", "1", "True") else 0 for c in
              (center if isinstance(center, (list, tuple)) else str(center).split(","))],
             _ints(outliers)]
    for (ptr, cnt), xs in zip([("methods", "n_methods"), ("bits", "n_bits"), ("rotations", "n_rotations"),
                                ("codebooks", "n_codebooks"), ("centers", "n_centers"), ("outliers", "n_outliers")],
                               lists):
        a, n = _carr(xs)
        keep.append(a)
        setattr(ax, ptr, C.cast(a, L.c_int_p))
        setattr(ax, cnt, n)
    if values == "none":
        ax.values = 2
    elif values != "same":
        name, _, b = str(values).partition(":")
        ax.values = 1
        ax.values_params = _to_struct(params(name, int(b) if b else None, seed=seed))
    return ax


def perplexity(model, text, *, methods="turbo-mse", bits="2-4", rotation="dense", codebook="beta", center="off",
               values="same", seed=0, recent=0, prefill="quantized", keep_layers=None, tokens=0, prompt=0, chunk=32,
               threads=0, device="cpu"):
    """`tq perplexity` in process: teacher-forced perplexity of a GGUF model with its KV cache written through tq's
    quantizer (lib/kvquant.h, README "Closed loop"), one row per configuration, against the exact cache. Returns a
    DataFrame with the CLI's columns: model, tokens, method, params, values, recent, prefill, keep_layers, prompt,
    seed, bits_total, ppl, ppl_ref, dppl_pct, kl, top1. prompt 0: a quarter of the tokens on the 32-token grid;
    keep_layers: a list of layers left exact, "all" or None; threads 0: BLAS threads as set."""
    pd = _pandas()
    import os
    keep = []
    m, g, tk = C.c_void_p(), C.c_void_p(), C.c_void_p()
    ids, n = C.POINTER(C.c_int32)(), C.c_int()
    ref = C.POINTER(C.c_float)()
    lib.tq_model_set_threads(int(threads))
    check(lib.tq_model_load(str(model).encode(), C.byref(m)))
    try:
        raw = open(text, "rb").read()
        check(lib.tq_gguf_open(str(model).encode(), C.byref(g)))
        try:
            check(lib.tq_tokenizer_from_gguf(g, C.byref(tk)))
        finally:
            lib.tq_gguf_close(g)
        try:
            check(lib.tq_tokenize(tk, raw, len(raw), 1, C.byref(ids), C.byref(n)))
        finally:
            lib.tq_tokenizer_free(tk)
        T = n.value
        if tokens:
            if T < tokens:
                raise ValueError("'%s' gives %d tokens, fewer than tokens=%d" % (text, T, tokens))
            T = int(tokens)
        if not prompt:
            q = T // 4
            prompt = q // 32 * 32 if q >= 32 else (q or 1)
        if prompt >= T:
            raise ValueError("prompt %d leaves no token after it (%d tokens)" % (prompt, T))
        mc = lib.tq_model_get_config(m).contents
        kp = None
        if keep_layers is not None:
            flags = [1] * mc.n_layers if keep_layers == "all" else [0] * mc.n_layers
            if keep_layers != "all":
                for l in _ints(keep_layers):
                    flags[l] = 1
            kp = (C.c_ubyte * mc.n_layers)(*flags)
        dev = _vocab(5, device, "device")
        check(lib.tq_ppl_reference(m, ids, T, int(prompt), int(chunk), C.byref(ref)))
        rows = []
        for s in _ints(seed):
            cs = L.EvalConfigs()
            ax = _axes(methods, bits, rotation, codebook, center, "0", values, s, keep)
            try:
                check(lib.tq_eval_configs_build(C.byref(cs), C.byref(ax), mc.head_dim, dev))
                for c in range(cs.n):
                    for pf in (prefill.split(",") if isinstance(prefill, str) else prefill):
                        for r in _ints(recent):
                            o = L.KvqOpts(cfg=cs.cfg[c], sched=None, recent=r, keep=kp,
                                          prefill_fp16=1 if pf == "fp16" else 0, prompt=int(prompt), device=dev)
                            res = L.PplResult()
                            ck = lib.tq_kvq_grid(C.byref(o), int(chunk))
                            check(lib.tq_ppl_run(m, C.byref(o), ids, T, int(prompt), ck, ref, 0, None,
                                                 C.byref(res)))
                            kd = o.cfg.kdesc.decode()
                            meth, _, par = kd.partition(",")
                            rows.append([os.path.basename(str(model)), T, meth, par,
                                         "none" if o.cfg.v.method < 0 else o.cfg.vdesc.decode(), r, pf,
                                         "none" if keep_layers is None else
                                         (keep_layers if isinstance(keep_layers, str) else
                                          ",".join(map(str, keep_layers))), int(prompt), s, res.bits_total, res.ppl,
                                         res.ppl_ref, 100.0 * (res.ppl / res.ppl_ref - 1.0), res.kl, res.top1])
                            lib.tq_ppl_result_free(C.byref(res))
            finally:
                lib.tq_eval_configs_free(C.byref(cs))
    finally:
        if ref:
            L.libc.free(ref)
        if ids:
            L.libc.free(ids)
        lib.tq_model_free(m)
    return pd.DataFrame(rows, columns=["model", "tokens", "method", "params", "values", "recent", "prefill",
                                       "keep_layers", "prompt", "seed", "bits_total", "ppl", "ppl_ref", "dppl_pct",
                                       "kl", "top1"])
