#!/usr/bin/env python3
"""test_synth_h5py.py: what `tq synth` writes, read back by h5py alone — the documented layout (root attributes,
/layer_NNN groups, keys/values/queries with float16/float32 dtypes and [heads, tokens, dim] shapes), f16 equal to f32
rounded by numpy, and post-RoPE keys equal to pre-RoPE keys rotated by an independent numpy RoPE (rotate_half)."""
import os
import subprocess
import sys
import tempfile

import h5py
import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
TQ = os.environ.get("TQ") or os.path.join(HERE, "..", "..", "tq")
passed = failed = skipped = 0


def check(cond, what):
    global passed, failed
    if cond:
        passed += 1
    else:
        failed += 1
        print(f"FAIL {what}", file=sys.stderr)


def synth(path, *args):
    r = subprocess.run([TQ, "synth", *args, "-o", path], capture_output=True, text=True)
    check(r.returncode == 0, f"tq synth {' '.join(args)}: rc {r.returncode}: {r.stderr.strip()}")
    return r.returncode == 0


def text(v):
    return v.decode() if isinstance(v, bytes) else str(v)


def rope_np(x, pos, base=10000.0):
    """HF rotate_half RoPE: channel i pairs with i + d/2, angle pos * base^(-2i/d); x [T, d], pos [T]."""
    d = x.shape[-1]
    h = d // 2
    th = np.outer(pos.astype(np.float64), base ** (-2.0 * np.arange(h) / d))
    c, s = np.cos(th), np.sin(th)
    a, b = x[:, :h].astype(np.float64), x[:, h:].astype(np.float64)
    return np.concatenate([a * c - b * s, a * s + b * c], axis=1)


def main(tmp):
    # Layout and dtypes for every distribution, GQA 2 -> 6 query heads, d = 96.
    for dist in ("gaussian", "structured", "outlier", "heavy", "rope"):
        for dtype, npdt in (("f16", np.float16), ("f32", np.float32)):
            p = os.path.join(tmp, f"{dist}-{dtype}.h5")
            if not synth(p, "--dist", dist, "--layers", "3", "--heads", "2", "--q-heads", "6", "--tokens", "20",
                         "--dim", "96", "--seed", "8", "--dtype", dtype):
                continue
            with h5py.File(p, "r") as f:
                a = f.attrs
                check(text(a["tq_format"]) == "tq-kv" and int(a["tq_format_version"]) == 2, f"{p}: format attrs")
                check(text(a["model"]) == f"synthetic:{dist}", f"{p}: model {text(a['model'])}")
                check(text(a["rope"]) == ("post" if dist == "rope" else "none"), f"{p}: rope {text(a['rope'])}")
                check(int(a["n_layers"]) == 3, f"{p}: n_layers")
                src = text(a["source"])
                check(f"--dist {dist}" in src and "--seed 8" in src and f"--dtype {dtype}" in src, f"{p}: source {src}")
                check(sorted(f.keys()) == ["layer_000", "layer_001", "layer_002"], f"{p}: groups {sorted(f.keys())}")
                for g in f.values():
                    check(sorted(g.keys()) == ["keys", "queries", "values"], f"{p}: datasets {sorted(g.keys())}")
                    for name, heads in (("keys", 2), ("values", 2), ("queries", 6)):
                        ds = g[name]
                        check(ds.dtype == npdt and ds.shape == (heads, 20, 96),
                              f"{p}:{ds.name} dtype {ds.dtype} shape {ds.shape}")
                        check(bool(np.isfinite(ds[()]).all()), f"{p}:{ds.name} finite")

    # f16 file = f32 file rounded to half (numpy's round-to-nearest-even), value for value.
    for dist in ("gaussian", "heavy", "rope"):
        with h5py.File(os.path.join(tmp, f"{dist}-f16.h5"), "r") as h, \
                h5py.File(os.path.join(tmp, f"{dist}-f32.h5"), "r") as s:
            same = all(np.array_equal(h[n][()], s[n][()].astype(np.float16))
                       for n in ("layer_001/keys", "layer_001/values", "layer_001/queries"))
            check(same, f"{dist}: f16 dump = f32 dump rounded to float16")

    # Gaussian moments from h5py: 3 layers x 2 heads x 20 x 96 = 11520 keys values; variance 1 +- 5 sqrt(2/N).
    with h5py.File(os.path.join(tmp, "gaussian-f32.h5"), "r") as f:
        k = np.concatenate([f[f"layer_{l:03d}/keys"][()].ravel() for l in range(3)]).astype(np.float64)
        check(abs((k * k).mean() - 1) < 5 * np.sqrt(2 / k.size), f"gaussian key variance {(k * k).mean():.4f}")

    # RoPE: post = R_t(pre) with numpy's own rotation; float32 rounding of each coordinate: 1e-5 relative is 80 ulp.
    pre, post = os.path.join(tmp, "pre.h5"), os.path.join(tmp, "post.h5")
    args = ["--dist", "rope", "--heads", "2", "--q-heads", "4", "--tokens", "200", "--dim", "128", "--seed", "3",
            "--dtype", "f32"]
    if synth(pre, *args, "--pre-rope") and synth(post, *args):
        with h5py.File(pre, "r") as a, h5py.File(post, "r") as b:
            check(text(a.attrs["rope"]) == "pre" and text(b.attrs["rope"]) == "post", "rope attrs pre/post")
            pos = np.arange(200)
            for name, heads in (("keys", 2), ("queries", 4)):
                x0, x1 = a[f"layer_000/{name}"][()], b[f"layer_000/{name}"][()]
                err = max(np.abs(rope_np(x0[h], pos) - x1[h]).max() / np.abs(x1[h]).max() for h in range(heads))
                check(err < 1e-5, f"rope {name}: post = numpy RoPE(pre), worst rel err {err:.2e}")
                n0, n1 = np.linalg.norm(x0, axis=-1), np.linalg.norm(x1, axis=-1)
                check(np.abs(n0 - n1).max() < 1e-5 * n0.max(), f"rope {name}: norms preserved")
            # relative position: scores of (t, s) pairs with the same t - s agree after a common shift
            q, k = b["layer_000/queries"][()][0].astype(np.float64), b["layer_000/keys"][()][0].astype(np.float64)
            q0, k0 = a["layer_000/queries"][()][0], a["layer_000/keys"][()][0]
            t, s = np.array([150, 120, 199]), np.array([100, 20, 0])
            want = np.einsum("ij,ij->i", rope_np(q0[t], t - s), k0[s])  # <R_{t-s} q, k>
            got = np.einsum("ij,ij->i", q[t], k[s])
            check(np.allclose(got, want, rtol=0, atol=1e-4 * np.abs(want).max()), f"rope relative position {got} {want}")
    print(f"{passed} passed, {failed} failed, {skipped} skipped")
    return 1 if failed else 0


if __name__ == "__main__":
    with tempfile.TemporaryDirectory(dir=os.environ.get("TQ_TMP")) as tmp:
        rc = main(tmp)
    sys.exit(rc)
