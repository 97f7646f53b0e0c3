#!/usr/bin/env python3
"""robust2_inputs.py: the round-2 robustness inputs (issue classes: links, virtual datasets, filters, ranges) for
tests/cli/test_robustness.sh, written with h5py from a valid dump. Not a test itself. Usage: robust2_inputs.py OUTDIR
GOOD.h5 (the FIFO an external link points to is made by the shell: mkfifo OUTDIR/fifo.h5)."""
import sys

import h5py
import numpy as np


def copy_root(src, dst):
    for k, v in src.attrs.items():
        dst.attrs[k] = v


def with_layer0(out, good, make_layer0):
    """A copy of `good` whose layer_000 is built by make_layer0(file, src_group)."""
    with h5py.File(good, "r") as s, h5py.File(out, "w") as d:
        copy_root(s, d)
        for name in s:
            if name == "layer_000":
                make_layer0(d, s[name])
            else:
                s.copy(s[name], d, name=name)


def main():
    out, good = sys.argv[1], sys.argv[2]
    # an external link: layer_000 lives in ext_src.h5 (named relative: HDF5 finds it beside ext.h5)
    with h5py.File(good, "r") as s, h5py.File(f"{out}/ext_src.h5", "w") as d:
        s.copy(s["layer_000"], d, name="layer_000")
    for name, target in (("ext", "ext_src.h5"), ("ext_missing", "nowhere.h5"), ("ext_fifo", "fifo.h5")):
        with_layer0(f"{out}/{name}.h5", good, lambda f, g, t=target: f.__setitem__(
            "layer_000", h5py.ExternalLink(t, "/layer_000")))

    # a virtual dataset: layer_000/keys maps the whole of vds_src.h5:/keys
    with h5py.File(good, "r") as s:
        keys = s["layer_000/keys"][()]
    with h5py.File(f"{out}/vds_src.h5", "w") as d:
        d["keys"] = keys

    def vds(f, g, src):
        ng = f.create_group("layer_000")
        for k in g:
            if k != "keys":
                g.copy(g[k], ng, name=k)
        lay = h5py.VirtualLayout(shape=keys.shape, dtype=keys.dtype)
        lay[...] = h5py.VirtualSource(src, "keys", shape=keys.shape)
        ng.create_virtual_dataset("keys", lay, fillvalue=0)
    with_layer0(f"{out}/vds.h5", good, lambda f, g: vds(f, g, "vds_src.h5"))
    with_layer0(f"{out}/vds_missing.h5", good, lambda f, g: vds(f, g, "vds_gone.h5"))

    # LZF: h5py's own filter, absent from the C library tq links
    # (tokens repeated so LZF shrinks the chunks: an incompressible chunk is stored raw and reads without the filter)
    def lzf(f, g):
        ng = f.create_group("layer_000")
        for k in g:
            x = g[k][()]
            x = np.repeat(x[:, :1], x.shape[1], axis=1)
            ng.create_dataset(k, data=x, compression="lzf", chunks=x.shape)
    with_layer0(f"{out}/lzf.h5", good, lzf)

    # float16 values near the top of its range (65504): any reconstruction error can round them to inf
    def near_max(f, g):
        ng = f.create_group("layer_000")
        for k in g:
            x = g[k][()].astype(np.float64)
            ng[k] = (x / np.abs(x).max() * 65000.0).astype(np.float16)
    with_layer0(f"{out}/f16max.h5", good, near_max)
    with h5py.File(f"{out}/f16max.h5", "r+") as f:
        for k in f["layer_001"]:
            x = f["layer_001"][k][()]
            del f["layer_001"][k]
            f["layer_001"][k] = x.astype(np.float16)

    # subnormal-scaled tokens (float32 denormals ~1e-40): norms underflow inside the empirical codebook fit
    def tiny(f, g):
        ng = f.create_group("layer_000")
        for k in g:
            ng[k] = (g[k][()].astype(np.float64) * 1e-40).astype(np.float32)
    with_layer0(f"{out}/subnormal.h5", good, tiny)

    # finite but huge: 1e30 fits float32; tq must not call it "non-finite"
    def huge(f, g):
        ng = f.create_group("layer_000")
        for k in g:
            ng[k] = (g[k][()].astype(np.float64) * 1e30).astype(np.float32)
    with_layer0(f"{out}/big1e30.h5", good, huge)

    # sparse: chunked keys with one chunk of four written (the rest read back as zeros), and a 2^31-element layer
    # that stores nothing (reading it costs 12 GB)
    def sparse(f, g):
        ng = f.create_group("layer_000")
        for k in g:
            x = g[k][()]
            d = ng.create_dataset(k, shape=x.shape, dtype=x.dtype, chunks=(1, x.shape[1] // 2, x.shape[2]))
            if k != "keys":
                d[...] = x
            else:
                d[0, : x.shape[1] // 2] = x[0, : x.shape[1] // 2]
    with_layer0(f"{out}/sparse.h5", good, sparse)

    def sparse_huge(f, g):
        ng = f.create_group("layer_000")
        for k in ("keys", "values"):
            ng.create_dataset(k, shape=(2, 1 << 24, 64), dtype=np.float16, chunks=(1, 1 << 14, 64))
    with h5py.File(f"{out}/sparse_huge.h5", "w") as f, h5py.File(good, "r") as s:
        copy_root(s, f)
        f.attrs["n_layers"] = np.int64(1)
        sparse_huge(f, None)


if __name__ == "__main__":
    main()
