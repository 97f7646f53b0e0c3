#!/usr/bin/env python3
"""robust_inputs.py: the bad (and edge-case) inputs of tests/cli/test_robustness.sh that tests/py/bad_dumps.py does
not write: dumps with zero tokens, rank 4, all-zero vectors, an absurd layer count; codes files broken from a valid
one made by tq; sensitivity JSON files broken in each way. Not a test itself. Usage: robust_inputs.py OUTDIR CODES.h5
SENS.json (the last two made by tq quantize / tq sensitivity on OUTDIR/good.h5)."""
import json
import os
import shutil
import sys

import h5py
import numpy as np

H, HQ, T, D, L = 2, 4, 8, 16, 2


def dump(path, layer1_keys=None, n_layers=L, zero=False):
    """A 2-layer float32 dump like bad_dumps.good; layer1_keys replaces layer 1's keys; zero: some vectors are 0."""
    with h5py.File(path, "w") as f:
        f.attrs["tq_format"] = "tq-kv"
        f.attrs["tq_format_version"] = np.int64(1)
        f.attrs["model"] = "robust-test"
        f.attrs["source"] = "tests/py/robust_inputs.py"
        f.attrs["rope"] = "none"
        f.attrs["n_layers"] = np.int64(n_layers)
        for layer in range(L):
            rng = np.random.default_rng(200 + layer)
            k, v, q = (rng.standard_normal((n, T, D)).astype(np.float32) for n in (H, H, HQ))
            if zero:
                # layer 0: tokens 0..2 of head 0 are zero keys and values (and token 5 of head 1);
                # layer 1: head 1 is zero for every token (a slice whose norm is 0)
                if layer == 0:
                    k[0, :3] = 0; v[0, :3] = 0; k[1, 5] = 0; v[1, 5] = 0
                else:
                    k[1] = 0; v[1] = 0
            g = f.create_group(f"layer_{layer:03d}")
            if layer == 1 and layer1_keys is not None:
                layer1_keys(g)
            else:
                g["keys"] = k
            g["values"] = v
            g["queries"] = q


def codes_variant(src, dst, fn):
    shutil.copyfile(src, dst)
    with h5py.File(dst, "r+") as f:
        fn(f)


def main():
    out, codes, sens = sys.argv[1:4]
    os.makedirs(out, exist_ok=True)
    dump(f"{out}/zero_tokens.h5", lambda g: g.create_dataset("keys", shape=(H, 0, D), dtype=np.float32))
    dump(f"{out}/rank4.h5", lambda g: g.create_dataset("keys", data=np.ones((H, T, D, 1), np.float32)))
    dump(f"{out}/huge_layers.h5", n_layers=(1 << 31) - 1)
    dump(f"{out}/zero_vectors.h5", zero=True)

    # codes files: each breaks one thing of a valid file
    def attr(name, value):
        def fn(f):
            f.attrs[name] = value
        return fn
    codes_variant(codes, f"{out}/codes_no_format.h5", lambda f: f.attrs.__delitem__("tq_format"))
    codes_variant(codes, f"{out}/codes_newer.h5", attr("tq_format_version", np.int64(3)))
    codes_variant(codes, f"{out}/codes_layers.h5", attr("n_layers", np.int64(1 << 30)))
    # absurd shapes claimed by a layer group: 2^30 tokens x 65536 dims (2^46 values) against a few bytes of codes
    codes_variant(codes, f"{out}/codes_absurd.h5", lambda f: (f["layer_001"].attrs.__setitem__("n_tokens", np.int64(1 << 30)),
                                                              f["layer_001"].attrs.__setitem__("head_dim", np.int64(1 << 16))))
    # the same claim made consistently by the layer and its head groups: only the section sizes can refute it
    def absurd_all(f):
        for k, v in (("n_tokens", 1 << 30), ("head_dim", 1 << 16)):
            f["layer_001"].attrs[k] = np.int64(v)
        f["layer_001"].visititems(lambda n, o: (o.attrs.__setitem__("n", np.int64(1 << 30)), o.attrs.__setitem__("d", np.int64(1 << 16)))
                                  if isinstance(o, h5py.Group) and "n" in o.attrs else None)
    codes_variant(codes, f"{out}/codes_absurd_all.h5", absurd_all)
    codes_variant(codes, f"{out}/codes_gqa.h5", lambda f: f["layer_001"].attrs.__setitem__("n_q_heads", np.int64(3)))
    data = open(codes, "rb").read()
    for cut in (100, len(data) // 2, len(data) - 1):
        with open(f"{out}/codes_trunc_{cut}.h5", "wb") as fh:
            fh.write(data[:cut])
        print(f"codes_trunc_{cut}")

    # sensitivity JSON
    s = json.load(open(sens))
    text = open(sens).read()
    open(f"{out}/sens_empty.json", "w").close()
    with open(f"{out}/sens_random.json", "wb") as fh:
        fh.write(np.random.default_rng(8).integers(0, 256, 512, dtype=np.uint8).tobytes())
    with open(f"{out}/sens_trunc.json", "w") as fh:
        fh.write(text[: len(text) // 2])
    with open(f"{out}/sens_newer.json", "w") as fh:
        json.dump(dict(s, tq_sensitivity=2), fh)
    with open(f"{out}/sens_nan.json", "w") as fh:
        fh.write(text.replace(json.dumps(s["rows"][0]["metric"][0]), "NaN", 1) if "rows" in s else text)
    with open(f"{out}/sens_deep.json", "w") as fh:
        fh.write("[" * 100000 + "]" * 100000)
    with open(f"{out}/sens_array.json", "w") as fh:
        fh.write("[1, 2, 3]")
    print(len(data))


if __name__ == "__main__":
    main()
