#!/usr/bin/env python3
"""test_metrics_numpy.py: the evaluation engine's acceptance check. A small dump with queries (GQA 4:2, one zero key,
written with h5py) goes through `tq quantize` + `tq dequantize` and through `tq sweep --format csv`; every metric of
every row (slices, per-layer and overall aggregates) is recomputed independently in NumPy (float64) from the dump and
the dequantized file and must agree within 1e-4 relative (1e-6 absolute near zero). A format-2 copy of the dump
(layer 0: sliding window 16, scale 0.3, soft-cap 4; layer 1 global) checks that every attention metric honours the
layer's spec (NumPy masks keys outside the window, scales and caps the scores) and that ignoring it would differ.

Why 1e-4 is the right bar: tq scores attention in float32 (cblas_sgemm), NumPy in float64. A score error
delta ~ u*|q||k|/sqrt(d) ~ 6e-8 * 32/5.7 ~ 3e-7 moves KL, entropies and out_rel by ~ delta * ||p - p_hat|| per row,
far below 1e-4 of values that are >= 1e-3 here; everything else tq sums in double from the same float32 inputs.
The 1e-6 absolute floor is for metrics that are differences of nearly equal numbers: entropy_collapse of int8 is
~3e-5 = 1 - H_q/H with H ~ 3.4, so a 1e-9 error in either entropy is ~1e-5 of it (measured: 6e-4 relative,
1.6e-8 absolute)."""
import csv
import math
import os
import subprocess
import sys
import tempfile

import h5py
import numpy as np

TQ = os.environ.get("TQ") or os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "tq")
REL, ABS = 1e-4, 1e-6
METRICS = ["nmse", "dmse", "cos", "ip_bias", "ip_rmse", "ip_nrmse", "ip_slope", "attn_kl", "entropy", "entropy_q",
           "entropy_collapse", "top8", "out_rel"]
# (method, bits) pairs; the values use the keys' configuration (sweep's --values same)
CONFIGS = [("turbo-mse", 2), ("turbo-prod", 3), ("kivi", 2), ("int8", 8), ("polar", 3)]
npass = nfail = nskip = 0


def check(cond, msg):
    global npass, nfail
    if cond:
        npass += 1
    else:
        nfail += 1
        print("FAIL " + msg, file=sys.stderr)


def close(got, want):
    if want is None:
        return got == ""
    if got == "":
        return False
    return abs(float(got) - want) <= REL * abs(want) + ABS


def make_dump(path):
    r = np.random.default_rng(2024)
    L, H, HQ, T, D = 2, 2, 4, 80, 32
    with h5py.File(path, "w") as f:
        f.attrs.update(tq_format="tq-kv", tq_format_version=1, model="numpy-check", source="test_metrics_numpy.py",
                       rope="none", n_layers=L)
        for l in range(L):
            g = f.create_group(f"layer_{l:03d}")
            k = r.standard_normal((H, T, D)).astype(np.float32)
            k[0, :, :4] *= 6  # a few outlier channels, as real keys have
            k[1, 9] = 0       # a zero key: skipped by dmse and cos
            g["keys"] = k
            g["values"] = r.standard_normal((H, T, D)).astype(np.float32)
            g["queries"] = (1.5 * r.standard_normal((HQ, T, D))).astype(np.float32)


def vec_metrics(x, xh):
    x, xh = x.astype(np.float64), xh.astype(np.float64)
    err = ((x - xh) ** 2).sum(1)
    nrm = (x ** 2).sum(1)
    nz = nrm > 0
    hh = (xh ** 2).sum(1)
    cosv = np.where(hh[nz] > 0, (x * xh).sum(1)[nz] / np.sqrt(nrm[nz] * np.where(hh[nz] > 0, hh[nz], 1)), 0.0)
    return {"nmse": err.sum() / nrm.sum(), "dmse": (err[nz] / nrm[nz]).mean(), "cos": cosv.mean()}


def head_metrics(q, k, kh, v, vh, window=0, scale=None, cap=0.0):
    """q [G,T,d], k/kh/v/vh [T,d] -> keys-row and values-row metric dicts (float64 throughout). window > 0: query t
    attends keys t-window+1..t; scores scale * q.k (default 1/sqrt(d)), then cap * tanh(s / cap) when cap > 0.
    The inner-product metrics use every causal pair whatever the window."""
    q, k, kh, v, vh = (a.astype(np.float64) for a in (q, k, kh, v, vh))
    G, T, d = q.shape
    mk, mv = vec_metrics(k, kh), vec_metrics(v, vh)
    tri = np.tril(np.ones((T, T), bool))
    ts, ss = np.meshgrid(np.arange(T), np.arange(T), indexing="ij")
    att = tri & ((ts - ss < window) if window > 0 else True)
    scale = 1 / math.sqrt(d) if scale is None else scale
    X = np.einsum("gtc,sc->gts", q, k)
    Y = np.einsum("gtc,sc->gts", q, kh)
    x, y = X[:, tri], Y[:, tri]
    x, y = x.ravel(), y.ravel()
    e = y - x
    mk["ip_bias"] = e.mean()
    mk["ip_rmse"] = math.sqrt((e ** 2).mean())
    mk["ip_nrmse"] = mk["ip_rmse"] / math.sqrt((x ** 2).mean())
    mk["ip_slope"] = np.cov(x, y, bias=True)[0, 1] / x.var()
    capf = (lambda a: cap * np.tanh(a / cap)) if cap > 0 else (lambda a: a)
    S = np.where(att, capf(X * scale), -np.inf)
    Sq = np.where(att, capf(Y * scale), -np.inf)

    def logsoftmax(a):
        m = a.max(-1, keepdims=True)
        return a - m - np.log(np.exp(a - m).sum(-1, keepdims=True))

    lp, lq = logsoftmax(S), logsoftmax(Sq)
    p, pq = np.exp(lp), np.exp(lq)
    with np.errstate(invalid="ignore"):
        kl = np.where(att, p * (lp - lq), 0).sum(-1)
        h = -np.where(att, p * lp, 0).sum(-1)
        hq = -np.where(att, pq * lq, 0).sum(-1)
    top = np.zeros((G, T))
    o1 = np.argsort(-S, axis=-1, kind="stable")
    o2 = np.argsort(-Sq, axis=-1, kind="stable")
    for g in range(G):
        for t in range(T):
            kk = min(8, t + 1, window if window > 0 else T)
            top[g, t] = len(set(o1[g, t, :kk]) & set(o2[g, t, :kk])) / kk
    mk["attn_kl"], mk["entropy"], mk["entropy_q"], mk["top8"] = kl.mean(), h.mean(), hq.mean(), top.mean()
    mk["entropy_collapse"] = 1 - mk["entropy_q"] / mk["entropy"]
    O, Oq = p @ v, pq @ vh
    mv["out_rel"] = (np.linalg.norm(Oq - O, axis=-1) / np.linalg.norm(O, axis=-1)).mean()
    return mk, mv


def compare(f, recon, path, method, bits, variant, spec):
    """tq sweep of `path` against NumPy on the dump's data `f` and the reconstruction `recon`, each layer under
    spec[layer] (the attention attributes of `path`); the v2 run also checks the window column and that the
    windowed layer's attention metrics differ from the global ones."""
    rs = subprocess.run([TQ, "sweep", path, "--methods", method, "--bits", str(bits), "--format", "csv"],
                        capture_output=True, text=True)
    check(rs.returncode == 0, f"{method} {variant}: sweep: {rs.stderr.strip()}")
    if rs.returncode:
        return
    rows = list(csv.DictReader(rs.stdout.splitlines()))
    g = h5py.File(recon, "r")
    nl = f.attrs["n_layers"]
    want, glob = {}, {}  # (layer, head, tensor) -> metrics under the spec / under global attention
    worst, worst_at = 0.0, ""
    for l in range(nl):
        K, V, Q = (f[f"layer_{l:03d}/{n}"][()] for n in ("keys", "values", "queries"))
        Kh, Vh = g[f"layer_{l:03d}/keys"][()], g[f"layer_{l:03d}/values"][()]
        G = Q.shape[0] // K.shape[0]
        for h in range(K.shape[0]):
            mk, mv = head_metrics(Q[h * G:(h + 1) * G], K[h], Kh[h], V[h], Vh[h], **spec.get(l, {}))
            want[(str(l), str(h), "keys")] = mk
            want[(str(l), str(h), "values")] = mv
            if spec.get(l):
                glob[(str(l), str(h), "keys")], glob[(str(l), str(h), "values")] = \
                    head_metrics(Q[h * G:(h + 1) * G], K[h], Kh[h], V[h], Vh[h])
    # aggregates: means over slices weighted by vectors (equal here), collapse from the mean entropies
    for tensor in ("keys", "values"):
        for scope in [str(l) for l in range(nl)] + ["all"]:
            sl = [m for (l, h, t), m in want.items() if t == tensor and (scope == "all" or l == scope)]
            agg = {c: float(np.mean([m[c] for m in sl])) for c in sl[0]}
            if "entropy" in agg:
                agg["entropy_collapse"] = 1 - agg["entropy_q"] / agg["entropy"]
            want[(scope, "all", tensor)] = agg
    check(len(rows) == len(want), f"{method} {variant}: {len(rows)} rows, want {len(want)}")
    for r in rows:
        # the tidy schema: -1 where the scope aggregates (layer -1: the dump; kv_head -1: the layer or the dump)
        key = (r["layer"].replace("-1", "all"), r["kv_head"].replace("-1", "all"), r["tensor"])
        m = want.get(key)
        check(m is not None, f"{method} {variant}: unexpected row {key}")
        if m is None:
            continue
        w_want = "-1" if key[0] == "all" and spec else str(spec.get(int(key[0]), {}).get("window", 0)) \
            if key[0] != "all" else "0"
        check(r["window"] == w_want, f"{method} {variant} {key}: window {r['window']!r}, want {w_want!r}")
        for c in METRICS:
            w = m.get(c)
            ok = close(r[c], w)
            check(ok, f"{method} {variant} {key} {c}: tq {r[c]!r}, numpy {w!r}")
            if ok and w is not None and w != 0 and abs(float(r[c]) - w) / abs(w) > worst:
                worst, worst_at = abs(float(r[c]) - w) / abs(w), f"{c} = {w:.3g} at {key}"
            # ignoring the spec would be caught: the global entropy (16 of up to 80 keys seen) and output are off by
            # far more than the tolerance (attn_kl of a layer can come out close by chance; it is checked above)
            gm = glob.get(key)
            if gm is not None and c in ("entropy", "out_rel") and c in gm:
                check(abs(gm[c] - w) > 100 * (REL * abs(w) + ABS), f"{method} {key} {c}: global {gm[c]} vs {w}")
    print(f"  {method} {bits} bits {variant}: {len(rows)} rows x {len(METRICS)} metrics, worst relative diff "
          f"{worst:.2e} ({worst_at})", file=sys.stderr)
    g.close()


def main():
    global nskip
    tmp = tempfile.mkdtemp(prefix="tq-np.")
    dump = os.path.join(tmp, "d.h5")
    make_dump(dump)
    dump2 = os.path.join(tmp, "d2.h5")  # the same data, format 2: layer 0 windowed, scaled and capped
    with open(dump, "rb") as a, open(dump2, "wb") as b:
        b.write(a.read())
    with h5py.File(dump2, "r+") as f2:
        f2.attrs["tq_format_version"] = np.int64(2)
        f2.attrs["architecture"] = "numpy-check"
        for name, val in (("sliding_window", np.int64(16)), ("attn_scale", 0.3), ("attn_softcap", 4.0)):
            f2["layer_000"].attrs[name] = val
    SPEC = {0: dict(window=16, scale=0.3, cap=4.0), 1: {}}
    have_quantize = subprocess.run([TQ, "quantize", "--help"], capture_output=True).returncode == 0
    if not have_quantize:
        nskip += 1
        print("SKIP tq quantize is not in this build: nothing to compare against", file=sys.stderr)
    f = h5py.File(dump, "r")
    for method, bits in CONFIGS if have_quantize else []:
        codes, recon = os.path.join(tmp, f"{method}.codes.h5"), os.path.join(tmp, f"{method}.recon.h5")
        vspec = f"{method}:{bits}"
        qa = [TQ, "quantize", dump, "--method", method, "--bits", str(bits), "--values", vspec, "-o", codes]
        rq = subprocess.run(qa, capture_output=True, text=True)
        if rq.returncode != 0 and "unknown method" in rq.stderr:
            nskip += 1
            print(f"SKIP {method}: not in this build ({rq.stderr.strip()})", file=sys.stderr)
            continue
        check(rq.returncode == 0, f"{method}: quantize: {rq.stderr.strip()}")
        rd = subprocess.run([TQ, "dequantize", codes, "-o", recon], capture_output=True, text=True)
        check(rd.returncode == 0, f"{method}: dequantize: {rd.stderr.strip()}")
        for variant, path in (("v1", dump), ("v2", dump2)):
            compare(f, recon, path, method, bits, variant, SPEC if variant == "v2" else {})
    f.close()
    print(f"{npass} passed, {nfail} failed, {nskip} skipped")
    return 1 if nfail else 0


if __name__ == "__main__":
    sys.exit(main())
