#!/usr/bin/env python3
"""dump_entropy.py: how far lossless coding can shrink a float16 dump (the bundled Gemma 3 dump against its 16 MB
budget). Measures the byte entropies of the float16 values (zero-order, and conditioned on the same channel at the
previous token and on the value's own high byte: the best a context model of that order could reach), and what
zlib (HDF5's deflate filter) reaches at each level with and without the byte shuffle, plus lzma on shuffled bytes.
usage: python3 eval/dump_entropy.py [DUMP.h5] [--budget-mb 16]"""
import argparse
import lzma
import zlib

import h5py
import numpy as np


def entropy(counts):
    p = counts[counts > 0] / counts.sum()
    return float(-(p * np.log2(p)).sum())


def cond_entropy(ctx, sym, nctx, nsym=256):
    """H(sym | ctx) in bits, from the joint histogram."""
    joint = np.bincount(ctx.astype(np.int64) * nsym + sym, minlength=nctx * nsym).astype(np.float64)
    return entropy(joint) - entropy(np.bincount(ctx, minlength=nctx).astype(np.float64))


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("dump", nargs="?", default="datasets/gemma3-270m.h5")
    ap.add_argument("--budget-mb", type=float, default=16.0)
    a = ap.parse_args()
    hi_all, lo_all, prev_all, raw_shuf, raw_plain = [], [], [], [], []
    with h5py.File(a.dump, "r") as f:
        for L in range(int(f.attrs["n_layers"])):
            for name in ("keys", "values", "queries"):
                x = f[f"layer_{L:03d}/{name}"][...]
                if x.dtype != np.float16:
                    raise SystemExit(f"dump_entropy: '{name}' of layer {L} is {x.dtype}, expected float16")
                u = x.view(np.uint16)  # [heads, tokens, dim]
                hi, lo = (u >> 8).astype(np.uint8), (u & 0xFF).astype(np.uint8)
                hi_all.append(hi.ravel())
                lo_all.append(lo.ravel())
                # the same channel's high byte at the previous token (token 0: context 0)
                prev = np.zeros_like(hi)
                prev[:, 1:] = hi[:, :-1]
                prev_all.append(prev.ravel())
                b = u.tobytes()
                raw_plain.append(b)
                raw_shuf.append(np.concatenate([lo.ravel(), hi.ravel()]).tobytes())  # HDF5 shuffle, per chunk
    hi, lo, prev = np.concatenate(hi_all), np.concatenate(lo_all), np.concatenate(prev_all)
    n = hi.size
    raw = 2 * n
    h_hi, h_lo = entropy(np.bincount(hi, minlength=256).astype(float)), entropy(np.bincount(lo, minlength=256).astype(float))
    h16 = entropy(np.bincount((hi.astype(np.int64) << 8) | lo, minlength=65536).astype(float))
    h_hi_prev = cond_entropy(prev, hi, 256)
    h_lo_hi = cond_entropy(hi, lo, 256)
    budget_bits = a.budget_mb * 1e6 * 8 / n
    print(f"values {n:,} ({raw / 1e6:.2f} MB of float16); budget {a.budget_mb} MB = {budget_bits:.2f} bits per value")
    print(f"entropy (bits): high byte {h_hi:.3f}, low byte {h_lo:.3f}, 16-bit value {h16:.3f} "
          f"-> {h16 / 16 * raw / 1e6:.2f} MB")
    print(f"conditional: H(high | same channel's high at t-1) {h_hi_prev:.3f}, H(low | high) {h_lo_hi:.3f}; "
          f"H(high | prev) + H(low | high) = {h_hi_prev + h_lo_hi:.3f} bits -> "
          f"{(h_hi_prev + h_lo_hi) / 16 * raw / 1e6:.2f} MB")
    for lvl in (1, 6, 9):
        s = sum(len(zlib.compress(b, lvl)) for b in raw_shuf)
        p = sum(len(zlib.compress(b, lvl)) for b in raw_plain)
        print(f"deflate level {lvl}: shuffled {s / 1e6:.2f} MB ({s / raw:.3f}), unshuffled {p / 1e6:.2f} MB ({p / raw:.3f})")
    x = sum(len(lzma.compress(b, preset=9 | lzma.PRESET_EXTREME)) for b in raw_shuf)
    print(f"lzma -9e shuffled: {x / 1e6:.2f} MB ({x / raw:.3f})")


if __name__ == "__main__":
    main()
